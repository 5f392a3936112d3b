"""Local mode is local: the page's sign-in answers loopback clients only, for one
project, with the scopes the pages need (issue 12: it gave an 8-hour token for any
project to anyone who could reach the port)."""

from __future__ import annotations

import jwt
from fastapi.testclient import TestClient

from tests.integration.conftest import SECRET


def test_a_loopback_client_gets_a_token_for_its_project_with_the_pages_scopes(
    api_client: TestClient,
) -> None:
    local = TestClient(api_client.app, client=("127.0.0.1", 50_000))
    response = local.post("/ui/local-token", json={"project_id": "proj-a"})
    assert response.status_code == 200
    claims = jwt.decode(response.json()["token"], SECRET, algorithms=["HS256"])
    assert claims["projects"] == ["proj-a"]
    assert claims["scope"].split() == ["passes:read", "passes:write", "usage:read", "usage:export"]


def test_a_client_on_another_machine_gets_nothing(api_client: TestClient) -> None:
    remote = TestClient(api_client.app, client=("192.0.2.10", 50_000))
    response = remote.post("/ui/local-token", json={"project_id": "proj-a"})
    assert response.status_code == 404
    assert "token" not in response.text


def test_a_project_id_that_is_not_an_identifier_is_refused(api_client: TestClient) -> None:
    local = TestClient(api_client.app, client=("::1", 50_000))
    response = local.post("/ui/local-token", json={"project_id": "a b/../c"})
    assert response.status_code == 422


def test_the_api_port_serves_no_metrics(api_client: TestClient) -> None:
    """Issue 12: /metrics listed every tenant's passes to anyone reaching the API port;
    metrics have a listener of their own (SENTINEL_METRICS_HOST, loopback by default)."""
    assert api_client.get("/metrics").status_code == 404


def test_each_tab_of_a_pass_has_its_page_and_another_name_is_not_found(
    api_client: TestClient,
) -> None:
    for tab in ("overview", "permissions", "usage", "settings"):
        page = api_client.get(f"/ui/projects/proj-a/passes/SP-2026-AAAAAA/{tab}")
        assert page.status_code == 200
        assert 'id="tab-settings"' in page.text
    assert api_client.get("/ui/projects/proj-a/passes/SP-2026-AAAAAA/nope").status_code == 404
