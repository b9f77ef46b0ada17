"""Configuration: one YAML file in, validated settings out, every problem reported at once.

The file is read with ruamel.yaml (YAML 1.2: ``no`` stays a string) in round-trip mode so
that every key keeps its line number; pydantic validates the plain data; each validation
error is reported as ``file:line (dotted.path): message``. Cross-references (a receiver's
helpdesk, an exchange's two sides and their pair) are checked on the same document even
when the schema found problems, and every problem is raised in one
:class:`~ticketbridge.errors.ConfigError`, in file order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ticketbridge.config.settings import HELPDESK_KINDS, SUPPORTED_PAIRS, Settings
from ticketbridge.errors import ConfigError, Problem

__all__ = ["Settings", "load_config", "parse_config"]


def load_config(path: str | Path) -> Settings:
    """Read, validate and cross-check the configuration file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem(f"cannot read configuration: {exc.strerror}", str(path))]
        ) from exc
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> Settings:
    """Validate configuration ``text``; relative paths are resolved against ``base_dir``.

    Raises :class:`ConfigError` listing every problem (schema and cross-references), in
    the order of their lines.
    """
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, source)]) from exc
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError([Problem("the top level must be a mapping of keys", source, 1)])
    data = _plain(tree)
    problems: list[Problem] = []
    if "base_dir" in data:  # internal: where the file is, never set by the file itself
        del data["base_dir"]
        line, path = _locate(tree, ("base_dir",))
        problems.append(Problem("unknown key", source, line, path))
    if base_dir is not None:
        data["base_dir"] = str(base_dir)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc += ("kind",)  # point at the ``kind`` line, not at the section's name
            line, path = _locate(tree, loc)
            problems.append(Problem(_message(err), source, line, path))
    for loc, msg in cross_check(data):
        line, path = _locate(tree, loc)
        problems.append(Problem(msg, source, line, path))
    if problems or settings is None:
        problems.sort(key=lambda p: p.line or 0)
        raise ConfigError(problems)
    return settings


def cross_check(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """References between sections that the schema alone cannot check.

    Works on the plain document, so these problems are reported together with the schema's
    own; a value of the wrong type is left to the schema.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    helpdesks = _mapping(data.get("helpdesks"))
    kinds = {name: h.get("kind") if isinstance(h, dict) else None for name, h in helpdesks.items()}
    known = ", ".join(sorted(kinds)) or "none is defined"
    for name, receiver in _mapping(data.get("receivers")).items():
        ref = receiver.get("helpdesk") if isinstance(receiver, dict) else None
        if isinstance(ref, str) and ref not in kinds:
            problems.append(
                (("receivers", name, "helpdesk"), f"unknown helpdesk {ref!r} (helpdesks: {known})")
            )
    source_of: dict[str, str] = {}
    for name, exchange in _mapping(data.get("exchanges")).items():
        if not isinstance(exchange, dict):
            continue
        sides = {side: exchange.get(side) for side in ("source", "target")}
        for side, ref in sides.items():
            if isinstance(ref, str) and ref not in kinds:
                problems.append(
                    (("exchanges", name, side), f"unknown helpdesk {ref!r} (helpdesks: {known})")
                )
        source, target = sides["source"], sides["target"]
        pair = (kinds.get(source), kinds.get(target)) if source in kinds and target in kinds else ()
        if pair and set(pair) <= HELPDESK_KINDS and pair not in SUPPORTED_PAIRS:
            supported = ", ".join(f"{a} -> {b}" for a, b in sorted(SUPPORTED_PAIRS))
            problems.append(
                (
                    ("exchanges", name),
                    f"no exchange from {pair[0]} to {pair[1]} (supported: {supported})",
                )
            )
        if isinstance(source, str):
            if source in source_of:
                problems.append(
                    (
                        ("exchanges", name, "source"),
                        f"helpdesk {source!r} is already the source of exchange "
                        f"{source_of[source]!r}; a helpdesk can be the source of one exchange",
                    )
                )
            else:
                source_of[source] = name
    return problems


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _yaml_problem(exc: YAMLError, source: str) -> Problem:
    """One line saying what is wrong with the YAML and where."""
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    where = mark if mark is not None else context_mark
    line = where.line + 1 if where is not None else None
    message = f"not valid YAML: {problem or str(exc).strip()}"
    if mark is not None:
        message += f" (column {mark.column + 1})"
    if context and context_mark is not None and mark is not None:
        message += f", {context} at line {context_mark.line + 1}"
    return Problem(message, source, line)


def _message(err: ErrorDetails) -> str:
    """Pydantic's message, said the way the configuration's reader thinks of it."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key (misspelt?)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "required key is missing: it says which kind this is"
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _key(node: CommentedMap, part: str | int) -> Any:
    """The key of ``node`` that ``part`` names (keys were turned into strings for pydantic)."""
    for key in node:
        if key == part or str(key) == str(part):
            return key
    return _MISSING


_MISSING = object()


def _locate(tree: Any, loc: Sequence[Any]) -> tuple[int | None, str]:
    """The 1-based line of the deepest node of ``loc`` in the YAML tree, and its dotted path.

    Pydantic adds to ``loc`` what is not in the document: the tag of a discriminated union
    (the section's ``kind``) and the names of union members or validators (``...[...]``);
    those are left out of the path. A key that is missing from the document stays in the
    path, at the line of the mapping that should hold it.
    """
    node: Any = tree
    line: int | None = 1
    parts: list[str] = []
    for part in loc:
        if isinstance(node, CommentedMap):
            key = _key(node, part)
            if key is not _MISSING:
                line = node.lc.key(key)[0] + 1
                node = node[key]
                parts.append(str(part))
                continue
            if isinstance(part, str) and node.get("kind") == part:
                continue  # the union's tag
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
            parts.append(str(part))
            continue
        if isinstance(part, str) and "[" in part:
            continue  # a union member's or validator's name
        parts.append(str(part))
        node = None
    return line, ".".join(parts)
