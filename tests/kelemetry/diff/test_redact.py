"""Redaction: Secret values and configured fields never survive `Redactor.clean`; redacting is one
way (opaque text with a keyed digest), the same wherever a body enters, and idempotent."""

from __future__ import annotations

import pytest

from kelemetry.diff.redact import REDACTED_TEXT, RedactionRule, Redactor, is_redacted, shown, with_rules


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
    assert all(is_redacted(v) for v in [*cleaned["data"].values(), *cleaned["stringData"].values()])
    assert "managedFields" not in cleaned["metadata"]
    assert cleaned["type"] == "Opaque"
    assert "canary" not in repr(cleaned) and "Y2FuYXJ5" not in repr(cleaned)
    assert body["data"]["password"] == "Y2FuYXJ5"  # the input is not modified


def test_other_resources_keep_their_values_unless_a_rule_says_so() -> None:
    body = {"metadata": {"name": "c"}, "data": {"k": "v"}}
    assert Redactor().clean("", "configmaps", body)["data"] == {"k": "v"}
    rules = [RedactionRule.parse("configmaps:data"), RedactionRule.parse("widgets.example.com:spec")]
    redactor = Redactor(rules)
    assert is_redacted(redactor.clean("", "configmaps", body)["data"]["k"])
    widget = redactor.clean("example.com", "widgets", {"spec": {"a": [1, {"b": "x"}]}})
    assert is_redacted(widget["spec"]["a"][1]["b"]) and widget["spec"]["a"][0] != 1


def test_redacted_values_compare_by_value_without_holding_it() -> None:
    def one(value: str) -> str:
        redacted: str = Redactor().clean("", "secrets", {"data": {"k": value}})["data"]["k"]
        return redacted

    assert one("a") == one("a") != one("b")
    # "hunter2" has letters no hex digest has, so finding it would mean the value itself was kept.
    assert "hunter2" not in one("hunter2") and shown(one("hunter2")) == REDACTED_TEXT


def test_redacting_twice_changes_nothing() -> None:
    # The webhook redacts at the edge; the converter reads the same body and redacts again.
    body = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}}}
    once = Redactor().clean("", "secrets", {**body, "data": {"p": "hunter2"}, "stringData": {"q": 1}})
    assert Redactor().clean("", "secrets", once) == once
    assert Redactor.opaque(Redactor.opaque(["x", {"y": 2}])) == Redactor.opaque(["x", {"y": 2}])


@pytest.mark.parametrize("text", ["secrets", "secrets:", ":data", "secrets:data.password"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid redaction rule"):
        RedactionRule.parse(text)


def test_a_data_rule_covers_binary_data_too() -> None:
    redactor = with_rules(["configmaps:data"])
    cleaned = redactor.clean("", "configmaps", {"data": {"a": "x"}, "binaryData": {"b": "eA=="}})
    assert is_redacted(cleaned["data"]["a"]) and is_redacted(cleaned["binaryData"]["b"])


def test_a_resource_spelled_otherwise_is_still_recognised() -> None:
    redactor = Redactor()
    for spelled in ("Secrets", "SECRETS", "%73ecrets", "%73%65%63%72%65%74%73"):
        assert {"data", "stringData"} <= redactor.fields_of("", spelled), spelled
    assert not redactor.fields_of("", "configmaps")


def test_a_list_has_each_item_cleaned_as_what_it_is() -> None:
    redactor = Redactor()
    secret_list = {
        "kind": "SecretList",
        "apiVersion": "v1",
        "items": [{"data": {"k": "v1"}}, {"data": {"k": "v2"}}],
    }
    # Named as another resource: the list's kind still says its items are Secrets.
    cleaned = redactor.clean("", "pods", secret_list)
    assert all(is_redacted(item["data"]["k"]) for item in cleaned["items"])
    mixed = {
        "kind": "List",
        "apiVersion": "v1",
        "items": [
            {"kind": "ConfigMap", "apiVersion": "v1", "data": {"k": "plain"}},
            {
                "kind": "Secret",
                "apiVersion": "v1",
                "data": {"k": "hidden"},
                "metadata": {"managedFields": [1]},
            },
        ],
    }
    cleaned = redactor.clean("", "configmaps", mixed)
    assert cleaned["items"][0]["data"] == {"k": "plain"}
    assert is_redacted(cleaned["items"][1]["data"]["k"]) and cleaned["items"][1]["metadata"] == {}
    watch_event = {"type": "MODIFIED", "object": {"kind": "Secret", "apiVersion": "v1", "data": {"k": "v"}}}
    assert is_redacted(redactor.clean("", "secrets", watch_event)["object"]["data"]["k"])
    # Redacting again changes nothing.
    assert redactor.clean("", "configmaps", cleaned) == cleaned


def test_may_hold_sees_names_in_any_case_and_behind_json_escapes() -> None:
    redactor = Redactor()
    assert redactor.may_hold(b'{"kind":"SecretList"}') and redactor.may_hold(b'{"resource":"SECRETS"}')
    assert redactor.may_hold(b'{"resource":"secr\\u0065ts"}')
    assert not redactor.may_hold(b'{"kind":"Pod","resource":"pods"}')
