"""Registry of checks keyed by name, and of the stable rule ids each check may emit.

Rule ids are a public contract (results, waivers and CI dashboards key on them), so a check declares
the rules it can emit and the registry refuses a finding under an undeclared rule: a typo in a check
would otherwise silently detach a finding from its requirement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from conformance.model import Finding

CheckFunc = Callable[..., Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class CheckInfo:
    name: str
    kind: str
    service: str
    rules: dict[str, str]
    func: CheckFunc
    doc: str


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    title: str
    service: str
    check: str


CHECKS: dict[str, CheckInfo] = {}
RULES: dict[str, RuleInfo] = {}


def check(name: str, *, kind: str, service: str, rules: dict[str, str]) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as check ``name`` over artefacts of ``kind`` emitting ``rules``."""

    def register(func: CheckFunc) -> CheckFunc:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = CheckInfo(name, kind, service, dict(rules), func, (func.__doc__ or "").strip())
        for rid, title in rules.items():
            RULES.setdefault(rid, RuleInfo(rid, title, service, name))
        return func

    return register


def run_check(name: str, artefact: Any, **args: Any) -> list[Finding]:
    """Run one registered check and return its findings, enforcing the declared rule ids."""
    info = CHECKS[name]
    findings = list(info.func(artefact, **args))
    for f in findings:
        if f.rule not in info.rules and not f.rule.startswith("INPUT."):
            raise ValueError(f"check {name} emitted undeclared rule {f.rule}")
    return findings


def rule_matches(rule: str, patterns: Iterable[str]) -> bool:
    """``INS.TRAITS.*`` style matching used to attribute findings to requirements."""
    return any(p == rule or (p.endswith(".*") and rule.startswith(p[:-1])) for p in patterns)


def iter_rules(service: str | None = None) -> Iterator[RuleInfo]:
    for info in sorted(RULES.values(), key=lambda r: r.id):
        if service is None or info.service == service:
            yield info
