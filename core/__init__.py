"""Shared kernel: the usage event model, settings, errors, clock and topic names."""
