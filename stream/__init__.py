"""The stream worker (Faust): the sink that writes the activity log, the per-pass
windows and their rollups, the error-rate alerts, and the rebuild of lost windows."""
