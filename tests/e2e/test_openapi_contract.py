"""Schemathesis against the OpenAPI document a running `up` serves: every operation, every
check, stateful links, with a token of the project, and every successful read replayed
with another project's token (tests/e2e/schemathesis_hooks.py). Bounded by
SENTINEL_SCHEMATHESIS_SECONDS (90 by default); the report lands in tests/artifacts/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.stack import Stack, start_stack

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("SENTINEL_SCHEMATHESIS_SECONDS", "90"))
# The analytics' pass is managed elsewhere (events only), so that the fuzzer's DELETE
# cannot take the reads' data away; the registry's pass is the fuzzer's to change.
PROJECT, PASS_ID, REGISTRY_PASS = "demo", "SP-2026-A1B2C3", "SP-2026-R3G1ST"
OTHER_PROJECT, OTHER_PASS = "other", "SP-2026-OTHER1"
SCOPES = ["usage:read", "usage:export", "events:write", "passes:read", "passes:write"]


def seed(stack: Stack) -> None:
    """A registry pass and activity of every type for one pass of each project, so that
    reads find data."""
    now = datetime.now(UTC)
    with stack.client([PROJECT, OTHER_PROJECT], SCOPES) as client:
        for project, pass_id in ((PROJECT, REGISTRY_PASS), (OTHER_PROJECT, OTHER_PASS)):
            created = client.post(
                f"/v1/projects/{project}/passes",
                json={"agent_name": "Contract Bot", "agent_type": "fuzzer", "pass_id": pass_id},
            )
            assert created.status_code == 201, created.text
        for project, pass_id, count in ((PROJECT, PASS_ID, 60), (OTHER_PROJECT, OTHER_PASS, 10)):
            events = [
                {
                    "project_id": project,
                    "pass_id": pass_id,
                    "client_id": f"client-{pass_id}",
                    "activity_type": ("api_request", "token_generation", "error")[i % 3],
                    "started_at": (now - timedelta(minutes=7 * i)).isoformat(),
                    "endpoint": f"/v1/items/{i}",
                    "http_method": "GET",
                    "status_code": 500 if i % 10 == 0 else 200,
                    "duration_ms": 10.0 + i,
                    "metadata": {"i": i},
                }
                for i in range(count)
            ]
            response = client.post("/v1/events", json=events)
            assert response.json()["accepted"] == count, response.text


def test_the_served_document_is_the_contract_the_server_keeps(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "stack")
    try:
        seed(stack)
        config = tmp_path / "schemathesis.toml"
        # The analytics' reads look at the seeded pass; the registry's operations get
        # generated or linked ids, so that what the fuzzer creates is what it then changes.
        analytics = r"passes/\{pass_id\}/(usage|overview|activity|activity/export|alerts)$"
        config.write_text(
            f'[parameters]\nproject_id = "{PROJECT}"\n\n[[operations]]\n'
            f"include-path-regex = '{analytics}'\n"
            f'parameters = {{ pass_id = "{PASS_ID}" }}\n\n'
            # RFC 6749 §5.2 answers a well-formed exchange it refuses (a scope the pass
            # lacks, a grant it does not offer) with 400: the token endpoint's
            # schema-valid requests may be refused so, and only there.
            '[[operations]]\ninclude-path = "/oauth/token"\n'
            "checks = { positive_data_acceptance = { expected-statuses = "
            '["2xx", 400, 401, 429] } }\n'
        )
        operations = sum(
            len(item) for item in stack.client().get("/openapi.json").json()["paths"].values()
        )
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file",
                str(config),
                "run",
                f"{stack.base_url}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {stack.token([PROJECT], SCOPES)}",
                "--max-time",
                str(SECONDS),
                # One worker: with two, CPython 3.11's ast module raised "AST constructor
                # recursion depth mismatch" inside Hypothesis (threads parsing at once).
                "--workers",
                "1",
                "--warnings",
                "off",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # its example database (.schemathesis/) stays out of the tree
            timeout=SECONDS + 120,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
                "SENTINEL_OTHER_PROJECT_TOKEN": stack.token([OTHER_PROJECT], SCOPES),
                "PYTHONPATH": str(ROOT),
                "NO_COLOR": "1",
            },
            check=False,
        )
    finally:
        stack.stop()
    report = result.stdout + result.stderr
    (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    (ROOT / "tests" / "artifacts" / "schemathesis.txt").write_text(report)
    summary = re.search(r"(\d+) generated, (\d+) passed", report)
    print(summary.group(0) if summary else report[-3000:])
    assert result.returncode == 0, report[-8000:]
    assert f"Tested: {operations}" in report, report[-3000:]
    assert summary is not None
    assert int(summary.group(1)) == int(summary.group(2))
    assert int(summary.group(1)) >= 1000, "too few requests to mean anything"
