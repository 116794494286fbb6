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
kept (``bytes.translate``); the depth is the highest running sum of ``+1``
per opening and ``-1`` per closing bracket. Where the text is not JSON the scan
agrees with the parser up to the first error, which the parser reports: the
parser never goes deeper than the scan measured.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any

DEFAULT_MAX_DEPTH = 64

# A JSON string: quote, any characters but quote and backslash or backslash escapes, quote.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# For bytes.translate: an opening bracket becomes the signed byte +1, a closing one -1; the
# other bytes are deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class TooDeep(ValueError):
    """A JSON text nested deeper than the limit (arrays and objects count one level each)."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the JSON ``text`` (0 for a scalar).

    Brackets inside strings do not count. For text that is not JSON it is at
    least the depth a parser reaches before the first error.
    """
    outside = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = array("b", outside.translate(_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def check_depth(text: str, max_depth: int) -> None:
    """Raise :class:`TooDeep` if ``text`` nests arrays and objects deeper than ``max_depth``."""
    if text.count("[") + text.count("{") <= max_depth:
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
    ``orjson.loads``); it gets the same ``str`` that was measured: ``bytes``
    are decoded as UTF-8 first (RFC 8259 section 8.1), as a parser guessing
    another encoding would see other brackets. Raises :class:`TooDeep` (a
    ``ValueError``) for deeper text, ``UnicodeDecodeError`` (a ``ValueError``)
    for bytes that are not UTF-8, and whatever ``parse`` raises for text that
    is not JSON.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    check_depth(text, max_depth)
    return parse(text)
