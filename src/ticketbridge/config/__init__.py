"""Configuration: one YAML file in, validated settings out, every problem reported at once.

The file is read with ruamel.yaml (YAML 1.2: ``no`` stays a string) in round-trip mode so
that every key keeps its line number; pydantic validates the plain data; each validation
error is reported as ``file:line (dotted.path): message``. Cross-references (a receiver's
helpdesk, an exchange's two sides) are checked after the schema, still collecting all
problems before raising one :class:`~ticketbridge.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ticketbridge.config.settings import SUPPORTED_PAIRS, Settings
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
    """Validate configuration ``text``; relative paths are resolved against ``base_dir``."""
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(f"not valid YAML: {exc}", source, line)]) from exc
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError([Problem("the top level must be a mapping of keys", source, 1)])
    data = _plain(tree)
    if base_dir is not None:
        data.setdefault("base_dir", str(base_dir))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(err["msg"], source, _line_of(tree, err["loc"]), _dotted(err["loc"]))
            for err in exc.errors()
        ]
        raise ConfigError(problems) from exc
    problems = [
        Problem(msg, source, _line_of(tree, loc), _dotted(loc))
        for loc, msg in cross_check(settings)
    ]
    if problems:
        raise ConfigError(problems)
    return settings


def cross_check(settings: Settings) -> list[tuple[tuple[str | int, ...], str]]:
    """References between sections that the schema alone cannot check."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    names = settings.helpdesks
    for name, receiver in settings.receivers.items():
        if receiver.helpdesk not in names:
            problems.append(
                (("receivers", name, "helpdesk"), f"unknown helpdesk {receiver.helpdesk!r}")
            )
    for name, exchange in settings.exchanges.items():
        for side in ("source", "target"):
            ref = getattr(exchange, side)
            if ref not in names:
                problems.append((("exchanges", name, side), f"unknown helpdesk {ref!r}"))
        if exchange.source in names and exchange.target in names:
            pair = (names[exchange.source].kind, names[exchange.target].kind)
            if pair not in SUPPORTED_PAIRS:
                supported = ", ".join(f"{a} -> {b}" for a, b in sorted(SUPPORTED_PAIRS))
                problems.append(
                    (
                        ("exchanges", name),
                        f"no exchange from {pair[0]} to {pair[1]} (supported: {supported})",
                    )
                )
    sources = [e.source for e in settings.exchanges.values()]
    for helpdesk in {s for s in sources if sources.count(s) > 1}:
        problems.append((("exchanges",), f"helpdesk {helpdesk!r} is the source of two exchanges"))
    return problems


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or "-" in p)))


def _line_of(tree: Any, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    node = tree
    line: int | None = 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            continue  # pydantic adds union tags to loc; skip what is not in the document
    return line
