"""Property-based tests over the OpenAPI spec (schemathesis): whatever it sends, no 5xx, and every answer matches
the status codes, media types and schemas the spec documents.

Schemathesis' pytest plugin (from_fixture) does not load under pytest 9, so the operations are driven here with
its Python API and Hypothesis directly, against an app on the local cluster and SecantusDB.
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_conforms_to_the_spec(make_api: Callable[..., Api]) -> None:
    api = make_api(trigger_wait_seconds=0)
    api.create_syncjob("alpha")
    api.add_execution("alpha-run", "alpha", status="running")
    api.add_execution("alpha-done", "alpha", status="success", execution_time=10)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24
    # the SSE stream answers for minutes; its auth and events are tested in tests/api/test_dashboard_routes.py
    operations = [op for op in operations if op.path != "/api/scheduler/stream/runs"]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
