"""The state checker the churn test and scripts/churn use (tests/invariants.py) finds
each broken binding rule it is meant to find."""

from __future__ import annotations

from typing import Any

from tests.invariants import binding_problems


def claim(name: str, volume: str | None, phase: str = "Bound") -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}"},
            "spec": {"volumeName": volume} if volume else {}, "status": {"phase": phase}}


def pv(name: str, claim_name: str | None, phase: str = "Bound") -> dict[str, Any]:
    ref = {"namespace": "default", "name": claim_name, "uid": f"uid-{claim_name}"}
    return {"metadata": {"name": name}, "spec": {"claimRef": ref} if claim_name else {},
            "status": {"phase": phase}}


def test_a_consistent_binding_has_no_problem() -> None:
    assert binding_problems([claim("a", "pv1"), claim("b", None, "Pending")],
                            [pv("pv1", "a"), pv("pv2", None, "Available")]) == []


def test_each_broken_rule_is_found() -> None:
    assert binding_problems([claim("a", "pv1"), claim("b", "pv1")], [pv("pv1", "a")]) == [
        "claim default/b is Bound to PV pv1, whose claimRef is default/a (uid-a)",
        "PV pv1 is named by 2 claims: default/a, default/b"]
    assert binding_problems([claim("a", "gone")], []) == [
        "claim default/a is Bound to PV 'gone', which is gone"]
    assert binding_problems([], [pv("pv1", "a")]) == [
        "PV pv1 is Bound to claim default/a, which is gone"]
    assert binding_problems([claim("a", "pv2")], [pv("pv1", "a"), pv("pv2", "a")]) == [
        "PV pv1 is Bound to claim default/a, which names 'pv2'"]
