"""Test fixtures: mailservers (filled in by its owner)."""
