"""Endpoint normalisation: concrete paths become route templates so that
`unique_endpoints` counts routes, not resources (DESIGN.md conventions)."""

from __future__ import annotations

import re

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_NUMBER = re.compile(r"^\d+$")
_LONG_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")


def normalise_endpoint(raw: str) -> str:
    """`/v1/items/42?x=1` -> `/v1/items/{id}`; templates (`{item_id}`) are kept as given.

    The query string and fragment are dropped (they are not part of the route), a
    trailing slash is removed, and numeric, UUID and long hexadecimal segments
    become `{id}`.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0].strip()
    # Trailing slashes go before the segments are read, and with the spaces
    # they expose ("0 /" is "/0"), so that normalising twice changes nothing.
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1].rstrip()
    if not path.startswith("/"):
        path = "/" + path
    segments = []
    for segment in path.split("/")[1:]:
        if _NUMBER.match(segment) or _UUID.match(segment) or _LONG_HEX.match(segment):
            segments.append("{id}")
        else:
            segments.append(segment)
    return "/" + "/".join(segments)
