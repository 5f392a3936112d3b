"""The Faust stream worker: the activity-log sink (and, later, windows and alerts)."""
