"""User rules (kelemetry.linker.systems.rules): templates (fields, metadata keys with dots and slashes,
literal braces, errors), selectors, the linker (first matching rule decides; parents in the object's
own cluster, in another by alias, refusals for missing values, unknown clusters, bad renders and
self-links), and load_rules on YAML and JSON files, good and malformed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kelemetry.linker.links import Clusters, Refusal
from kelemetry.linker.systems.rules import Field, RuleLinker, Template, load_rules, parse_rules
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.linker.bodies import DEPLOYMENT_SPEC, body, ref

FLEET = Clusters(frozenset({"edge-1", "core"}), {"hq": "core"})
OWNER = "app.example.com/owner"
HOME = "app.example.com/home"
DEPLOY = ref("edge-1", "apps", "deployments", "shop", "cart", kind="Deployment", uid="u1")

RULES_YAML = f"""
rules:
  - name: app-owner
    match:
      group: apps
      resource: [deployments, statefulsets]
      labels:
        {OWNER}:
    parent:
      cluster: "{{annotations[{HOME}]}}"
      group: example.com
      version: v1
      kind: Application
      resource: applications
      name: "{{labels[{OWNER}]}}"
  - name: same-cluster
    match:
      annotations:
        app.example.com/tier: backend
    parent:
      group: example.com
      resource: tiers
      namespace: ""
      name: "backend-{{namespace}}"
"""


def rules_from(text: str, tmp_path: Path, suffix: str = ".yaml") -> RuleLinker:
    path = tmp_path / f"rules{suffix}"
    path.write_text(text)
    return RuleLinker(load_rules(path))


@pytest.fixture
def linker(tmp_path: Path) -> RuleLinker:
    return rules_from(RULES_YAML, tmp_path)


def deploy_body(labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return body(DEPLOY, labels=labels, annotations=annotations or {}, spec=DEPLOYMENT_SPEC)


# --- templates ---------------------------------------------------------------------------------


def test_template_renders_fields_metadata_and_literal_braces() -> None:
    template = Template.compile("{{x}}-{cluster}/{ namespace }-{labels[app.example.com/owner]}-{kind}{uid}")
    assert template.render(DEPLOY, {OWNER: "shop"}, {}) == "{x}-edge-1/shop-shop-Deploymentu1"


def test_template_reports_the_missing_key() -> None:
    assert Template.compile("{annotations[a/b]}").render(DEPLOY, {"a/b": "label"}, {}) == Field(
        "annotations", "a/b"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{nmae}", "unknown field", id="typo"),
        pytest.param("{labels}", "unknown field", id="labels-without-key"),
        pytest.param("{labels[]}", "unknown field", id="empty-key"),
        pytest.param("{name.__class__}", "unknown field", id="attribute"),
        pytest.param("{name:>10}", "unknown field", id="format-spec"),
        pytest.param("a{b", "unbalanced", id="open"),
        pytest.param("a}b", "unbalanced", id="close"),
    ],
)
def test_bad_templates_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Template.compile(text)


# --- the linker --------------------------------------------------------------------------------


def test_parent_in_another_cluster_through_an_alias(linker: RuleLinker) -> None:
    found = linker.parent(DEPLOY, deploy_body({OWNER: "webshop"}, {HOME: "hq"}), FLEET)
    assert found == ObjectRef(
        ObjectKey("core", "example.com", "applications", "shop", "webshop"), "", "Application", "v1"
    )


def test_parent_in_the_objects_own_cluster_when_the_cluster_renders_empty(linker: RuleLinker) -> None:
    found = linker.parent(DEPLOY, deploy_body({OWNER: "webshop"}, {HOME: ""}), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("edge-1", "example.com", "applications", "shop", "webshop")


def test_parent_in_the_objects_own_cluster_without_a_cluster_template(linker: RuleLinker) -> None:
    found = linker.parent(DEPLOY, deploy_body({}, {"app.example.com/tier": "backend"}), FLEET)
    assert found == ObjectRef(ObjectKey("edge-1", "example.com", "tiers", "", "backend-shop"))


def test_missing_annotation_named_by_the_template_is_refused(linker: RuleLinker) -> None:
    found = linker.parent(DEPLOY, deploy_body({OWNER: "webshop"}), FLEET)
    assert isinstance(found, Refusal)
    assert found.linker == "rules"
    assert "app-owner" in found.reason and HOME in found.reason


def test_cluster_that_is_not_ours_is_refused(linker: RuleLinker) -> None:
    found = linker.parent(DEPLOY, deploy_body({OWNER: "webshop"}, {HOME: "mars"}), FLEET)
    assert isinstance(found, Refusal)
    assert "mars" in found.reason


@pytest.mark.parametrize(
    ("owner", "reason"),
    [pytest.param("", "renders empty", id="empty-name"), pytest.param("a/b", "contains '/'", id="slash")],
)
def test_bad_rendered_values_are_refused(linker: RuleLinker, owner: str, reason: str) -> None:
    found = linker.parent(DEPLOY, deploy_body({OWNER: owner}, {HOME: "core"}), FLEET)
    assert isinstance(found, Refusal)
    assert reason in found.reason


def test_a_rule_naming_the_object_itself_is_refused(tmp_path: Path) -> None:
    linker = rules_from(
        """
rules:
  - name: loop
    match: {resource: deployments}
    parent: {group: "{group}", resource: "{resource}", name: "{name}"}
""",
        tmp_path,
    )
    found = linker.parent(DEPLOY, deploy_body({}), FLEET)
    assert isinstance(found, Refusal)
    assert "itself" in found.reason


def test_selectors_decide_which_rule_applies(linker: RuleLinker) -> None:
    # Wrong resource for the first rule, wrong tier value for the second: nothing.
    sts = ref("edge-1", "apps", "daemonsets", "shop", "cart")
    assert linker.parent(sts, body(sts, labels={OWNER: "webshop"}, annotations={HOME: "core"}), FLEET) is None
    assert linker.parent(DEPLOY, deploy_body({}, {"app.example.com/tier": "frontend"}), FLEET) is None
    # Both match: the first in the file decides.
    both = deploy_body({OWNER: "webshop"}, {HOME: "core", "app.example.com/tier": "backend"})
    found = linker.parent(DEPLOY, both, FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key.resource == "applications"
    # A list of resources matches any of them.
    sts = ref("edge-1", "apps", "statefulsets", "shop", "cart")
    found = linker.parent(sts, body(sts, labels={OWNER: "webshop"}, annotations={HOME: "core"}), FLEET)
    assert isinstance(found, ObjectRef)


def test_no_rules_link_nothing() -> None:
    assert RuleLinker().parent(DEPLOY, deploy_body({OWNER: "x"}), FLEET) is None


# --- loading -----------------------------------------------------------------------------------


def test_json_file_loads_like_yaml(tmp_path: Path) -> None:
    data = {
        "rules": [
            {
                "name": "json",
                "match": {"labels": {OWNER: None}},
                "parent": {
                    "resource": "applications",
                    "group": "example.com",
                    "name": f"{{labels[{OWNER}]}}",
                },
            }
        ]
    }
    linker = rules_from(json.dumps(data), tmp_path, ".json")
    found = linker.parent(DEPLOY, deploy_body({OWNER: "webshop"}), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("edge-1", "example.com", "applications", "shop", "webshop")


def test_loaded_rules_keep_their_order_and_names(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(RULES_YAML)
    assert [rule.name for rule in load_rules(path)] == ["app-owner", "same-cluster"]


def test_empty_rule_list_is_allowed() -> None:
    assert parse_rules({"rules": []}) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("rules: [", "not valid YAML", id="yaml-syntax"),
        pytest.param("", "one key, 'rules'", id="empty-file"),
        pytest.param("- name: a", "one key, 'rules'", id="bare-list"),
        pytest.param("rules: []\nextra: 1", "one key, 'rules'", id="extra-key"),
        pytest.param("rules: {name: a}", "must be a list", id="rules-not-list"),
        pytest.param("rules: [3]", r"rule 0: a rule must be a mapping", id="rule-not-mapping"),
        pytest.param(
            "rules: [{match: {resource: pods}, parent: {resource: pods, name: x}}]",
            "'name' must be",
            id="no-name",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: pods}, parent: {resource: pods, name: x}, when: 1}]",
            "unknown keys when",
            id="unknown-rule-key",
        ),
        pytest.param(
            "rules: [{name: a, match: {kind: Pod}, parent: {resource: pods, name: x}}]",
            r"rule 0 \('a'\): 'match' has unknown keys kind",
            id="unknown-match-key",
        ),
        pytest.param(
            "rules: [{name: a, match: {group: apps}, parent: {resource: pods, name: x}}]",
            "would match every object",
            id="match-everything",
        ),
        pytest.param(
            "rules: [{name: a, match: {labels: {x: true}}, parent: {resource: pods, name: x}}]",
            "not a string",
            id="unquoted-label-value",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: []}, parent: {resource: pods, name: x}}]",
            "non-empty list",
            id="empty-resource-list",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: pods}, parent: {resource: pods}}]",
            "parent.name is required",
            id="no-parent-name",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: pods}, parent: {resource: pods, name: 3}}]",
            "must be a string template",
            id="name-not-string",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: pods}, parent: {resource: pods, name: '{labels[x]'}}]",
            r"parent.name: unbalanced",
            id="bad-template",
        ),
        pytest.param(
            "rules: [{name: a, match: {resource: pods}, parent: {resource: pods, name: '{owner}'}}]",
            r"parent.name: unknown field \{owner\}",
            id="unknown-field",
        ),
        pytest.param(
            "rules:\n"
            "  - {name: a, match: {resource: pods}, parent: {resource: pods, name: x}}\n"
            "  - {name: a, match: {resource: pods}, parent: {resource: pods, name: y}}\n",
            r"rule 1 \('a'\): the name is used",
            id="duplicate-name",
        ),
    ],
)
def test_malformed_yaml_is_rejected_with_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as raised:
        load_rules(path)
    assert str(path) in str(raised.value)


def test_malformed_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{"rules": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_rules(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_rules(tmp_path / "absent.yaml")
