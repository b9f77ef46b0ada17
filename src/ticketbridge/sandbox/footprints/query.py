"""The SQL subset the emulated MRWebServices ``search`` accepts.

Footprints' ``search`` call ran the caller's SQL against its MySQL tables; the OSG GOC code
only ever asked ``SELECT mrID FROM MASTER71 WHERE Originating__bTicket__bNumber = '…'``.
The emulator accepts exactly this shape and refuses everything else, naming the problem:

    SELECT mrID[, column …] FROM MASTER<project> WHERE column = 'value' [AND column = '…'] [;]

Keywords are case-insensitive; a quote inside a value is doubled (``'O''Brien'``).
Columns are checked by the engine (:func:`engine.column_known`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Query", "QueryError", "parse_query"]

_SHAPE = re.compile(
    r"\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?P<table>\S+)\s+WHERE\s+(?P<where>.+?)\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*'((?:[^']|'')*)'\s*")
_AND = re.compile(r"AND\b", re.IGNORECASE)
MAX_QUERY_CHARS = 4000


class QueryError(ValueError):
    """A query outside the supported subset; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: selected columns, the project's table and equality conditions."""

    columns: tuple[str, ...]
    project: int
    where: tuple[tuple[str, str], ...]


def parse_query(text: str) -> Query:
    """Parse one query of the supported subset. Raises QueryError naming the problem."""
    from ticketbridge.sandbox.footprints.engine import column_known

    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query longer than {MAX_QUERY_CHARS} characters")
    shape = _SHAPE.fullmatch(text)
    if shape is None:
        raise QueryError(
            "unsupported query: expected SELECT mrID[, col…] FROM MASTER<project> "
            "WHERE col = 'value' [AND …]")
    columns = tuple(c.strip() for c in shape.group("columns").split(","))
    for column in columns:
        if not _IDENT.fullmatch(column):
            raise QueryError(f"unsupported column expression {column!r} in the select list")
        if not column_known(column):
            raise QueryError(f"Unknown column '{column}' in 'field list'")
    if columns[0].lower() != "mrid":
        raise QueryError("the select list must start with mrID")
    table = shape.group("table")
    match = re.fullmatch(r"MASTER(\d+)", table, re.IGNORECASE)
    if match is None:
        raise QueryError(f"unsupported table {table!r}: only MASTER<project> can be searched")
    where: list[tuple[str, str]] = []
    rest = shape.group("where")
    pos = 0
    while True:
        condition = _CONDITION.match(rest, pos)
        if condition is None:
            raise QueryError(
                f"unsupported condition at {rest[pos:pos + 40]!r}: only col = 'value' "
                "joined by AND")
        column, value = condition.group(1), condition.group(2).replace("''", "'")
        if not column_known(column):
            raise QueryError(f"Unknown column '{column}' in 'where clause'")
        where.append((column, value))
        pos = condition.end()
        if pos == len(rest):
            break
        conjunction = _AND.match(rest, pos)
        if conjunction is None:
            raise QueryError(f"unsupported SQL at {rest[pos:pos + 40]!r}: only AND joins "
                             "conditions")
        pos = conjunction.end()
    return Query(columns=columns, project=int(match.group(1)), where=tuple(where))
