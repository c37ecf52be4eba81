"""Label and field selectors: Kubernetes' grammar, semantics and error wording."""

from __future__ import annotations

import pytest

from volfs.server.selectors import (
    FieldRequirement,
    SelectorError,
    field_matcher,
    parse_field_selector,
    parse_label_selector,
    path_getter,
)

WEB = {"app": "web", "tier": "front", "replicas": "3"}
DB = {"app": "db", "tier": "back"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize("selector, web, db, bare", [
    ("", True, True, True),
    ("app=web", True, False, False),
    ("app==web", True, False, False),
    ("app = web", True, False, False),
    ("app!=web", False, True, True),  # != matches a missing label too
    ("app in (web, db)", True, True, False),
    ("app in (web)", True, False, False),
    ("app notin (web)", False, True, True),  # so does notin
    ("tier", True, True, False),
    ("!tier", False, False, True),
    ("app=web,tier=front", True, False, False),
    ("app in (web,db),!replicas", False, True, False),
    ("replicas>2", True, False, False),
    ("replicas<2", False, False, False),
    ("app=", False, False, False),
    ("example.com/role=x", False, False, False),
])
def test_label_selectors_match_as_kubernetes_does(selector: str, web: bool, db: bool,
                                                  bare: bool) -> None:
    select = parse_label_selector(selector)
    assert (select(WEB), select(DB), select(BARE)) == (web, db, bare)


def test_an_empty_value_matches_an_empty_label() -> None:
    assert parse_label_selector("app=")({"app": ""})
    assert parse_label_selector("app")({"app": ""})


def test_matching_reads_an_objects_labels() -> None:
    select = parse_label_selector("app=web")
    assert select.matches_object({"metadata": {"labels": WEB}})
    assert not select.matches_object({"metadata": {}})
    assert not select.matches_object({})


@pytest.mark.parametrize("selector, wording", [
    ("app in (web", "unbalanced '('"),
    ("app in web)", "unbalanced ')'"),
    ("app in ()", "values set can't be empty"),
    ("app=web,,tier", "empty requirement"),
    ("app web", "expected an operator"),
    ("-app=web", "a label key must be a qualified name"),
    ("app=we b", "a label value must be empty or"),
    ("app=" + "x" * 64, "a label value must be empty or"),
    ("replicas>three", "must be an integer"),
])
def test_a_label_selector_that_does_not_parse_says_why(selector: str, wording: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement") as caught:
        parse_label_selector(selector)
    assert wording in str(caught.value)


def test_field_selectors_parse_operators_and_escapes() -> None:
    assert parse_field_selector("metadata.name=web,status.phase!=Failed") == [
        FieldRequirement("metadata.name", "=", "web"),
        FieldRequirement("status.phase", "!=", "Failed")]
    assert parse_field_selector("metadata.name==web") == [
        FieldRequirement("metadata.name", "=", "web")]
    assert parse_field_selector(r"reason=a\,b\=c\\d") == [
        FieldRequirement("reason", "=", "a,b=c\\d")]
    assert parse_field_selector("") == []
    with pytest.raises(SelectorError, match="can't understand 'web'"):
        parse_field_selector("web")


def test_field_matchers_read_the_offered_fields_only() -> None:
    fields = {"metadata.name": path_getter("metadata.name"),
              "involvedObject.uid": path_getter("involvedObject.uid"),
              "spec.ready": path_getter("spec.ready")}
    obj = {"metadata": {"name": "web"}, "involvedObject": {"uid": "u-1"}, "spec": {"ready": True}}
    match = field_matcher(parse_field_selector("metadata.name=web,involvedObject.uid=u-1"),
                          fields)
    assert match(obj)
    assert not match({"metadata": {"name": "web"}})
    assert field_matcher(parse_field_selector("involvedObject.uid="), fields)({})
    assert field_matcher(parse_field_selector("spec.ready=true"), fields)(obj)
    assert field_matcher(parse_field_selector("metadata.name!=db"), fields)(obj)
    with pytest.raises(SelectorError, match="^field label not supported: spec.volumes$"):
        field_matcher(parse_field_selector("spec.volumes=x"), fields)
