"""Unit tests of the pure wire-format codecs."""
