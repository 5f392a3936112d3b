"""The gateway: an ASGI middleware that admits pass access tokens in front of a project's
API, enforces scopes per route and records every call as a usage event."""
