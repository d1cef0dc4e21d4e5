"""The image's entrypoint: `python -m sync_image run` (console script `syncjob-sync`), configured by the pod contract.

It reads only the contract's environment variables. A configuration that cannot be parsed exits 2, and is also
recorded as `failed` when the run id and MongoDB URI are usable, so the failure is visible where runs are read.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from sync_image.runner import ExitCode, Runner, connect
from sync_image.settings import PodSettings, describe_error
from syncjob import executions, runs
from syncjob.executions import Writer
from syncjob.model import ExecutionStatus

log = logging.getLogger("sync_image")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymongo", "urllib3", "exchange_calendars"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _record_configuration_error(message: str) -> None:
    """Best effort: mark the run failed (no retry can mend a configuration) if its id and the database are known."""
    env = {k: os.environ.get(k, "").strip() for k in ("SYNC_RUN_ID", "MONGO_URI", "SYNCJOB_NAMESPACE",
                                                      "SYNCJOB_NAME", "SYNC_TRIGGER", "SYNC_FORCE", "SYNC_POD_NAME")}
    job, uri, namespace = env["SYNC_RUN_ID"], env["MONGO_URI"], env["SYNCJOB_NAMESPACE"]
    if not job or not uri or not namespace:
        return
    rid = runs.run_id(namespace, job)
    try:
        db = connect(uri)
        try:
            ident = executions.identity(run_id=rid, job_id=env["SYNCJOB_NAME"] or job, namespace=namespace, job=job,
                                        trigger=env["SYNC_TRIGGER"] or "schedule",
                                        force=env["SYNC_FORCE"].lower() == "true", scheduled_time=None)
            record = executions.open_run(db, ident, Writer.POD)
            if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
                return
            number = executions.begin_attempt(db, rid, env["SYNC_POD_NAME"] or socket.gethostname())
            executions.end_attempt(db, rid, number, "failed", reason="ConfigurationError", error_message=message)
            executions.close(db, rid, ExecutionStatus.FAILED, Writer.POD, reason="ConfigurationError",
                             error_message=message)
        finally:
            db.client.close()
    except Exception as exc:  # the exit code still says what happened
        log.warning("Could not record the configuration error of run %s: %s", rid, exc)


def run() -> int:
    try:
        settings = PodSettings()  # type: ignore[call-arg]  # every field comes from the environment
    except (ValidationError, SettingsError) as exc:
        message = describe_error(exc) if isinstance(exc, ValidationError) else f"invalid pod configuration: {exc}"
        log.error("Rejected the pod configuration: %s", message)
        _record_configuration_error(message)
        return ExitCode.CONFIGURATION
    db = connect(settings.mongo_uri)
    try:
        return Runner(settings, db, handle_signals=True).run()
    finally:
        db.client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="syncjob-sync", description="Run one SyncJob execution (pod contract).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the task described by the SYNC_* environment variables")
    commands.add_parser("sources", help="print the source registry")
    args = parser.parse_args(argv)
    _configure_logging()
    if args.command == "sources":
        from sync_image.sources import REGISTRY

        for info in REGISTRY.values():
            print(f"{info.name:9} markets={','.join(info.markets):9} key={'yes' if info.needs_key else 'no ':3} "
                  f"free={'yes' if info.free else 'no ':3} features={','.join(sorted(info.features))}")
        return 0
    return int(run())


if __name__ == "__main__":
    sys.exit(main())
