"""Text from outside made safe for each output format: one function per format.

Worker names, client ids, topics, filters, task ids, notes, causes, check details, setup
values, error messages, hosts and paths come from the wire, from files or from the command
line. They are data: no value may style the output, start a line of its own, move the cursor,
set the terminal's title, inject HTML or break a table. Every renderer passes such a value
through the function for its format, at the render boundary and nowhere earlier:

- ``terminal(text)``: the table and every stderr line (rich or plain ``print``). Control
  characters (C0 with TAB, CR and LF; DEL; C1), line and paragraph separators, bidirectional
  overrides and lone surrogates become visible escapes (``\\x1b``, ``\\n``, ``\\u202e``), so a
  value is always one line of printable text. Rich markup needs no escaping because values
  never reach rich as a markup string: the terminal renderers hand them over inside
  ``rich.text.Text`` objects (styled with a style, never with ``[bold]`` interpolated
  around them), which rich does not parse for markup or emoji codes. The escapes are made
  per character, so ``terminal(a + b) == terminal(a) + terminal(b)``, and ``terminal`` of
  its own result changes nothing (backslashes are left as they are).
- ``markdown(text)``: ``--format markdown``: the same visible escapes, then HTML (``<``, ``>``,
  ``&`` as entities) and Markdown (``\\``, backticks, ``*``, ``_`` outside a word, ``~``,
  brackets, pipes, a leading block marker) escaped, so a value is inline text in one table cell
  or line and can form no tag, link, image, code span or new row.
- ``xml(text)``: JUnit. ElementTree escapes ``<``, ``&`` and quotes itself; this makes the
  characters XML 1.0 forbids (most C0 controls, U+FFFE, U+FFFF, lone surrogates) visible
  escapes, so the file always parses. ``xml_document`` serialises a JUnit tree with every
  text and attribute passed through it.
- HTML: Jinja2 autoescape (``render.html``); JSON: raw data (``json.dumps`` escapes).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# C0, DEL and C1 controls; U+061C, U+200E/F, U+202A-E, U+2066-9: bidirectional marks,
# embeddings, overrides and isolates; U+2028/9: line and paragraph separators; lone surrogates
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]")
# what XML 1.0 does not allow in a document at all (TAB, LF and CR are allowed)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    """``\\n``, ``\\x1b``, ``\\u202e``: a character shown as its Python escape."""
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: str) -> str:
    """``text`` as one line of printable characters for the terminal: every control character,
    line separator, bidirectional override or lone surrogate shown as its escape (``\\x1b``,
    ``\\n``). Put the result in a ``rich.text.Text`` (never in a markup string) or print it."""
    return _UNSAFE.sub(_visible, text)


_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_SPECIAL = re.compile(r"[&<>\\`*~\[\]|]|_+")
_MD_LEADING = re.compile(r"[#+=-]|\d{1,9}(?=[.)])")  # a block marker where a value starts


def _md_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _MD_ENTITIES:
        return _MD_ENTITIES[char]
    if char.startswith("_"):  # inside a word (``worker_1``) an underscore emphasises nothing
        text, start, end = match.string, match.start(), match.end()
        if start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum():
            return char
        return "\\_" * len(char)
    return "\\" + char


def markdown(text: str) -> str:
    """``text`` as inline Markdown that shows exactly its characters: one line (``terminal``'s
    escapes, backslashes doubled so they read the same), HTML characters as entities, and
    nothing that could open a tag, link, image, code span, emphasis or a new table cell."""
    out = _MD_SPECIAL.sub(_md_escape, terminal(text))
    if lead := _MD_LEADING.match(out):  # ``# x``, ``- x``, ``1. x`` would start a block
        end = lead.end()
        out = f"{out[:end]}\\{out[end:]}" if lead.group()[0].isdigit() else "\\" + out
    return out


def xml(text: str) -> str:
    """``text`` with the characters XML 1.0 forbids shown as escapes (``\\x1b``); everything
    else is left for the XML writer to escape."""
    return _NOT_XML.sub(_visible, text)


def xml_document(element: ET.Element) -> str:
    """The JUnit document of ``element``: every text and attribute through ``xml``, indented,
    with its XML declaration."""
    for node in element.iter():
        node.text = None if node.text is None else xml(node.text)
        node.tail = None if node.tail is None else xml(node.tail)
        for key, value in list(node.attrib.items()):
            node.set(key, xml(value))
    ET.indent(element)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(element, "unicode") + "\n"
