"""Domain model shared by every layer: findings, requirements, profiles, scenarios and run results.

Findings are plain frozen dataclasses because checks create many of them on hot paths (offline
validation of thousands of resources); everything that is read from YAML or written as JSON is a
pydantic model so that the JSON contracts are validated on the way in and out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning", "info"]
Status = Literal["passed", "failed", "skipped", "error", "waived"]
Criticality = Literal["critical", "major", "minor"]
Category = Literal["exigence", "préconisation"]

RESULTS_SCHEMA_ID = "segur-bench/results/v1"
VALIDATION_SCHEMA_ID = "segur-bench/validation/v1"

# Worst first: one ordering serves the report, the exit code and the requirement roll-up.
STATUS_ORDER: tuple[Status, ...] = ("error", "failed", "passed", "waived", "skipped")


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation of a check, located in the artefact it was made on."""

    rule: str
    severity: Severity
    message: str
    location: str | None = None
    evidence: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "location": self.location,
        }
        if self.evidence:
            out["evidence"] = list(self.evidence)
        return out

    def with_evidence(self, *ids: str) -> Finding:
        return Finding(self.rule, self.severity, self.message, self.location, self.evidence + ids)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def worst_status(statuses: Iterable[Status]) -> Status:
    """Roll statuses up worst-first; an empty list means nothing ran, hence skipped."""
    seen = set(statuses)
    for status in STATUS_ORDER:
        if status in seen:
            return status
    return "skipped"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requirement(_Strict):
    """A DSR / CI-SIS requirement as the profile states it, and the rules that prove it."""

    id: str
    service: str
    title: str
    category: Category = "exigence"
    criticality: Criticality = "major"
    wave: int = 2
    software_types: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    source: str = "dsr"
    note: str | None = None
    not_tested: str | None = None


class Profile(_Strict):
    id: str
    version: str
    title: str
    software_types: list[str] = Field(default_factory=list)
    services: list[str]
    scenarios: list[str]
    requirements: list[Requirement]
    notes: list[str] = Field(default_factory=list)

    def requirement(self, rid: str) -> Requirement | None:
        return next((r for r in self.requirements if r.id == rid), None)


class Assertion(_Strict):
    """Names the requirement a step proves and what to run on the step's artefact."""

    requirement: str
    check: str
    args: dict[str, Any] = Field(default_factory=dict)


class Step(_Strict):
    id: str
    op: Literal["http", "driver", "await", "ask", "set", "check"]
    title: str | None = None
    timeout: float | None = None
    when: str | None = None
    save_as: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    asserts: list[Assertion] = Field(default_factory=list, alias="assert")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Scenario(_Strict):
    id: str
    title: str
    service: str
    requires: list[str] = Field(default_factory=list)
    simulators: list[str] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    setup: list[Step] = Field(default_factory=list)
    test: list[Step]
    teardown: list[Step] = Field(default_factory=list)

    def steps(self) -> list[Step]:
        return [*self.setup, *self.test, *self.teardown]

    def requirement_ids(self) -> set[str]:
        return {a.requirement for s in self.steps() for a in s.asserts}


class Evidence(BaseModel):
    """One exchange, redacted before it is stored; the hash covers the redacted form."""

    id: str
    name: str
    scenario: str | None = None
    direction: Literal["outgoing", "incoming"]
    protocol: str
    started: str
    duration_ms: float | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | None = None
    tls: dict[str, Any] | None = None
    error: str | None = None
    curl: str | None = None
    sha256: str = ""


class CheckOutcome(BaseModel):
    scenario: str
    step: str
    check: str
    status: Status
    findings: list[dict[str, Any]] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    reason: str | None = None


class RequirementResult(BaseModel):
    id: str
    title: str
    service: str
    category: str
    criticality: str
    wave: int
    status: Status
    reason: str | None = None
    note: str | None = None
    checks: list[CheckOutcome] = Field(default_factory=list)
    # Set by trust.waivers when a waiver turned failed/error into waived: justification, expiry, author.
    waiver: dict[str, Any] | None = None


class RunResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(RESULTS_SCHEMA_ID, alias="schema")
    run_id: str
    complete: bool = False
    interrupted: bool = False
    tool: dict[str, str]
    profile: dict[str, str]
    target: dict[str, Any]
    product: dict[str, Any] = Field(default_factory=dict)
    started: str
    finished: str | None = None
    requirements: list[RequirementResult] = Field(default_factory=list)
    scenarios: list[dict[str, Any]] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    # One record per waiver of the --waivers file (trust.waivers): applied, expired, unused, not_run.
    waivers: list[dict[str, Any]] = Field(default_factory=list)
    # Ed25519 signature block (trust.signing); absent from the file when the run is not signed.
    signature: dict[str, str] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, mode="json")
        if data.get("signature") is None:
            data.pop("signature", None)
        return data


def summarize(statuses: Iterable[Status]) -> dict[str, int]:
    counts = {s: 0 for s in ("passed", "failed", "error", "skipped", "waived")}
    for s in statuses:
        counts[s] += 1
    counts["total"] = sum(counts.values())
    return counts
