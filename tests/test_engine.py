"""Engine pieces in isolation: variables, redaction, driver client (202 polling), buggy checks,
operator mode, nothing-tested exit code."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from conformance.checks.registry import CHECKS, check
from conformance.engine.driver import DriverClient, DriverError, Operator
from conformance.engine.evidence import EvidenceStore, evidence_hash
from conformance.engine.redaction import MASK, Redactor
from conformance.engine.variables import Undefined, references, render
from conformance.model import Finding, Profile, Requirement, Scenario
from conformance.transports.http import HttpClient

# ---------------------------------------------------------------- variables


def test_whole_reference_keeps_type_and_embedded_becomes_text() -> None:
    v = {"identity": {"given_names": ["A", "B"], "key": "K-1"}, "n": 3}
    assert render("${identity.given_names}", v) == ["A", "B"]
    assert render("x=${n}/${identity.key}", v) == "x=3/K-1"
    assert render({"a": ["${n}"]}, v) == {"a": [3]}
    assert render("${identity.given_names.1}", v) == "B"


def test_undefined_reference_names_the_variable() -> None:
    with pytest.raises(Undefined) as exc:
        render("${fetch.result.patient.fhir}", {"fetch": {"result": {}}})
    assert exc.value.name == "fetch.result.patient.fhir"
    assert render("${nope}", {}, lenient=True) is None
    assert references({"u": "${a.b}/${c}", "l": ["${d.e}"]}) == {"a", "c", "d"}


# ---------------------------------------------------------------- redaction


def test_redactor_masks_known_secrets_and_secret_shapes() -> None:
    r = Redactor(["topsecretvalue"])
    text = (
        'token topsecretvalue; Authorization: Bearer abc.def.ghi; {"password": "p4ss", "access_token": "zz"} '
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- url?client_secret=s3&x=1"
    )
    out = r.text(text)
    for leaked in ("topsecretvalue", "abc.def.ghi", "p4ss", '"zz"', "MIIE", "s3&"):
        assert leaked not in out
    assert out.count(MASK) >= 6
    h = r.headers({"Authorization": "Bearer xyz", "Cookie": "sid=1", "Accept": "application/fhir+json"})
    assert h == {"Authorization": f"Bearer {MASK}", "Cookie": MASK, "Accept": "application/fhir+json"}


def test_evidence_is_redacted_then_hashed() -> None:
    store = EvidenceStore(Redactor(["hunter22"]))
    eid = store.add(
        name="x",
        scenario="s",
        direction="outgoing",
        protocol="http",
        started="t",
        duration_ms=1.0,
        request={"method": "GET", "url": "http://h/?pw=hunter22", "headers": {"Authorization": "Basic hunter22"}},
        response={"status": 200, "headers": {}, "body": "hunter22"},
    )
    [ev] = store.items()
    assert ev.id == eid
    assert "hunter22" not in ev.model_dump_json()
    assert ev.sha256 == evidence_hash(ev)


# ---------------------------------------------------------------- driver client


@responses.activate
def test_driver_202_is_polled_until_done() -> None:
    base = "http://vendor.test/driver"
    responses.post(f"{base}/actions", json={"id": "a1", "status": "accepted"}, status=202)
    responses.get(f"{base}/actions/a1", json={"id": "a1", "status": "accepted"})
    responses.get(f"{base}/actions/a1", json={"id": "a1", "status": "done", "result": {"insi_cr": "00"}})
    client = DriverClient(base, HttpClient())
    reply = client.run("ins.fetch", {}, {}, scenario="s", timeout=10, action_id="a1")
    assert reply["result"] == {"insi_cr": "00"}
    sent = json.loads(responses.calls[0].request.body)
    assert sent["id"] == "a1" and sent["action"] == "ins.fetch" and "services" in sent


@pytest.mark.parametrize(
    ("status", "body", "unsupported", "text"),
    [
        (422, {"error": "nope"}, True, "does not support"),
        (400, {"error": "bad"}, False, "HTTP 400"),
        (
            200,
            {"id": "a1", "status": "failed", "error": {"code": "insi-unreachable", "message": "down"}},
            False,
            "insi-unreachable",
        ),
        (200, "not json", False, "JSON"),
    ],
)
@responses.activate
def test_driver_errors(status: int, body: Any, unsupported: bool, text: str) -> None:
    base = "http://vendor.test/driver"
    if isinstance(body, str):
        responses.post(f"{base}/actions", body=body, status=status)
    else:
        responses.post(f"{base}/actions", json=body, status=status)
    with pytest.raises(DriverError) as exc:
        DriverClient(base, HttpClient()).run("ins.fetch", {}, {}, scenario="s", timeout=5, action_id="a1")
    assert exc.value.unsupported is unsupported
    assert text in exc.value.message


@responses.activate
def test_driver_accepted_forever_hits_deadline() -> None:
    base = "http://vendor.test/driver"
    responses.post(f"{base}/actions", json={"id": "a1", "status": "accepted"}, status=202)
    responses.get(f"{base}/actions/a1", json={"id": "a1", "status": "accepted"})
    with pytest.raises(DriverError) as exc:
        DriverClient(base, HttpClient()).run("ins.fetch", {}, {}, scenario="s", timeout=1, action_id="a1")
    assert "not done" in exc.value.message


# ---------------------------------------------------------------- engine behaviours


def _ctx(**kw: Any) -> Any:
    from conformance.engine.runner import RunContext
    from conformance.engine.target import Target
    from conformance.simulators.traffic import TrafficLog

    evidence = EvidenceStore()
    base = dict(
        target=Target(base="http://x", endpoints={"fhir": "http://x/fhir"}),
        http=HttpClient(evidence=evidence),
        evidence=evidence,
        traffic=TrafficLog(),
        simulators={},
        fixtures={},
    )
    base.update(kw)
    return RunContext(**base)


if "test.boom" not in CHECKS:

    @check("test.boom", kind="any", service="INS", rules={"INS.TEST.BOOM": "always raises"})
    def _boom(artefact: Any) -> list[Finding]:
        raise RuntimeError("bug in check")

    @check("test.ok", kind="any", service="INS", rules={"INS.TEST.OK": "flags value 2"})
    def _ok(artefact: Any, *, bad: int = 2) -> list[Finding]:
        return [Finding("INS.TEST.OK", "error", "bad value", "$")] if artefact.get("v") == bad else []


def _profile() -> Profile:
    return Profile(
        id="t",
        version="1",
        title="t",
        services=["INS"],
        scenarios=["s1"],
        requirements=[
            Requirement(id="R.BOOM", service="INS", title="boom", rules=["INS.TEST.BOOM"]),
            Requirement(id="R.OK", service="INS", title="ok", rules=["INS.TEST.OK"]),
            Requirement(id="R.BAD", service="INS", title="bad", rules=["INS.TEST.OK"]),
            Requirement(
                id="R.NONE", service="INS", title="untested", rules=["INS.TEST.OK"], not_tested="needs a human"
            ),
        ],
    )


def _scenario() -> Scenario:
    return Scenario.model_validate(
        {
            "id": "s1",
            "title": "t",
            "service": "INS",
            "test": [
                {
                    "id": "good",
                    "op": "set",
                    "params": {"v": 1},
                    "assert": [
                        {"requirement": "R.BOOM", "check": "test.boom"},
                        {"requirement": "R.OK", "check": "test.ok"},
                    ],
                },
                {
                    "id": "bad",
                    "op": "set",
                    "params": {"v": 2},
                    "assert": [{"requirement": "R.BAD", "check": "test.ok"}],
                },
            ],
        }
    )


def test_buggy_check_is_an_error_and_the_run_goes_on() -> None:
    from conformance.engine.runner import Engine, RunFinished

    engine = Engine(_profile(), [_scenario()], _ctx())
    events = list(engine.execute())
    assert isinstance(events[-1], RunFinished)
    res = {r.id: r for r in events[-1].result.requirements}
    assert res["R.BOOM"].status == "error" and "bug in check" in (res["R.BOOM"].reason or "")
    assert res["R.OK"].status == "passed"
    assert res["R.BAD"].status == "failed"
    assert res["R.NONE"].status == "skipped" and res["R.NONE"].reason == "needs a human"


def test_scenario_needing_missing_endpoint_is_skipped_with_reason() -> None:
    from conformance.engine.runner import Engine, RunFinished
    from conformance.engine.target import Target

    sc = _scenario().model_copy(update={"requires": ["smtp"]})
    engine = Engine(_profile(), [sc], _ctx(target=Target(base="http://x")))
    result = next(e for e in engine.execute() if isinstance(e, RunFinished)).result
    assert {r.status for r in result.requirements} == {"skipped"}
    assert "smtp" in (result.requirements[0].reason or "")
    from conformance.engine.session import exit_code

    assert exit_code(result, "mandatory") == 2  # nothing tested is not a pass


# ---------------------------------------------------------------- operator mode (no driver)


def test_operator_mode_prompts_and_judges_the_traffic(tmp_path: Path) -> None:
    """Without a driver, a person acts: here a thread plays the person by calling the vendor's driver."""
    from conformance.engine.session import SessionOptions, run_session
    from conformance.engine.target import Target
    from conformance.profiles import load
    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    vendor = BackgroundServer(create_vendor_app(), name="vendor").start()
    prompts: list[str] = []

    def person(text: str) -> None:
        prompts.append(text)
        if "ins.fetch" not in text:
            return
        action = text.split("action: ", 1)[1].split(" ", 1)
        params = json.loads(action[1].split("\n", 1)[0])
        services = dict(kv.split("=", 1) for kv in text.rsplit("services: ", 1)[1].split(", "))
        body = {"id": f"op-{len(prompts)}", "action": action[0], "params": params, "services": services}
        threading.Thread(target=requests.post, args=(f"{vendor.url}/driver/actions",), kwargs={"json": body}).start()

    try:
        target = Target(base=vendor.url, endpoints={"fhir": f"{vendor.url}/fhir"}, operator=True)
        loaded = load("segur-v2-ins")
        result, code = run_session(
            target,
            loaded,
            SessionOptions(out_dir=tmp_path, workers=2, await_timeout=20),
            operator=Operator(person, lambda timeout: True),
        )
    finally:
        vendor.stop()
    assert any("ECETINSI" in p for p in prompts) and any("insi=" in p for p in prompts)
    res = {r.id: r for r in result.requirements}
    assert res["SC.INS/va1.34"].status == "passed"  # the INSi traffic was judged
    assert res["SB.INS.01"].status == "passed"
    skipped = [r for r in result.requirements if r.status == "skipped"]
    assert skipped and all(r.reason for r in skipped)
    assert code == 0


def test_relative_fhir_reference_from_a_driver_is_resolved_on_the_fhir_base() -> None:
    from conformance.engine.runner import Engine, RunFinished
    from conformance.engine.target import Target
    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    vendor = BackgroundServer(create_vendor_app(), name="vendor").start()
    try:
        profile = Profile(
            id="t",
            version="1",
            title="t",
            services=["INS"],
            scenarios=["rel"],
            requirements=[Requirement(id="R.READ", service="INS", title="read", rules=["FHIR.STATUS"])],
        )
        sc = Scenario.model_validate(
            {
                "id": "rel",
                "title": "t",
                "service": "INS",
                "test": [
                    {"id": "reply", "op": "set", "save_as": "reply", "params": {"fhir": "metadata"}},
                    {
                        "id": "read",
                        "op": "http",
                        "params": {"url": "${reply.fhir}"},
                        "assert": [
                            {
                                "requirement": "R.READ",
                                "check": "fhir.read",
                                "args": {"resource_type": "CapabilityStatement"},
                            }
                        ],
                    },
                ],
            }
        )
        ctx = _ctx(target=Target(base=vendor.url, endpoints={"fhir": f"{vendor.url}/fhir"}))
        result = next(e for e in Engine(profile, [sc], ctx).execute() if isinstance(e, RunFinished)).result
    finally:
        vendor.stop()
    [req] = result.requirements
    assert req.status == "passed", req
    assert result.evidence[0].request["url"] == f"{vendor.url}/fhir/metadata"
