"""The MongoDB client of the API and the start-up duty to create the indexes every query relies on.

The client comes from `syncjob.mongo.connect`, the factory every component shares: the database is the MONGO_URI's
path (default tradingagents) and times come back as aware UTC datetimes. Index creation
is retried until it succeeds, so an API started while MongoDB is down still gets its indexes once it is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from syncjob import mongo
from syncjob_api.core.config import Settings

log = logging.getLogger(__name__)


class MongoStore:
    def __init__(self, settings: Settings) -> None:
        timeout = settings.mongo_timeout_ms
        # Aggregations (stats over a large job) may read for longer than it takes to find the server.
        self.db: Database[dict[str, Any]] = mongo.connect(settings.mongo_uri, app="syncjob-api", timeout_ms=timeout,
                                                          socket_timeout_ms=max(timeout, 60000))
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
        self.db.client.close()
