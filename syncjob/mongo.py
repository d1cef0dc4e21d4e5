"""MongoDB contracts: collection names, unique keys, indexes and retention (docs/mongodb.md), and the one client
factory every component connects with.

Every process that writes a collection ensures its indexes at start-up with `ensure_indexes`; creating an index
that exists is a no-op, so the operator, the API and the sync image can all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.database import Database

EXECUTIONS = "scheduler_executions"
HISTORY = "scheduler_history"
METADATA = "scheduler_metadata"
STOCK_BASIC_INFO = "stock_basic_info"
MARKET_QUOTES = "market_quotes"
STOCK_DAILY_QUOTES = "stock_daily_quotes"
STOCK_FINANCIAL_DATA = "stock_financial_data"
STOCK_DAILY_SUSPENSIONS = "stock_daily_suspensions"  # sessions a source reported a symbol suspended (gap reports)
SOURCE_QUOTAS = "source_quotas"  # shared rate-limit buckets, one per source account (docs/data.md)
DATA_SOURCE_STATUS = "data_source_status"
# Ids of execution records an admin deleted, so that no writer brings them back while their Job still exists.
EXECUTION_TOMBSTONES = "scheduler_execution_tombstones"
# One document per SyncJob under concurrencyPolicy Forbid: the run that holds the right to sync.
RUN_SLOTS = "scheduler_run_slots"

DEFAULT_DATABASE = "tradingagents"
DEFAULT_TIMEOUT_MS = 5000

DEFAULT_RETENTION_DAYS = 180


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    unique_key: tuple[str, ...] = ()
    indexes: tuple[tuple[tuple[str, int], ...], ...] = ()
    ttl_field: str | None = None  # expires after the configured retention
    extra: dict[str, Any] = field(default_factory=dict)


SCHEDULER_COLLECTIONS = (
    CollectionSpec(
        EXECUTIONS,
        indexes=(
            (("job_id", ASCENDING), ("timestamp", DESCENDING)),
            (("status", ASCENDING), ("timestamp", DESCENDING)),
            (("job_id", ASCENDING), ("status", ASCENDING), ("execution_time", ASCENDING)),
            (("is_manual", ASCENDING), ("timestamp", DESCENDING)),
            # A caller's namespaces: scoped lists, and the distinct namespaces the API checks a caller in.
            (("namespace", ASCENDING), ("timestamp", DESCENDING)),
        ),
        ttl_field="timestamp",
    ),
    CollectionSpec(
        HISTORY,
        indexes=((("job_id", ASCENDING), ("timestamp", DESCENDING)), (("status", ASCENDING),),
                 (("namespace", ASCENDING), ("timestamp", DESCENDING))),
        ttl_field="timestamp",
    ),
    # One document per (namespace, SyncJob name); the incumbent's documents have no namespace and serve as a
    # fallback where a job has none of its own (syncjob.migrations.migrate_metadata).
    CollectionSpec(METADATA, unique_key=("namespace", "job_id")),
    CollectionSpec(EXECUTION_TOMBSTONES, ttl_field="deleted_at"),
    CollectionSpec(RUN_SLOTS, indexes=((("run_id", ASCENDING),),)),
)

DATA_COLLECTIONS = (
    CollectionSpec(STOCK_BASIC_INFO, unique_key=("code", "source")),
    CollectionSpec(MARKET_QUOTES, unique_key=("code",)),
    CollectionSpec(STOCK_DAILY_QUOTES, unique_key=("symbol", "trade_date", "data_source", "period")),
    CollectionSpec(STOCK_FINANCIAL_DATA, unique_key=("symbol", "report_period", "data_source")),
    CollectionSpec(STOCK_DAILY_SUSPENSIONS, unique_key=("symbol", "trade_date", "data_source")),
    CollectionSpec(DATA_SOURCE_STATUS, unique_key=("source", "checked_at")),
)


def index_models(spec: CollectionSpec, retention_days: int = DEFAULT_RETENTION_DAYS) -> list[IndexModel]:
    models = []
    if spec.unique_key:
        models.append(IndexModel([(k, ASCENDING) for k in spec.unique_key], unique=True))
    models.extend(IndexModel(list(keys)) for keys in spec.indexes)
    if spec.ttl_field:
        models.append(
            IndexModel([(spec.ttl_field, DESCENDING)], expireAfterSeconds=retention_days * 86400)
        )
    return models


def ensure_indexes(
    db: Database[Any], specs: tuple[CollectionSpec, ...], retention_days: int = DEFAULT_RETENTION_DAYS
) -> None:
    """Create the indexes of these collections (idempotent); a changed retention updates the TTL in place."""
    for spec in specs:
        models = index_models(spec, retention_days)
        if spec.ttl_field:
            _set_retention(db, spec, retention_days)
        if models:
            db[spec.name].create_indexes(models)


def _set_retention(db: Database[Any], spec: CollectionSpec, retention_days: int) -> None:
    """createIndex refuses to change expireAfterSeconds of an existing index; collMod changes it."""
    seconds = retention_days * 86400
    if spec.name not in db.list_collection_names():
        return
    for name, info in db[spec.name].index_information().items():
        if "expireAfterSeconds" in info and info["expireAfterSeconds"] != seconds:
            db.command("collMod", spec.name, index={"name": name, "expireAfterSeconds": seconds})


def connect(uri: str, *, app: str, timeout_ms: int = DEFAULT_TIMEOUT_MS,
            socket_timeout_ms: int | None = None) -> Database[Any]:
    """The database named in the URI's path (default `tradingagents`), with timezone-aware UTC datetimes.

    The one place a MongoDB client is made: the operator, the API and the sync pods share its timeouts (server
    selection and connect within `timeout_ms`; a socket read may take longer, for the API's aggregations).
    """
    client: MongoClient[Any] = MongoClient(
        uri, tz_aware=True, appname=app, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=socket_timeout_ms if socket_timeout_ms is not None else max(timeout_ms, 60000),
    )
    return client.get_default_database(default=DEFAULT_DATABASE)
