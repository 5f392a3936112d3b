"""The error answers of the API, declared once: what each status means, its body and its
headers, for the OpenAPI document (the routes reference these; the app raises them)."""

from __future__ import annotations

from typing import Any, Final

from sentinel_usage.api.models import ErrorResponse

RETRY_AFTER_SECONDS: Final = 5
# What shows a secret or a token once (RFC 6749 §5.1): kept by no cache.
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_WWW_AUTHENTICATE: Final = {
    "WWW-Authenticate": {
        "description": "RFC 6750 challenge: `Bearer`, with `error` and, for 403, `scope`.",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer"},
    }
}
_RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

_ERRORS: Final[dict[int, dict[str, Any]]] = {
    400: {"description": "The body cannot be read (not UTF-8 JSON)."},
    401: {
        "description": "No bearer token, or one that does not verify (`invalid_token`).",
        "headers": _WWW_AUTHENTICATE,
    },
    403: {
        "description": "The token lacks the scope this operation needs (`insufficient_scope`).",
        "headers": _WWW_AUTHENTICATE,
    },
    404: {
        "description": "No such pass, or a project the token does not grant: "
        "the two answers are the same, so a project's passes cannot be probed.",
    },
    409: {"description": "The pass id is taken."},
    413: {"description": "Too many events or bytes in one request."},
    415: {"description": "The body is neither JSON nor NDJSON."},
    422: {"description": "The body is not JSON or NDJSON, or not an object or an array."},
    503: {
        "description": "A dependency (ClickHouse, the broker) is unavailable: retry later; "
        "nothing was half done.",
        "headers": _RETRY_AFTER,
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries for `codes`, each with an ErrorResponse body."""
    return {code: {"model": ErrorResponse, **_ERRORS[code]} for code in codes}


# Every operation that reads a project's data: a token, its scope, the project, ClickHouse.
PROJECT_READ_ERRORS: Final = error_responses(401, 403, 404, 503)
