"""Bounded JSON decoding (roomhub.jsonlimits): the nesting depth measured before parsing."""

from __future__ import annotations

import json

import orjson
import pytest

from roomhub import jsonlimits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 0),
        ('"[[[{"', 0),
        ("[]", 1),
        ('[[1], {"a": [2]}]', 3),
        ('["\\"[[[", {"k\\\\": [[]]}]', 4),  # escaped quotes and backslashes inside strings
        ("[" * 1000 + "]" * 1000, 1000),
        ('{"a":' * 70 + "1" + "}" * 70, 70),
    ],
)
def test_depth_counts_arrays_and_objects_outside_strings(text: str, expected: int) -> None:
    assert jsonlimits.depth(text) == expected


def test_loads_refuses_past_the_limit_as_a_value_error() -> None:
    assert jsonlimits.loads("[" * 5 + "]" * 5, 5) == [[[[[]]]]]
    with pytest.raises(jsonlimits.TooDeep, match="deeper than 5 levels"):
        jsonlimits.loads("[" * 6 + "]" * 6, 5)
    with pytest.raises(ValueError):
        jsonlimits.loads("[" * 1000 + "]" * 1000)
    with pytest.raises(ValueError):
        jsonlimits.loads(b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}")


def test_brackets_inside_strings_do_not_count_and_the_given_parser_is_used() -> None:
    text = json.dumps({"text": "[" * 1000, "list": [[1]]})
    assert jsonlimits.loads(text, 3, orjson.loads) == {"text": "[" * 1000, "list": [[1]]}


def test_bytes_are_utf8_as_the_parser_sees_them() -> None:
    assert jsonlimits.loads('{"é": [1]}'.encode()) == {"é": [1]}
    # UTF-16 (which json.loads would guess from bytes) hides a deep value from a UTF-8 reading
    # of its strings: the parser gets the UTF-8 text that was measured, and refuses it.
    utf16 = ('["\\"", "x", ' + "[" * 1000 + "]" * 1000 + ', "y"]').encode("utf-16-le")
    with pytest.raises(ValueError):
        jsonlimits.loads(utf16)
    with pytest.raises(UnicodeDecodeError):
        jsonlimits.loads(b'["\xff"]')


def test_text_that_is_not_json_is_left_to_the_parser() -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonlimits.loads("[[1, 2", 64)
    # An unterminated string hides nothing from the measure.
    with pytest.raises(jsonlimits.TooDeep):
        jsonlimits.loads('"' + "[" * 100, 64)
