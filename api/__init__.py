"""The FastAPI layer: event ingest, the Usage tab API, health and metrics."""
