"""Record the MongoDB commands a component's code issues, to judge them against its role (syncjob.mongo_users).

In a test process: `Recorder()` as a pymongo event listener. Around a subprocess (the sync pod's entrypoint):
`python -m tests.security.commands OUT.jsonl -- ARGS...` runs `python -m ARGS...` with every client's commands
appended to OUT.jsonl.
"""

from __future__ import annotations

import json
import runpy
import sys
import threading
from pathlib import Path
from typing import Any

from pymongo import monitoring

UNAUTHORIZED = 13


def summary(name: str, database: str, command: Any) -> dict[str, Any]:
    """What a privilege check needs of a command: its target collection and the upsert and remove flags."""
    doc: dict[str, Any] = {name: command.get(name) if command else None}
    if name == "update":
        doc["updates"] = [{"upsert": bool(u.get("upsert"))} for u in command.get("updates", ())]
    if name == "findAndModify":
        doc["upsert"], doc["remove"] = bool(command.get("upsert")), bool(command.get("remove"))
    if name == "aggregate":
        doc["stages"] = [next(iter(stage)) for stage in command.get("pipeline", ()) if stage]
    if not isinstance(doc[name], str | int | float | None):
        doc[name] = str(doc[name])
    return {"db": database, "command": doc}


class Recorder(monitoring.CommandListener):
    def __init__(self, out: Path | None = None) -> None:
        self.out = out
        self.commands: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []  # commands refused as unauthorized
        self._lock = threading.Lock()

    def _write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self.out is not None:
                with self.out.open("a") as f:
                    f.write(json.dumps(entry) + "\n")

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        entry = summary(event.command_name, event.database_name, event.command)
        with self._lock:
            self.commands.append(entry)
        self._write(entry)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only refusals count (code 13, Unauthorized): a duplicate key between two writers is expected."""
        if event.failure.get("code") != UNAUTHORIZED:
            return
        entry = {"failed": event.command_name, "failure": str(event.failure)}
        with self._lock:
            self.failures.append(entry)
        self._write(entry)


def read(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [e for e in entries if "command" in e], [e for e in entries if "failed" in e]


if __name__ == "__main__":
    out, sep, module, *args = sys.argv[1:]
    assert sep == "--", "usage: python -m tests.security.commands OUT -- MODULE ARGS..."
    monitoring.register(Recorder(Path(out)))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
