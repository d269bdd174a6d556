"""Redaction: Secret values and configured fields never survive `Redactor.clean`."""

from __future__ import annotations

import pytest

from kelemetry.diff.redact import Redacted, RedactionRule, Redactor


def test_secret_values_are_masked_and_keys_kept() -> None:
    body = {
        "kind": "Secret",
        "metadata": {"name": "s", "managedFields": [{"manager": "kubectl"}]},
        "data": {"password": "Y2FuYXJ5", "user": "YWRtaW4="},
        "stringData": {"token": "canary"},
        "type": "Opaque",
    }
    cleaned = Redactor().clean("", "secrets", body)
    assert set(cleaned["data"]) == {"password", "user"}
    assert all(isinstance(v, Redacted) for v in [*cleaned["data"].values(), *cleaned["stringData"].values()])
    assert "managedFields" not in cleaned["metadata"]
    assert cleaned["type"] == "Opaque"
    assert "canary" not in repr(cleaned) and "Y2FuYXJ5" not in repr(cleaned)
    assert body["data"]["password"] == "Y2FuYXJ5"  # the input is not modified


def test_other_resources_keep_their_values_unless_a_rule_says_so() -> None:
    body = {"metadata": {"name": "c"}, "data": {"k": "v"}}
    assert Redactor().clean("", "configmaps", body)["data"] == {"k": "v"}
    rules = [RedactionRule.parse("configmaps:data"), RedactionRule.parse("widgets.example.com:spec")]
    redactor = Redactor(rules)
    assert isinstance(redactor.clean("", "configmaps", body)["data"]["k"], Redacted)
    widget = redactor.clean("example.com", "widgets", {"spec": {"a": [1, {"b": "x"}]}})
    assert isinstance(widget["spec"]["a"][1]["b"], Redacted)


def test_markers_compare_by_value_without_holding_it() -> None:
    assert Redacted.of("a") == Redacted.of("a") != Redacted.of("b")
    assert str(Redacted.of("a")) == "<redacted>" and "a" not in Redacted.of("a").digest[:0]


@pytest.mark.parametrize("text", ["secrets", "secrets:", ":data", "secrets:data.password"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid redaction rule"):
        RedactionRule.parse(text)
