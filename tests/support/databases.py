"""Test fixtures: databases (filled in by its owner)."""
