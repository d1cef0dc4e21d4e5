"""The image's entrypoint: `python -m sync_image run` (console script `syncjob-sync`), configured by the pod contract.

It reads only the contract's environment variables. A configuration that cannot be parsed exits 2, and is also
recorded as `failed` when the run id and MongoDB URI are usable, so the failure is visible where runs are read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from sync_image.runner import ExitCode, Runner, connect
from sync_image.settings import PodSettings, describe_error
from syncjob import mongo
from syncjob.executions import close_if_running, ensure_record, identity_fields
from syncjob.model import ExecutionStatus

log = logging.getLogger("sync_image")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymongo", "urllib3", "exchange_calendars"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _record_configuration_error(message: str) -> None:
    """Best effort: mark the run failed if its id and the database are known."""
    run_id, uri = os.environ.get("SYNC_RUN_ID", "").strip(), os.environ.get("MONGO_URI", "").strip()
    if not run_id or not uri:
        return
    try:
        db = connect(uri)
        coll = db[mongo.EXECUTIONS]
        job = os.environ.get("SYNCJOB_NAME", "").strip() or run_id
        trigger = os.environ.get("SYNC_TRIGGER", "").strip() or "schedule"
        identity = identity_fields(run_id=run_id, job_id=job, namespace=os.environ.get("SYNCJOB_NAMESPACE", ""),
                                   trigger=trigger, force=os.environ.get("SYNC_FORCE", "").lower() == "true",
                                   scheduled_time=None)
        ensure_record(coll, identity)
        close_if_running(coll, run_id, ExecutionStatus.FAILED, error_message=message,
                         reason="bad configuration")
        db.client.close()
    except Exception as exc:  # the exit code still says what happened
        log.warning("Could not record the configuration error of run %s: %s", run_id, exc)


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
