"""Schemathesis over /api/schema/ (authenticated with an API key), in-process through the WSGI
app: no 5xx, and every response matches the documented schema. Bounded: a few examples per
operation, so the whole run stays well under two minutes. /v1/chat/completions is left to the
/v1 tests (a valid example would wait on a real generation)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.scope import scope_for

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def api_schema(transactional_db, django_db_serialized_rollback, settings_override):
    from accounts.services import api_key_create, user_create
    from docplatform.wsgi import application

    user = user_create(username="fuzz", password="correct horse battery")
    key = api_key_create(scope=scope_for(user), name="fuzz").raw_key
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application, headers=headers)
    return headers, schema.exclude(path_regex=r"^/v1/chat/completions$").exclude(
        path_regex=r"^/api/auth/(token|logout)"
    )


@pytest.fixture
def settings_override(settings):
    settings.API_THROTTLE_RATES = {"anon": "off", "user": "off"}


def test_api_schema_fuzz(api_schema):
    """Every operation, a bounded number of generated examples each (the pytest plugin's lazy
    fixture loader does not run under pytest 9, so the operations are driven here)."""
    headers, schema = api_schema
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        run()
        tried.append(f"{operation.method.upper()} {operation.path}")
    assert len(tried) >= 15, tried
    print(f"\n[schema] fuzzed {len(tried)} operations: no 5xx, responses match the schema")
