"""Loading and linting of profiles and scenarios (YAML data shipped in the package or named by path).

Lint goes beyond the JSON Schema: every rule a requirement names must exist in the check registry,
every assertion must name a known check and a requirement of the profile whose rules that check can
emit, and requirements that no scenario proves are listed (inferno's requirements coverage idea), so
a profile cannot silently claim what the bench does not test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from conformance.checks.registry import CHECKS, rule_matches
from conformance.model import Profile, Scenario
from conformance.yamlio import DataError, PathKey, line_of, load_yaml, validate

M = TypeVar("M", bound=BaseModel)


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("conformance").joinpath(name)))


def profile_files() -> list[Path]:
    return sorted(p for p in _package_dir("profiles").glob("*.yaml") if not p.name.startswith("maturity"))


def scenario_files() -> list[Path]:
    return sorted(_package_dir("scenarios").glob("*.yaml"))


@dataclass
class Loaded:
    profile: Profile
    scenarios: dict[str, Scenario]
    warnings: list[str] = field(default_factory=list)


def _model_errors(exc: ValidationError, file: str, lines: dict[PathKey, int]) -> list[DataError]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        out.append(DataError(file, line_of(lines, loc), f"{'/'.join(map(str, loc))}: {err['msg']}"))
    return out


def _load_validated(path: Path, schema: str, model: type[M]) -> tuple[M, dict[PathKey, int]]:
    data, lines = load_yaml(path)
    errors = validate(data, schema, str(path), lines)
    if errors:
        raise LintFailed(errors)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise LintFailed(_model_errors(exc, str(path), lines)) from None


def load_profile_file(path: Path) -> tuple[Profile, dict[PathKey, int]]:
    return _load_validated(path, "profile.schema.json", Profile)


def load_scenario_file(path: Path) -> tuple[Scenario, dict[PathKey, int]]:
    return _load_validated(path, "scenario.schema.json", Scenario)


class LintFailed(Exception):
    def __init__(self, errors: list[DataError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def _lint_profile(profile: Profile, file: str, lines: dict[PathKey, int]) -> list[DataError]:
    errors = []
    known_rules = {r for c in CHECKS.values() for r in c.rules}
    seen: set[str] = set()
    for i, req in enumerate(profile.requirements):
        if req.id in seen:
            errors.append(DataError(file, line_of(lines, ("requirements", i, "id")), f"duplicate requirement {req.id}"))
        seen.add(req.id)
        for j, rule in enumerate(req.rules):
            if not any(rule_matches(r, [rule]) for r in known_rules):
                errors.append(
                    DataError(
                        file, line_of(lines, ("requirements", i, "rules", j)), f"{req.id}: unknown rule id {rule}"
                    )
                )
        if req.service not in profile.services:
            errors.append(
                DataError(
                    file,
                    line_of(lines, ("requirements", i, "service")),
                    f"{req.id}: service {req.service} not in the profile's services",
                )
            )
    return errors


def _lint_scenario(
    scenario: Scenario, file: str, lines: dict[PathKey, int], profile: Profile | None
) -> list[DataError]:
    errors = []
    for part in ("setup", "test", "teardown"):
        ids: set[str] = set()
        for i, step in enumerate(getattr(scenario, part)):
            if step.id in ids:
                errors.append(DataError(file, line_of(lines, (part, i, "id")), f"duplicate step id {step.id}"))
            ids.add(step.id)
            for j, a in enumerate(step.asserts):
                where = line_of(lines, (part, i, "assert", j))
                info = CHECKS.get(a.check)
                if info is None:
                    errors.append(
                        DataError(file, where, f"unknown check {a.check}; known: {', '.join(sorted(CHECKS))}")
                    )
                    continue
                if profile is None:
                    continue
                req = profile.requirement(a.requirement)
                if req is None:
                    errors.append(DataError(file, where, f"requirement {a.requirement} is not in profile {profile.id}"))
                elif not any(rule_matches(r, req.rules) for r in info.rules):
                    errors.append(
                        DataError(
                            file,
                            where,
                            f"check {a.check} emits none of the rules of {a.requirement} ({', '.join(req.rules)})",
                        )
                    )
    return errors


def find_profile_path(ref: str) -> Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise DataError(ref, None, "profile file not found")
        return p
    for f in profile_files():
        if f.stem == ref:
            return f
    known = ", ".join(f.stem for f in profile_files())
    raise DataError(ref, None, f"unknown profile {ref!r}; known: {known}")


def load(profile_ref: str = "all", scenario_dirs: list[Path] | None = None) -> Loaded:
    """Load a profile (or several, comma-separated, merged) and its scenarios, linted.

    Raise LintFailed with every error found.
    """
    if profile_ref == "all":
        profile_ref = ",".join(f.stem for f in profile_files())
    refs = [r.strip() for r in profile_ref.split(",") if r.strip()]
    if len(refs) > 1:
        return merge([load(r, scenario_dirs) for r in refs])
    path = find_profile_path(profile_ref)
    profile, plines = load_profile_file(path)
    errors = _lint_profile(profile, str(path), plines)
    files = scenario_files()
    for d in scenario_dirs or []:
        files.extend(sorted(d.glob("*.yaml")))
    scenarios: dict[str, Scenario] = {}
    for f in files:
        try:
            sc, slines = load_scenario_file(f)
        except LintFailed as exc:
            errors.extend(exc.errors)
            continue
        if sc.id in profile.scenarios:
            errors.extend(_lint_scenario(sc, str(f), slines, profile))
            scenarios[sc.id] = sc
    for i, sid in enumerate(profile.scenarios):
        if sid not in scenarios:
            errors.append(DataError(str(path), line_of(plines, ("scenarios", i)), f"scenario {sid} not found"))
    if errors:
        raise LintFailed(errors)
    proven = {a for sc in scenarios.values() for a in sc.requirement_ids()}
    warnings = [
        f"{path}:{line_of(plines, ('requirements', i)) or 1}: requirement {r.id} is proven by no scenario"
        + (f" (not tested: {r.not_tested})" if r.not_tested else "")
        for i, r in enumerate(profile.requirements)
        if r.id not in proven
    ]
    return Loaded(profile, scenarios, warnings)


def merge(parts: list[Loaded]) -> Loaded:
    """One run over several profiles (the demo runs every service socle): requirements and scenarios
    are united; a requirement id defined differently by two profiles is an error."""
    requirements: dict[str, Any] = {}
    errors: list[DataError] = []
    for part in parts:
        for req in part.profile.requirements:
            seen = requirements.get(req.id)
            if seen is not None and seen != req:
                errors.append(DataError(part.profile.id, None, f"requirement {req.id} differs between profiles"))
            requirements.setdefault(req.id, req)
    if errors:
        raise LintFailed(errors)

    def union(lists: list[list[str]]) -> list[str]:
        return list(dict.fromkeys(x for lst in lists for x in lst))

    profile = Profile(
        id="+".join(p.profile.id for p in parts),
        version="+".join(p.profile.version for p in parts),
        title=" + ".join(p.profile.title for p in parts),
        software_types=union([p.profile.software_types for p in parts]),
        services=union([p.profile.services for p in parts]),
        scenarios=union([p.profile.scenarios for p in parts]),
        requirements=list(requirements.values()),
        notes=union([p.profile.notes for p in parts]),
    )
    scenarios = {k: v for p in parts for k, v in p.scenarios.items()}
    return Loaded(profile, scenarios, [w for p in parts for w in p.warnings])


def lint_path(path: Path) -> tuple[list[DataError], list[str]]:
    """Lint a profile file, a scenario file, or every YAML file of a directory."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    errors: list[DataError] = []
    warnings: list[str] = []
    for f in files:
        try:
            data, _ = load_yaml(f)
        except DataError as exc:
            errors.append(exc)
            continue
        is_scenario = isinstance(data, dict) and "test" in data
        try:
            if is_scenario:
                sc, lines = load_scenario_file(f)
                errors.extend(_lint_scenario(sc, str(f), lines, None))
            elif isinstance(data, dict) and "levels" in data:
                from conformance.report.maturity import load_maturity_model

                load_maturity_model(f)
            else:
                loaded = load(str(f))
                warnings.extend(loaded.warnings)
        except LintFailed as exc:
            errors.extend(exc.errors)
        except DataError as exc:
            errors.append(exc)
    return errors, warnings
