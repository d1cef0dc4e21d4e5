"""The MongoDB client of the API and the start-up duty to create the indexes every query relies on.

The database is the MONGO_URI's path (default tradingagents); times come back as aware UTC datetimes. Index creation
is retried until it succeeds, so an API started while MongoDB is down still gets its indexes once it is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from syncjob import mongo
from syncjob_api.core.config import Settings

log = logging.getLogger(__name__)


class MongoStore:
    def __init__(self, settings: Settings) -> None:
        timeout = settings.mongo_timeout_ms
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout, 60000), appname="syncjob-api",
        )
        self.db: Database[dict[str, Any]] = self.client.get_default_database(default="tradingagents")
        self.retention_days = settings.execution_retention_days
        self._indexed = False
        self._lock = threading.Lock()

    def ensure_indexes(self) -> bool:
        """Create the scheduler collections' indexes (TTL included) once; False while MongoDB cannot be reached."""
        if self._indexed:
            return True
        with self._lock:
            if self._indexed:
                return True
            try:
                mongo.ensure_indexes(self.db, mongo.SCHEDULER_COLLECTIONS, self.retention_days)
            except PyMongoError as exc:
                log.warning("Failed to create indexes in database %s: %s", self.db.name, exc)
                return False
            self._indexed = True
            log.info("Ensured indexes of %s in database %s (retention %d days)",
                     ", ".join(s.name for s in mongo.SCHEDULER_COLLECTIONS), self.db.name, self.retention_days)
            return True

    def close(self) -> None:
        self.client.close()
