"""A real MongoDB-protocol server for tests and the demo: SecantusDB on a free 127.0.0.1 port.

mongod cannot be installed from the registries this project may use; SecantusDB (PyPI, WiredTiger storage) speaks
the wire protocol. `stop()` and `start()` again on the same storage path simulate an outage without data loss.

`MongoServer(auth=True)` runs it with authentication on (`--auth`): SecantusDB has no localhost exception, so the
first start provisions a root user without auth, then restarts with `--auth`; `uri` and `client()` then carry the
root user's credentials (authSource admin), and `uri_as(user, password, database)` is any other user's URI.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pymongo import MongoClient

from testbed.procs import Process, free_port, wait_until


def _secantusd() -> str:
    beside_python = Path(sys.executable).parent / "secantusd-py"
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: install the test extra (pip install -e '.[test]')")
    return found


class MongoServer:
    ROOT_USER = "root"

    def __init__(self, workdir: Path | None = None, port: int | None = None, *, auth: bool = False) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="syncjob-mongo-"))
        self.port = port or free_port()
        self.storage = self.workdir / "data"
        self.process: Process | None = None
        self.auth = auth
        self.root_password = secrets.token_hex(16) if auth else None
        self._provisioned = False

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """The root user's URI with auth on, else an anonymous one."""
        if self.auth and self.root_password:
            return self.uri_as(self.ROOT_USER, self.root_password, "", auth_source="admin")
        return f"mongodb://{self.host}/?directConnection=true"

    def uri_as(self, user: str, password: str, database: str, auth_source: str | None = None) -> str:
        """A user's URI; the database is its path (and, without `auth_source`, where the user is defined)."""
        extra = f"&authSource={auth_source}" if auth_source else ""
        return (f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}/{database}"
                f"?directConnection=true{extra}")

    def client(self, **kwargs: object) -> MongoClient:  # type: ignore[type-arg]
        return MongoClient(self.uri, serverSelectionTimeoutMS=5000, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout: float = 60) -> MongoServer:
        if self.auth and not self._provisioned:
            self._run(auth=False, timeout=timeout)
            anonymous: MongoClient[dict[str, Any]] = MongoClient(f"mongodb://{self.host}/?directConnection=true",
                                                                 serverSelectionTimeoutMS=5000)
            with anonymous:
                anonymous.admin.command("createUser", self.ROOT_USER, pwd=self.root_password, roles=["root"])
            self.stop()
            self._provisioned = True
        return self._run(auth=self.auth, timeout=timeout)

    def _run(self, *, auth: bool, timeout: float) -> MongoServer:
        self.process = Process(
            "secantusdb",
            [_secantusd(), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage),
             "--log-level", "WARNING", *(["--auth"] if auth else [])],
            self.workdir,
        ).start()

        def ping() -> bool:  # ping needs no authentication, also with --auth
            c: MongoClient[dict[str, Any]] = MongoClient(f"mongodb://{self.host}/?directConnection=true",
                                                         serverSelectionTimeoutMS=500)
            with c:
                return bool(c.admin.command("ping").get("ok"))

        wait_until(ping, timeout, f"SecantusDB on {self.host}", process=self.process)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MongoServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
