"""Bounded JSON decoding of what clients send: a nesting depth limit before the parser runs.

Python's ``json`` parser recurses once per array or object level: a 2 KB
frame of ``[`` * 1000 raises ``RecursionError`` (not ``ValueError``) inside
it, and a value a little less deep still breaks the encoders and handlers
that walk it later. :func:`loads` measures the nesting depth of the text
first and refuses it past ``max_depth`` with :class:`TooDeep`, a
``ValueError``, so every face answers it as it answers any text that is not
JSON (RFC 8259 section 9 lets a parser limit nesting).

The measure costs nothing for ordinary frames: a text with at most
``max_depth`` brackets (two C-speed counts) cannot be nested deeper. Other
texts have their strings cut out (one regular expression) and their brackets
kept (a second one); the depth is the highest running sum of ``+1`` per
opening and ``-1`` per closing bracket. Where the text is not JSON the scan
agrees with the parser up to the first error, which the parser reports: the
parser never goes deeper than the scan measured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

DEFAULT_MAX_DEPTH = 64

# A JSON string: quote, any characters but quote and backslash or backslash escapes, quote.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """A JSON text nested deeper than the limit (arrays and objects count one level each)."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the JSON ``text`` (0 for a scalar).

    Brackets inside strings do not count. Only meaningful for JSON text; for
    other text it is the depth the JSON grammar would reach before its first
    error.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(text: str | bytes, max_depth: int) -> None:
    """Raise :class:`TooDeep` if ``text`` nests arrays and objects deeper than ``max_depth``.

    ``bytes`` are read as UTF-8 (RFC 8259 section 8.1); text that is not
    UTF-8 is left for the parser to refuse.
    """
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= max_depth:
            return
        text = text.decode("utf-8", errors="replace")
    elif text.count("[") + text.count("{") <= max_depth:
        return
    if depth(text) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels")


def loads(
    text: str | bytes,
    max_depth: int = DEFAULT_MAX_DEPTH,
    parse: Callable[[Any], Any] = json.loads,
) -> Any:
    """Parse the JSON ``text`` with ``parse`` once its nesting is known to be at most ``max_depth``.

    ``parse`` is the face's own parser (``json.loads`` by default, or
    ``orjson.loads``). Raises :class:`TooDeep` (a ``ValueError``) for deeper
    text, and whatever ``parse`` raises for text that is not JSON.
    """
    check_depth(text, max_depth)
    return parse(text)
