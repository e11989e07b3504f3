"""The OpenAPI document: valid, served, and true to the server under fuzzing (schemathesis)."""

from __future__ import annotations

import json

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer, RateLimits, openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@schemathesis.serializer("image/*")
def _image_part(context: schemathesis.SerializationContext, value: object) -> dict[str, bytes]:
    """An image part whose generated value is no bytes (a negative case) is sent as its JSON
    text: schemathesis 4.30, the last for Python 3.10, has no serializer for ``image/*``."""
    return {"data": json.dumps(value).encode()}


UNLIMITED = RateLimits(short_term_requests=0, daily_anonymous=0)


def test_document_is_valid_openapi_3_1() -> None:
    """The document passes the OpenAPI 3.1 validator."""
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # type: ignore[arg-type]


def test_document_is_served_with_the_servers_own_url(unlimited_server: LocalServer) -> None:
    """GET /api/openapi serves the document, pointing at the server that serves it."""
    response = requests.get(f"{unlimited_server.url}/api/openapi", timeout=10)
    assert response.status_code == 200
    assert response.json()["servers"] == [{"url": unlimited_server.url}]
    assert set(response.json()["paths"]) == {"/rmbg", "/api/membership-usage"}


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_break_the_contract(
    case: schemathesis.Case, unlimited_server: LocalServer
) -> None:
    """Generated requests, valid or not: no 5xx, documented statuses and body shapes.

    Two checks do not apply. Random bytes are schema-valid images but no real ones, so the
    server may refuse a schema-valid request; and the API is tolerant by contract (unknown
    fields and parameters are ignored, an empty value means unset), so it may accept some
    requests the schema calls invalid.
    """
    case.call_and_validate(
        base_url=unlimited_server.url,
        headers={"x-api-key": TEST_API_KEY},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
        timeout=30,
    )
