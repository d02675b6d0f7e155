"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

Whatever a client sends, the API answers with a result or a problem+json, never a
server error. Runs on SQLite only: storage is covered on both backends elsewhere.
Schemathesis's strategies are driven with Hypothesis directly, one operation at a time.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from conftest import Brand
from quanyu.entrypoints.api.app import create_app
from quanyu.services.uow import Platform

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_no_request_makes_the_api_answer_a_server_error(platform: Platform, brand: Brand) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(platform))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            response = case.call()
            kind = response.headers.get("content-type")
            kind = kind[0] if isinstance(kind, list) else kind
            if response.status_code >= 500 or (
                response.status_code >= 400 and kind != "application/problem+json"
            ):
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:300]}"
                )

        exercise()
    assert not failures, "\n".join(failures[:20])
