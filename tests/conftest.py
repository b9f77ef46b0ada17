"""Shared test set-up. Fixtures live in tests/support/ modules, registered here."""

pytest_plugins = [
    "tests.support.databases",
    "tests.support.mailservers",
    "tests.support.footprints",
    "tests.support.ggus",
]
