"""Sentinel Passes: the registry, client credentials and the OAuth 2.0 token issuer."""
