"""The `sentinel-usage` command: the composition root that wires the layers together."""
