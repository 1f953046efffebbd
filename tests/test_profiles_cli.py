"""Profiles and scenarios are data: schema-validated, linted against the check registry, errors as
``file:line: message`` with exit 2."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conformance.profiles import load, profile_files, scenario_files
from tests.conftest import run_cli

PKG = Path(__file__).resolve().parents[1] / "conformance"


def test_shipped_profiles_and_scenarios_lint_clean() -> None:
    for f in profile_files():
        loaded = load(str(f))
        assert loaded.scenarios
    proc = run_cli("profiles", "lint", str(PKG / "scenarios"))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("profiles", "lint", str(PKG / "profiles" / "segur-v2-ins.yaml"))
    assert proc.returncode == 0, proc.stderr


def test_list_and_show() -> None:
    proc = run_cli("profiles", "list")
    assert proc.returncode == 0 and "segur-v2-ins" in proc.stdout
    proc = run_cli("profiles", "show", "segur-v2-ins")
    assert proc.returncode == 0
    assert "SC.INS/va1.01" in proc.stdout and "ins-insi-traits" in proc.stdout


def _copy_profile(tmp_path: Path) -> Path:
    dst = tmp_path / "p.yaml"
    shutil.copy(PKG / "profiles" / "segur-v2-ins.yaml", dst)
    return dst


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = _copy_profile(tmp_path)
    lines = p.read_text(encoding="utf-8").splitlines()
    lines[14] = lines[14] + " : : ["
    p.write_text("\n".join(lines), encoding="utf-8")
    proc = run_cli("profiles", "lint", str(p))
    assert proc.returncode == 2
    assert re.search(rf"{re.escape(str(p))}:\d+: YAML syntax", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_schema_error_points_at_the_line(tmp_path: Path) -> None:
    p = _copy_profile(tmp_path)
    text = p.read_text(encoding="utf-8")
    text = text.replace("criticality: major", "criticality: huge", 1)
    p.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "criticality: huge" in t)
    proc = run_cli("profiles", "lint", str(p))
    assert proc.returncode == 2
    assert f"{p}:{line}:" in proc.stderr, proc.stderr


def test_unknown_rule_is_reported_with_line(tmp_path: Path) -> None:
    p = _copy_profile(tmp_path)
    text = p.read_text(encoding="utf-8").replace("INS.MATRICULE.KEY", "INS.MATRICULE.KEYZ", 1)
    p.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "KEYZ" in t)
    proc = run_cli("profiles", "lint", str(p))
    assert proc.returncode == 2
    assert f"{p}:{line}: SC.INS/va1.01: unknown rule id INS.MATRICULE.KEYZ" in proc.stderr, proc.stderr


def test_scenario_with_unknown_check_and_bad_step(tmp_path: Path) -> None:
    src = next(f for f in scenario_files() if f.name == "ins-insi-traits.yaml")
    dst = tmp_path / src.name
    text = src.read_text(encoding="utf-8").replace("check: insi.request", "check: insi.nope", 1)
    dst.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "insi.nope" in t)
    proc = run_cli("profiles", "lint", str(dst))
    assert proc.returncode == 2
    assert re.search(rf"{re.escape(str(dst))}:{line - 1}|{re.escape(str(dst))}:{line}", proc.stderr), proc.stderr
    assert "unknown check insi.nope" in proc.stderr
    dst.write_text(src.read_text(encoding="utf-8").replace("op: await", "op: teleport", 1), encoding="utf-8")
    proc = run_cli("profiles", "lint", str(dst))
    assert proc.returncode == 2 and "teleport" in proc.stderr


def test_run_with_broken_profile_is_exit_2(tmp_path: Path) -> None:
    p = _copy_profile(tmp_path)
    p.write_text(p.read_text(encoding="utf-8").replace("scenarios: [", "scenarios: [nope, "), encoding="utf-8")
    proc = run_cli("run", "--target", "http://127.0.0.1:9", "--profile", str(p), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "scenario nope not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_fault_and_list_faults() -> None:
    proc = run_cli("sim", "vendor", "--fault", "ins.nope")
    assert proc.returncode == 2 and "unknown fault" in proc.stderr
    proc = run_cli("sim", "--list-faults")
    assert proc.returncode == 0
    assert "ins.bad-key" in proc.stdout and "SC.INS/va1.01" in proc.stdout


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in (
        ("run",),
        ("nope",),
        ("validate", "--kind", "zzz", "x"),
        ("pki", "issue", "--cn", "x", "--usage", "bogus"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("segur-bench: error:"), proc.stderr
