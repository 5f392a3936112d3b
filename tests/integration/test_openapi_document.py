"""The served OpenAPI document states every answer an operation can give, with its body,
and the real formats of its parameters (Schemathesis then holds the server to it:
tests/e2e/test_openapi_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import bearer


@pytest.fixture(scope="module")
def document(api_client: TestClient) -> dict[str, Any]:
    response = api_client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_authenticated_operation_documents_each_error_with_its_body(
    document: dict[str, Any],
) -> None:
    guarded = [op for op in operations(document) if op[1].startswith("/v1/")]
    assert len(guarded) >= 18  # the Usage tab's, the ingest's, the registry's
    for method, path, operation in guarded:
        responses = operation["responses"]
        expected = {"401", "403", "422", "503"} | ({"404"} if "{project_id}" in path else set())
        assert expected <= set(responses), (method, path, sorted(responses))
        for code in expected:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert "$ref" in schema, (method, path, code)
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert responses["503"]["headers"]["Retry-After"]["required"] is True
        assert operation["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def test_parameters_carry_their_real_formats(document: dict[str, Any]) -> None:
    def parameter(path: str, name: str) -> dict[str, Any]:
        params = document["paths"][path]["get"]["parameters"]
        return dict(next(p for p in params if p["name"] == name)["schema"])

    usage = "/v1/projects/{project_id}/passes/{pass_id}/usage"
    zones = parameter(usage, "tz")["enum"]
    assert {"UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"} <= set(zones)
    activity = "/v1/projects/{project_id}/passes/{pass_id}/activity"
    for name in ("start_date", "end_date"):
        formats = {branch["format"] for branch in parameter(activity, name)["anyOf"]}
        assert formats == {"date", "date-time"}
    assert parameter(activity, "cursor")["pattern"].startswith("^d\\.")
    assert parameter(activity + "/export", "cursor")["pattern"].startswith("^a\\.")


def test_the_ingest_body_documents_its_three_forms(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]
    json_forms = body["content"]["application/json"]["schema"]["oneOf"]
    assert [form["type"] for form in json_forms] == ["object", "array"]
    assert "application/x-ndjson" in body["content"]
    assert {"413", "415"} <= set(document["paths"]["/v1/events"]["post"]["responses"])


def test_an_unknown_time_zone_is_422_naming_it(api_client: TestClient) -> None:
    response = api_client.get(
        "/v1/projects/p/passes/SP-1/usage",
        params={"tz": "Mars/Olympus"},
        headers=bearer(["p"], ["usage:read"]),
    )
    assert response.status_code == 422
    assert "unknown time zone 'Mars/Olympus'" in response.text


def test_an_unsupported_content_type_is_415(api_client: TestClient) -> None:
    response = api_client.post(
        "/v1/events",
        content=b"a=1",
        headers={**bearer(["p"], ["events:write"]), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert "application/x-ndjson" in response.json()["detail"]
