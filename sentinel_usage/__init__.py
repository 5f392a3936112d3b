"""sentinel-usage: per-credential usage analytics for Sentinel Passes."""
