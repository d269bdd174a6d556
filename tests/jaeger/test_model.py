"""The Jaeger query-API JSON model (jaeger.model): tag typing.

Covers: key_value picks the Jaeger type from the Python value (bool before int, since bool is an
int subclass; floats; strings; other values as strings), and the values survive JSON encoding with
their JSON types. The response envelope is the query side's (tests/frontend/test_dump.py).
"""

from __future__ import annotations

import json

import orjson
import pytest

from jaeger import model


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "bool"),
        (False, "bool"),
        (0, "int64"),
        (409, "int64"),
        (-(2**63), "int64"),
        (2**63 - 1, "int64"),
        (0.5, "float64"),
        (-1.0, "float64"),
        ("", "string"),
        ("ünïcode", "string"),
        ("true", "string"),
        ("42", "string"),
    ],
)
def test_key_value_types_follow_the_python_value(value: object, kind: str) -> None:
    tag = model.key_value("k", value)  # type: ignore[arg-type]
    assert tag == {"key": "k", "type": kind, "value": value}
    assert type(tag["value"]) is type(value)


def test_a_bool_is_never_reported_as_an_integer() -> None:
    tag = model.key_value("kelemetry.pseudo", True)
    assert tag["type"] == "bool"
    assert tag["value"] is True
    assert json.loads(orjson.dumps(tag)) == {"key": "kelemetry.pseudo", "type": "bool", "value": True}


def test_other_values_become_strings() -> None:
    class Version:
        def __str__(self) -> str:
            return "v1"

    assert model.key_value("v", Version()) == {"key": "v", "type": "string", "value": "v1"}  # type: ignore[arg-type]


def test_tag_values_keep_their_json_types() -> None:
    tags = [
        model.key_value("b", False),
        model.key_value("i", 7),
        model.key_value("f", 2.5),
        model.key_value("s", "x"),
    ]
    decoded = json.loads(json.dumps(tags))
    assert [(t["type"], t["value"]) for t in decoded] == [
        ("bool", False),
        ("int64", 7),
        ("float64", 2.5),
        ("string", "x"),
    ]
