"""A real MongoDB-protocol server for tests and the demo: SecantusDB on a free 127.0.0.1 port.

mongod cannot be installed from the registries this project may use; SecantusDB (PyPI, WiredTiger storage) speaks
the wire protocol. `stop()` and `start()` again on the same storage path simulate an outage without data loss.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from pymongo import MongoClient

from testbed.procs import Process, free_port, wait_until


def _secantusd() -> str:
    beside_python = Path(sys.executable).parent / "secantusd-py"
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: install the test extra (pip install -e '.[test]')")
    return found


class MongoServer:
    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="syncjob-mongo-"))
        self.port = port or free_port()
        self.storage = self.workdir / "data"
        self.process: Process | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def client(self, **kwargs: object) -> MongoClient:  # type: ignore[type-arg]
        return MongoClient(self.uri, serverSelectionTimeoutMS=5000, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout: float = 60) -> MongoServer:
        self.process = Process(
            "secantusdb",
            [_secantusd(), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage),
             "--log-level", "WARNING"],
            self.workdir,
        ).start()

        def ping() -> bool:
            with MongoClient(self.uri, serverSelectionTimeoutMS=500) as c:
                return bool(c.admin.command("ping").get("ok"))

        wait_until(ping, timeout, f"SecantusDB on 127.0.0.1:{self.port}", process=self.process)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
