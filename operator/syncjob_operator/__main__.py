"""`python -m syncjob_operator`: run the operator (kopf) with the namespaces and liveness endpoint configured."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import kopf

from syncjob import cli
from syncjob_operator import handlers  # noqa: F401 - registers the handlers
from syncjob_operator.settings import OperatorSettings, get_settings


def main(argv: Sequence[str] | None = None) -> None:
    cli.parse("python -m syncjob_operator", "The syncjob-operator (kopf): SyncJobs into CronJobs and run records.",
              OperatorSettings, argv)
    settings = get_settings()
    kopf.configure(log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
                   verbose=bool(os.environ.get("OPERATOR_DEBUG_LOG")))
    # kopf says "Handler ... succeeded" at INFO for every event of every object, and aiohttp logs every liveness
    # probe: with thousands of SyncJobs that is most of the log and a good part of the CPU. Problems still show.
    for noisy in ("kopf.objects", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    liveness = os.environ.get("LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz")
    kopf.run(
        standalone=True,  # one replica (Deployment strategy Recreate): no peering objects needed
        clusterwide=not settings.watch_namespaces,
        namespaces=settings.watch_namespaces,
        liveness_endpoint=liveness or None,
    )


if __name__ == "__main__":
    main()
