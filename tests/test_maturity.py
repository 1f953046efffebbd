"""Maturity model: the shipped default validates, its ladder behaves at the edges, and a broken model
file is reported as ``file:line: message``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from conformance.model import RESULTS_SCHEMA_ID, CheckOutcome, Finding, RequirementResult, RunResult
from conformance.report.maturity import (
    DEFAULT_MODEL_PATH,
    MaturityModelError,
    compute_maturity,
    evaluate,
    load_maturity_model,
    validate_maturity_model,
)


def req(
    rid: str,
    status: str,
    *,
    service: str = "INS",
    category: str = "exigence",
    criticality: str = "major",
    wave: int = 1,
    severities: tuple[str, ...] = (),
) -> dict[str, Any]:
    findings = [Finding(f"X.{i}", s, "m").as_dict() for i, s in enumerate(severities)]  # type: ignore[arg-type]
    checks = [CheckOutcome(scenario="s", step="t", check="c", status="passed", findings=findings)] if findings else []
    return RequirementResult(
        id=rid,
        title=rid,
        service=service,
        category=category,
        criticality=criticality,
        wave=wave,
        status=status,  # type: ignore[arg-type]
        checks=checks,
    ).model_dump(mode="json")


def results(*reqs: dict[str, Any]) -> dict[str, Any]:
    run = RunResult(
        schema=RESULTS_SCHEMA_ID,
        run_id="r",
        tool={"name": "segur-bench"},
        profile={"id": "p"},
        target={},
        started="t",
    )
    data = run.to_json_dict()
    data["requirements"] = list(reqs)
    return data


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return load_maturity_model()


def test_default_model_is_a_ladder_0_to_5(model: dict[str, Any]) -> None:
    assert [lv["level"] for lv in model["levels"]] == [0, 1, 2, 3, 4, 5]
    assert model["score"]["criticality"] == {"critical": 3, "major": 2, "minor": 1}
    assert "skipped" not in model["score"]["status"]


def test_no_requirement_run(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "skipped"), req("b", "skipped", criticality="critical")), model)
    ins = out["services"]["INS"]
    assert ins["level"] == 0
    assert ins["label"] == "Absent / non testé"
    assert ins["score"] is None  # not tested is not zero
    assert ins["counts"]["skipped"] == 2
    assert out["overall"]["level"] == 0 and out["overall"]["score"] is None
    assert out["overall"]["services_run"] == []


def test_empty_results(model: dict[str, Any]) -> None:
    out = compute_maturity(results(), model)
    assert out["services"] == {}
    assert out["overall"]["level"] == 0 and out["overall"]["score"] is None


def test_all_waived_is_capped_and_flagged(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "waived"), req("b", "waived", wave=2)), model)
    ins = out["services"]["INS"]
    # Waivers are accepted derogations, not proof: level 3 needs at least one real pass.
    assert ins["level"] == 2
    assert ins["score"] == 100.0
    assert ins["counts"]["waived"] == 2


def test_critical_failure_stops_at_level_1(model: dict[str, Any]) -> None:
    out = compute_maturity(
        results(req("a", "failed", criticality="critical"), req("b", "passed", criticality="minor")), model
    )
    ins = out["services"]["INS"]
    assert ins["level"] == 1
    assert ins["score"] == 25.0  # 1×minor(1) / (critical(3) + minor(1))


def test_critical_error_counts_as_failure(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "error", criticality="critical"), req("b", "passed")), model)
    assert out["services"]["INS"]["level"] == 1


def test_all_passed_is_exemplary(model: dict[str, Any]) -> None:
    out = compute_maturity(
        results(req("a", "passed"), req("b", "passed", wave=2), req("c", "passed", category="préconisation")),
        model,
    )
    assert out["services"]["INS"]["level"] == 5
    assert out["services"]["INS"]["label"] == "Exemplaire"
    assert out["overall"] == {**out["overall"], "level": 5, "score": 100.0}


def test_warning_keeps_level_4(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "passed"), req("b", "passed", severities=("warning",))), model)
    assert out["services"]["INS"]["level"] == 4


def test_waiver_keeps_level_4(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "passed"), req("b", "waived", wave=2)), model)
    assert out["services"]["INS"]["level"] == 4


def test_failed_preconisation_blocks_only_level_5(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "passed"), req("b", "failed", category="préconisation")), model)
    ins = out["services"]["INS"]
    assert ins["level"] == 4
    # exigence major 2×1 passed, préconisation major 2×0.5 failed → 2 / 3
    assert ins["score"] == 66.7


def test_mixed_wave1_passed_wave2_failed(model: dict[str, Any]) -> None:
    out = compute_maturity(
        results(
            req("a", "passed", wave=1),
            req("b", "waived", wave=1),
            req("c", "failed", wave=2),
            req("d", "skipped", wave=2, criticality="critical"),
        ),
        model,
    )
    ins = out["services"]["INS"]
    assert ins["level"] == 3
    assert ins["score"] == 66.7  # skipped excluded: (2 + 2) / (2 + 2 + 2)
    assert ins["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1, "waived": 1, "total": 4}


def test_skipped_wave1_exigence_is_not_proven(model: dict[str, Any]) -> None:
    out = compute_maturity(results(req("a", "passed"), req("b", "skipped")), model)
    assert out["services"]["INS"]["level"] == 2


def test_overall_is_minimum_of_services_that_ran(model: dict[str, Any]) -> None:
    out = compute_maturity(
        results(
            req("a", "passed", service="INS"),
            req("b", "failed", service="DMP", criticality="critical"),
            req("c", "passed", service="DMP"),
            req("d", "skipped", service="MSS"),
        ),
        model,
    )
    assert {s: v["level"] for s, v in out["services"].items()} == {"INS": 5, "DMP": 1, "MSS": 0}
    assert out["overall"]["level"] == 1
    assert out["overall"]["services_run"] == ["INS", "DMP"]
    # pooled: INS 2/2, DMP critical failed 0/3 + major passed 2/2 → (2 + 2) / (2 + 3 + 2)
    assert out["overall"]["score"] == 57.1


def test_overall_alternatives_are_data(model: dict[str, Any]) -> None:
    alt = copy.deepcopy(model)
    alt["overall"] = {"level": "min_of_all_services", "score": "mean_of_services"}
    validate_maturity_model(alt)
    out = compute_maturity(
        results(
            req("a", "passed", service="INS"),
            req("b", "failed", service="DMP"),
            req("c", "skipped", service="MSS"),
        ),
        alt,
    )
    assert out["overall"]["level"] == 0
    assert out["overall"]["score"] == 50.0


def test_unknown_status_is_never_a_pass(model: dict[str, Any]) -> None:
    bad = req("a", "passed")
    bad["status"] = "ok"
    out = compute_maturity(results(bad), model)
    assert out["services"]["INS"]["counts"]["error"] == 1
    assert out["services"]["INS"]["score"] == 0.0


def test_english_labels_and_run_result_input(model: dict[str, Any]) -> None:
    run = RunResult(
        schema=RESULTS_SCHEMA_ID,
        run_id="r",
        tool={},
        profile={},
        target={},
        started="t",
        requirements=[
            RequirementResult(
                id="a",
                title="a",
                service="PSC",
                category="exigence",
                criticality="minor",
                wave=1,
                status="passed",
            )
        ],
    )
    out = compute_maturity(run, model, lang="en")
    assert out["services"]["PSC"]["label"] == "Exemplary"
    assert out["services"]["PSC"]["labels"]["fr"] == "Exemplaire"


def test_condition_vocabulary() -> None:
    from conformance.report.maturity import _facts

    facts = [_facts(r) for r in (req("a", "passed"), req("b", "failed", criticality="minor"), req("c", "passed"))]
    assert evaluate({"any": {}, "status_in": ["passed"], "at_least": 2}, facts)
    assert not evaluate({"any": {}, "status_in": ["passed"], "at_least": 3}, facts)
    assert evaluate({"not": {"all": {}, "status_in": ["passed"]}}, facts)
    assert evaluate({"all": {"criticality": ["major", "critical"]}, "status_in": ["passed"]}, facts)
    assert evaluate({"none": {"id": "b"}, "status_in": ["passed"]}, facts)
    assert evaluate(
        {"any_of": [{"all": {}, "status_in": ["error"]}, {"any": {"wave": [1, 2]}, "status_in": ["failed"]}]},
        facts,
    )
    assert evaluate({"all": {"category": "préconisation"}, "status_in": ["error"]}, facts)  # vacuous


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maturity.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_errors_carry_file_and_line(tmp_path: Path) -> None:
    text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    text = text.replace("      none: {criticality: critical}", "      none: {criticalty: critical}")
    text = text.replace("status: {passed: 1, waived: 1, failed: 0, error: 0}", "status: {passed: 2}")
    path = write(tmp_path, text)
    with pytest.raises(MaturityModelError) as exc:
        load_maturity_model(path)
    lines = text.splitlines()
    crit_line = next(i for i, line in enumerate(lines, 1) if "criticalty" in line)
    score_line = next(i for i, line in enumerate(lines, 1) if "status: {passed: 2}" in line)
    errors = exc.value.errors
    assert len(errors) == 2
    assert errors[0].startswith(f"{path}:{crit_line}: /levels/2/when/none:") and "criticalty" in errors[0]
    assert errors[1].startswith(f"{path}:{score_line}: /score/status/passed:")


def test_string_conditions_are_refused(tmp_path: Path) -> None:
    """No eval: a condition written as an expression string is a schema error, not code."""
    text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    text = text.replace(
        "    when:\n      none: {criticality: critical}\n      status_in: [failed, error]\n",
        "    when: \"__import__('os').system('true')\"\n",
    )
    with pytest.raises(MaturityModelError, match=r"maturity.yaml:\d+: /levels/2/when: invalid condition"):
        load_maturity_model(write(tmp_path, text))


def test_level_ladder_must_be_contiguous(tmp_path: Path) -> None:
    text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8").replace("  - level: 3\n", "  - level: 7\n")
    line = text.splitlines().index("  - level: 7") + 1
    with pytest.raises(MaturityModelError) as exc:
        load_maturity_model(write(tmp_path, text))
    assert exc.value.errors == [
        f"{tmp_path / 'maturity.yaml'}:{line}: /levels/3/level: levels must be listed in order 0, 1, 2… "
        "without gaps: expected 3, got 7"
    ]


def test_errors_are_data_errors(tmp_path: Path) -> None:
    """`profiles lint` and the CLI turn DataError into exit 2 with one line per problem."""
    from conformance.yamlio import DataError

    path = write(tmp_path, "id: x\n")
    with pytest.raises(DataError) as exc:
        load_maturity_model(path)
    assert exc.value.file == str(path) and exc.value.line == 1
    assert all(line.startswith(f"{path}:1: ") for line in str(exc.value).splitlines())


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MaturityModelError, match=r"maturity.yaml:2: invalid YAML"):
        load_maturity_model(write(tmp_path, "id: x\n\tlevels: []\n"))
    with pytest.raises(MaturityModelError, match="cannot read maturity model"):
        load_maturity_model(tmp_path / "absent.yaml")


def test_inline_model_without_lines_uses_pointer(model: dict[str, Any]) -> None:
    bad = copy.deepcopy(model)
    bad["levels"][1]["when"] = {"any": {}, "status_in": ["nope"]}
    with pytest.raises(MaturityModelError, match=r"^profile.yaml: /levels/1/when/status_in/0: 'nope'"):
        validate_maturity_model(bad, source="profile.yaml")


def test_loaded_model_is_a_private_copy(model: dict[str, Any]) -> None:
    mine = load_maturity_model()
    mine["levels"].clear()
    assert len(load_maturity_model()["levels"]) == 6
