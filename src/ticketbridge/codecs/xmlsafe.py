"""The one way ticketbridge parses XML that came from outside: :func:`safe_parse`.

Every XML document a partner sends (a GGUS notification mail, a SOAP body) is untrusted.
The dangerous parts of XML all live in, or are reached through, a document type
declaration: external entities (XXE: a ``SYSTEM "file:///etc/passwd"`` or ``http://``
entity), entity expansion bombs (billion laughs, quadratic blowup) and DTD loading. No
helpdesk format ticketbridge speaks needs a DTD, so the rule is simple and strict:

* any ``<!DOCTYPE`` (with or without an internal subset) is refused;
* any entity reference other than the five predefined ones (``&amp;`` ...) is refused,
  declared or not (character references such as ``&#233;`` are ordinary text);
* input larger than ``max_bytes`` is refused before the parser sees it;
* element nesting deeper than ``max_depth`` is refused.

Refusals raise :class:`~ticketbridge.errors.UnsafeXML` with a message that names the
problem; a document that is merely broken raises
:class:`~ticketbridge.errors.MalformedMessage` with the parser's line and column. The
parser itself is configured defensively as well (no entity resolution, no network, no DTD
loading, libxml2's size limits kept), so a refusal check that is ever bypassed still does
not expand or fetch anything: the checks and the parser settings are independent layers.

Library choice: design/libraries.md, row "XML parsing" (lxml >= 6.1 behind one helper).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from lxml import etree

from ticketbridge.errors import MalformedMessage, UnsafeXML

__all__ = ["safe_parse"]

# A DOCTYPE can only appear in the prolog, i.e. before the first element start tag; we look
# for it there so that "<!DOCTYPE" quoted inside a CDATA section of the body is not refused.
_FIRST_ELEMENT = re.compile(r"<[A-Za-z_:]")
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(r"<!ENTITY\s+(%\s+)?([^\s>]+)", re.IGNORECASE)
_EXTERNAL_ID = re.compile(r"\b(SYSTEM|PUBLIC)\b")
_XML_DECLARATION = re.compile(r"\A\ufeff?\s*<\?xml\b[^>]*\?>")

# libxml2 error codes that mean "an entity was involved" or "a resource limit was hit".
_ENTITY_ERRORS = frozenset(
    {
        etree.ErrorTypes.ERR_UNDECLARED_ENTITY,
        etree.ErrorTypes.WAR_UNDECLARED_ENTITY,
        etree.ErrorTypes.ERR_UNPARSED_ENTITY,
        etree.ErrorTypes.ERR_ENTITY_LOOP,
        etree.ErrorTypes.ERR_ENTITY_BOUNDARY,
        etree.ErrorTypes.ERR_ENTITY_PE_INTERNAL,
    }
)
_LIMIT_ERRORS = frozenset({etree.ErrorTypes.ERR_RESOURCE_LIMIT})


def _parser(huge_text: bool = False) -> etree.XMLParser:
    # A fresh parser per call: parsers carry an error log and are not thread-safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=huge_text,
        dtd_validation=False,
        remove_blank_text=False,
    )


def _sniff_text(data: bytes) -> str:
    """Enough of ``data`` as text to look for markup in the prolog, whatever its encoding."""
    head = data[:4]
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return data.decode(name, "replace")
    if head[:2] == b"<\x00":
        return data.decode("utf-16-le", "replace")
    if head[:2] == b"\x00<":
        return data.decode("utf-16-be", "replace")
    # Every other encoding XML allows is ASCII-compatible for markup characters.
    return data.decode("latin-1")


def _refuse_doctype(text: str) -> None:
    """Raise UnsafeXML when the prolog of ``text`` holds a document type declaration."""
    first = _FIRST_ELEMENT.search(text)
    prolog = text[: first.start()] if first else text
    match = _DOCTYPE.search(prolog)
    if match is None:
        return
    # The internal subset may itself contain "<name" inside entity values, so the subset is
    # taken up to the end of the whole text for naming what it declares.
    subset = text[match.start() :]
    entities = _ENTITY_DECL.findall(subset)
    if not entities:
        raise UnsafeXML("XML refused: a DOCTYPE declaration is not allowed")
    names = ", ".join(name for _, name in entities[:5])
    more = f" and {len(entities) - 5} more" if len(entities) > 5 else ""
    external = [
        decl
        for decl in re.findall(r"<!ENTITY[^<>]*>", subset, re.IGNORECASE)
        if _EXTERNAL_ID.search(decl)
    ]
    kind = "an external entity (XXE)" if external else "entity declarations"
    raise UnsafeXML(
        f"XML refused: a DOCTYPE declaration with {kind} is not allowed "
        f"(declares entity {names}{more})"
    )


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise UnsafeXML(
                    f"XML refused: elements are nested deeper than the limit of {max_depth}"
                )
        else:
            depth -= 1


def safe_parse(
    data: bytes | str, *, max_bytes: int = 1_000_000, max_depth: int = 64,
    huge_text: bool = False,
) -> etree._Element:
    """Parse untrusted XML and return its root element.

    ``data`` may be bytes (the encoding comes from a BOM or the XML declaration, UTF-8 by
    default) or an already decoded str; a str's XML declaration is dropped, because its
    ``encoding=`` no longer describes anything.

    Raises :class:`UnsafeXML` for a DOCTYPE, an entity declaration or reference, more than
    ``max_bytes`` bytes (a str is measured in UTF-8) or nesting deeper than ``max_depth``;
    :class:`MalformedMessage` for anything else the parser rejects, naming line and column.

    ``huge_text`` lifts libxml2's own limits (a text node over 10 MB: one base64-encoded
    file) for a caller that expects one; the DOCTYPE and entity refusals, ``max_bytes`` and
    ``max_depth`` still hold, so nothing is expanded and the document stays bounded.
    """
    if isinstance(data, str):
        try:
            payload = _XML_DECLARATION.sub("", data, count=1).lstrip("\ufeff").encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedMessage(
                f"malformed XML: text holds an unencodable character at offset {exc.start} "
                f"({exc.reason})"
            ) from None
        text = data
    else:
        payload = data
        text = ""
    size = len(payload)
    if size > max_bytes:
        raise UnsafeXML(f"XML refused: document of {size} bytes exceeds the limit of {max_bytes}")
    _refuse_doctype(text if isinstance(data, str) else _sniff_text(payload))

    parser = _parser(huge_text)
    try:
        root = etree.fromstring(payload, parser)
    except etree.XMLSyntaxError as exc:
        raise _translate(exc, parser) from None
    if root is None:  # pragma: no cover - lxml raises for empty input, this is for typing
        raise MalformedMessage("malformed XML: the document is empty")

    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise UnsafeXML("XML refused: a DOCTYPE declaration is not allowed")
    entity = next(root.iter(etree.Entity), None)
    if entity is not None:
        raise UnsafeXML(f"XML refused: entity reference {entity.text} is not allowed")
    _check_depth(root, max_depth)
    return root


def _translate(exc: etree.XMLSyntaxError, parser: etree.XMLParser) -> MalformedMessage | UnsafeXML:
    """Turn a parser error into our error, naming what and where."""
    errors = [e for e in parser.error_log if e.level_name in ("ERROR", "FATAL")]
    first = errors[0] if errors else None
    code = first.type if first is not None else getattr(exc, "code", None)
    message = (first.message if first is not None else str(exc.msg)).strip()
    line = first.line if first is not None else exc.lineno
    column = first.column if first is not None else exc.offset
    where = f"line {line}, column {column}"
    if code in _ENTITY_ERRORS:
        return UnsafeXML(f"XML refused: entity reference is not allowed ({message}, {where})")
    if code in _LIMIT_ERRORS:
        if "depth" in message.lower():
            return UnsafeXML(f"XML refused: elements are nested too deep ({message}, {where})")
        return UnsafeXML(f"XML refused: parser resource limit exceeded ({message}, {where})")
    return MalformedMessage(f"malformed XML at {where}: {message}")
