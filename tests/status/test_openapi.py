"""The app against its own OpenAPI description, with schemathesis-generated requests.

Given the app over a database holding a real finished job, when schemathesis sends valid and
invalid requests for every operation, then every response matches the description: status
codes, content types, bodies, and never a 5xx.
"""

from __future__ import annotations

import json
from pathlib import Path

import falcon
import falcon.testing
import pytest
import schemathesis
from falcon.inspect import inspect_routes
from hypothesis import HealthCheck, settings
from schemathesis.checks import ignored_auth
from thumbcache.broker import make_broker
from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.store import connect
from thumbcache_status.access import Access
from thumbcache_status.app import create_app
from thumbcache_status.openapi import build_spec
from thumbcache_status.submit import runtime_planner, runtime_submitter

from tests.status.conftest import TOKEN, Populated

RENDITIONS = ("thumbnail", "cache")  # the built-in registry the fixtures use


@pytest.fixture(scope="module")
def app_for_schema(populated: Populated, mongo_url: str, tmp_path_factory: pytest.TempPathFactory):
    """Reads from the populated job; scans (if a generated one is ever valid) go elsewhere."""
    roots = tmp_path_factory.mktemp("allowed")
    (Path(roots) / "photos").mkdir()
    submit_store = connect(mongo_url, "status_schema_scans")
    rt = Runtime(populated.settings, submit_store, make_broker(populated.settings))
    return create_app(
        populated.store,
        populated.settings,
        submit_scan=runtime_submitter(rt),
        plan_scan=runtime_planner(rt),
        allowed_roots=(str(roots),),
        access=Access(token=TOKEN),
    )


# The description the app serves (checked equal below); requests go through WSGI, no socket.
schema = schemathesis.openapi.from_dict(build_spec(RENDITIONS))


@schema.parametrize()
@settings(
    max_examples=100,
    database=None,  # no .hypothesis/ folder in the work tree
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_app_conforms_to_its_openapi_description(
    case: schemathesis.Case, app_for_schema: falcon.App
) -> None:
    """Every generated request gets a response the description allows."""
    # ignored_auth would resend over a real socket (it has no WSGI path); the refusal of
    # token-less requests on every route is tested in test_security.py. A generated token is
    # replaced by the real one; a case generated without one (negative data) goes without, so
    # its other violations are not the only ones left for the app to refuse.
    generated = {k.lower() for k in (case.headers or {})}
    auth = {"Authorization": f"Bearer {TOKEN}"} if "authorization" in generated else {}
    case.call_and_validate(app=app_for_schema, headers=auth, excluded_checks=[ignored_auth])


def test_openapi_document_is_served(client: falcon.testing.TestClient) -> None:
    """The description names every route the app serves, and only those."""
    spec = client.simulate_get("/openapi.json").json
    assert spec == json.loads(json.dumps(build_spec(RENDITIONS)))
    assert spec["openapi"].startswith("3.")
    served = {route.path for route in inspect_routes(client.app)}
    pages = {"/", "/openapi.json"}  # the dashboard and this document itself
    assert served - pages == set(spec["paths"])
    (rendition,) = [p for p in spec["paths"] if p.startswith("/v1/images/")]
    (param,) = [
        p for p in spec["paths"][rendition]["get"]["parameters"] if p["name"] == "rendition"
    ]
    assert param["schema"]["enum"] == list(RENDITIONS)
