"""Test fixtures: footprints (filled in by its owner)."""
