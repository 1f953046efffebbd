"""The scenario runner: runs scenarios concurrently, yields events, rolls findings up to requirements.

Design points (see STYLE.md):
- the engine emits events; the CLI and report writers listen; ``RunFinished`` always comes last;
- a buggy check never stops the run: an exception in a check makes that outcome ``error``;
- every wait has a deadline and honours cancellation, so Ctrl-C ends a run quickly with its data;
- a step that fails (transport error, no traffic, driver failure) fails its own asserts, and later
  steps that needed what it would have provided are ``error`` ("precondition failed"), not skipped:
  a vendor cannot pass by breaking early.
"""

from __future__ import annotations

import inspect
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from conformance import __version__
from conformance.checks import CHECKS
from conformance.checks.fhir import patients_in
from conformance.checks.registry import rule_matches, run_check
from conformance.engine.artefacts import PART_KINDS, check_arguments, received_part
from conformance.engine.driver import DriverClient, DriverError, Operator
from conformance.engine.evidence import EvidenceStore, body_text, now_iso
from conformance.engine.target import Target
from conformance.engine.variables import Undefined, references, render
from conformance.model import (
    RESULTS_SCHEMA_ID,
    CheckOutcome,
    Finding,
    Profile,
    RequirementResult,
    RunResult,
    Scenario,
    Status,
    Step,
    has_errors,
    summarize,
    worst_status,
)
from conformance.parsing import InputError, parse_json
from conformance.simulators.traffic import Received, TrafficLog
from conformance.transports.errors import TransportError
from conformance.transports.http import HttpClient, HttpExchange


# ---------------------------------------------------------------- events
@dataclass
class RunStarted:
    run_id: str
    scenarios: list[str]
    steps: int


@dataclass
class ScenarioStarted:
    scenario: str
    title: str


@dataclass
class StepFinished:
    scenario: str
    step: str
    status: str
    message: str = ""


@dataclass
class ScenarioFinished:
    scenario: str
    status: Status
    reason: str | None = None


@dataclass
class RunFinished:
    result: RunResult


Event = RunStarted | ScenarioStarted | StepFinished | ScenarioFinished | RunFinished


class StepFailed(Exception):
    """The step could not obtain its artefact; the finding explains why (vendor side)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class StepSkipped(Exception):
    """The step did not run, without fault of the vendor (operator mode, missing variable, unsupported).

    ``unsupported``: the vendor declared the action (or the variant asked, e.g. an MHD transport)
    unsupported (driver answer 422).  Steps that need what this one would have saved are then skipped
    too, awaits included: waiting for traffic the vendor said it will not send could only fail it.
    """

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass
class RunContext:
    target: Target
    http: HttpClient
    evidence: EvidenceStore
    traffic: TrafficLog
    simulators: dict[str, str]
    fixtures: dict[str, Any]
    driver: DriverClient | None = None
    operator: Operator | None = None
    step_timeout: float = 30.0
    await_timeout: float = 60.0
    # The run's test PKI (conformance.pki.RunPki) when a simulator needs signed tokens (DMP/VIHF).
    pki: Any = None
    await_override: float | None = None  # the user's --await-timeout wins over scenario values


@dataclass
class _ScenarioRun:
    scenario: Scenario
    status: Status = "passed"
    reason: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[str, CheckOutcome]] = field(default_factory=list)


SERVICE_PATHS = {"insi": "/lps", "dmp": "/dmp"}
# Services a simulator offers at a second URL: name -> (simulator, path). The DMP double serves MHD too.
EXTRA_SERVICES = {"mhd": ("dmp", "/fhir")}


class Engine:
    def __init__(
        self,
        profile: Profile,
        scenarios: list[Scenario],
        ctx: RunContext,
        *,
        workers: int = 4,
        services: set[str] | None = None,
        on_partial: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.profile = profile
        self.ctx = ctx
        self.services = services
        self.scenarios = [s for s in scenarios if services is None or s.service in services]
        self.workers = max(1, workers if ctx.operator is None else 1)
        self.run_id = str(uuid.uuid4())
        self.started = now_iso()
        self._cancel = threading.Event()
        self._runs: dict[str, _ScenarioRun] = {}
        self._lock = threading.Lock()
        self.on_partial = on_partial

    # ------------------------------------------------------------ public API
    def cancel(self) -> None:
        self._cancel.set()

    def execute(self) -> Iterator[Event]:
        events: queue.Queue[Event | None] = queue.Queue()
        yield RunStarted(self.run_id, [s.id for s in self.scenarios], sum(len(s.steps()) for s in self.scenarios))
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scenario")
        remaining = len(self.scenarios)
        for sc in self.scenarios:
            pool.submit(self._run_scenario_safely, sc, events)
        try:
            while remaining:
                ev = events.get()
                if ev is None:
                    remaining -= 1
                    if self.on_partial is not None:
                        self.on_partial(self.result(complete=False))
                    continue
                yield ev
        finally:
            if remaining:
                # The consumer stopped early (Ctrl-C): do not wait for exchanges in flight, the
                # partial result is built from what is already recorded.
                self._cancel.set()
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                pool.shutdown(wait=True)
        yield RunFinished(self.result(complete=not self._cancel.is_set()))

    def result(self, *, complete: bool, interrupted: bool = False) -> RunResult:
        with self._lock:
            runs = dict(self._runs)
        reqs = self._requirements(runs)
        tgt = self.ctx.target
        return RunResult(
            schema=RESULTS_SCHEMA_ID,
            run_id=self.run_id,
            complete=complete,
            interrupted=interrupted,
            tool={"name": "segur-bench", "version": __version__},
            profile={"id": self.profile.id, "version": self.profile.version, "title": self.profile.title},
            target=tgt.describe(),
            product=dict(tgt.product),
            started=self.started,
            finished=now_iso(),
            requirements=reqs,
            scenarios=[
                {
                    "id": r.scenario.id,
                    "title": r.scenario.title,
                    "service": r.scenario.service,
                    "status": r.status,
                    "reason": r.reason,
                    "steps": r.steps,
                }
                for r in runs.values()
            ],
            evidence=self.ctx.evidence.items(),
            summary=summarize(r.status for r in reqs),
            notes=list(self.profile.notes),
        )

    # ------------------------------------------------------------ roll-up
    def _requirements(self, runs: dict[str, _ScenarioRun]) -> list[RequirementResult]:
        by_req: dict[str, list[CheckOutcome]] = {}
        for run in runs.values():
            for rid, outcome in run.outcomes:
                by_req.setdefault(rid, []).append(outcome)
        out = []
        for req in self.profile.requirements:
            if self.services is not None and req.service not in self.services:
                continue
            outcomes = by_req.get(req.id, [])
            status = worst_status(o.status for o in outcomes)
            reason = None
            if not outcomes:
                reason = req.not_tested or "not proven by any scenario of this run"
            elif status == "skipped":
                reason = "; ".join(sorted({o.reason for o in outcomes if o.reason}))
            elif status == "error":
                reason = next((o.reason for o in outcomes if o.status == "error" and o.reason), None)
            out.append(
                RequirementResult(
                    id=req.id,
                    title=req.title,
                    service=req.service,
                    category=req.category,
                    criticality=req.criticality,
                    wave=req.wave,
                    status=status,
                    reason=reason,
                    note=req.note,
                    checks=outcomes,
                )
            )
        return out

    # ------------------------------------------------------------ scenarios
    def _run_scenario_safely(self, sc: Scenario, events: queue.Queue[Event | None]) -> None:
        run = _ScenarioRun(sc)
        with self._lock:
            self._runs[sc.id] = run
        try:
            events.put(ScenarioStarted(sc.id, sc.title))
            self._run_scenario(run, events)
        except Exception as exc:  # a bug in the bench must not stop the other scenarios
            run.status = "error"
            run.reason = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            events.put(ScenarioFinished(sc.id, run.status, run.reason))
            events.put(None)

    def _precondition(self, sc: Scenario) -> str | None:
        ctx = self.ctx
        for need in sc.requires:
            if need not in ctx.target.endpoints:
                return f"target exposes no {need} endpoint"
        for sim in sc.simulators:
            if sim not in ctx.simulators:
                return f"simulator {sim} is not running"
        uses_driver = any(s.op == "driver" for s in sc.steps())
        if uses_driver and ctx.driver is None and ctx.operator is None:
            return "no driver URL and no operator to act (use a TOML target with `operator = true` or a driver)"
        return None

    def _run_scenario(self, run: _ScenarioRun, events: queue.Queue[Event | None]) -> None:
        sc = run.scenario
        why = self._precondition(sc)
        if why:
            run.status, run.reason = "skipped", why
            for step in sc.steps():
                for a in step.asserts:
                    run.outcomes.append(
                        (
                            a.requirement,
                            CheckOutcome(scenario=sc.id, step=step.id, check=a.check, status="skipped", reason=why),
                        )
                    )
            return
        variables: dict[str, Any] = {
            "target": self.ctx.target.vars(),
            "sim": dict(self.ctx.simulators),
            "fixtures": self.ctx.fixtures,
        }
        try:
            for k, v in sc.variables.items():
                variables[k] = render(v, variables)
        except Undefined as exc:
            run.status, run.reason = "error", f"scenario variable: {exc}"
            return
        failed_steps: dict[str, str] = {}  # save_as name -> why it is missing
        unsupported: dict[str, str] = {}  # save_as name -> why the vendor could not do it (422)
        after_seq = self.ctx.traffic.last_seq
        for step in sc.steps():
            if self._cancel.is_set():
                self._mark(run, step, "skipped", "run interrupted", events)
                continue
            needed = references(step.params) | {r for a in step.asserts for r in references(a.args)}
            declined = sorted(n for n in needed if n in unsupported)
            if declined:
                self._mark(run, step, "skipped", unsupported[declined[0]], events)
                if step.save_as:
                    unsupported[step.save_as] = unsupported[declined[0]]
                continue
            broken = sorted(n for n in needed if n in failed_steps)
            if broken:
                why = f"precondition failed: {failed_steps[broken[0]]}"
                self._mark(run, step, "error", why, events)
                if step.save_as:
                    failed_steps[step.save_as] = why
                continue
            t0 = time.monotonic()
            try:
                artefact, saved, evidence = self._do_step(sc, step, variables, after_seq)
            except StepSkipped as exc:
                # Not a failure: later steps that need what it would have saved are skipped in turn
                # (an undefined variable), except waits on traffic, which correlate leniently.
                self._mark(run, step, "skipped", str(exc), events)
                if exc.unsupported and step.save_as:
                    unsupported[step.save_as] = str(exc)
                continue
            except StepFailed as exc:
                f = exc.finding
                for a in step.asserts:
                    run.outcomes.append(
                        (
                            a.requirement,
                            CheckOutcome(
                                scenario=sc.id,
                                step=step.id,
                                check=a.check,
                                status="failed",
                                findings=[f.as_dict()],
                                evidence=list(f.evidence),
                                reason=f.message,
                            ),
                        )
                    )
                run.steps.append(
                    {
                        "id": step.id,
                        "title": step.title,
                        "status": "failed",
                        "message": f.message,
                        "evidence": list(f.evidence),
                        "duration_ms": _ms(t0),
                    }
                )
                events.put(StepFinished(sc.id, step.id, "failed", f.message))
                run.status = worst_status([run.status, "failed"])
                if step.save_as:
                    failed_steps[step.save_as] = f"step {step.id} failed: {f.message}"
                continue
            if step.save_as:
                variables[step.save_as] = saved
            statuses: list[Status] = []
            for a in step.asserts:
                outcome = self._assert(sc, step, a.requirement, a.check, a.args, artefact, variables, evidence)
                run.outcomes.append((a.requirement, outcome))
                statuses.append(outcome.status)
            status = worst_status(statuses) if statuses else "passed"
            run.status = worst_status([run.status, status]) if status != "skipped" else run.status
            run.steps.append(
                {
                    "id": step.id,
                    "title": step.title,
                    "status": status,
                    "message": "",
                    "evidence": evidence,
                    "duration_ms": _ms(t0),
                }
            )
            events.put(StepFinished(sc.id, step.id, status))

    def _mark(self, run: _ScenarioRun, step: Step, status: Status, why: str, events: queue.Queue[Event | None]) -> None:
        for a in step.asserts:
            run.outcomes.append(
                (
                    a.requirement,
                    CheckOutcome(scenario=run.scenario.id, step=step.id, check=a.check, status=status, reason=why),
                )
            )
        run.steps.append({"id": step.id, "title": step.title, "status": status, "message": why, "evidence": []})
        if status == "error":
            run.status = worst_status([run.status, "error"])
        events.put(StepFinished(run.scenario.id, step.id, status, why))

    # ------------------------------------------------------------ steps
    def _do_step(
        self, sc: Scenario, step: Step, variables: dict[str, Any], after_seq: int
    ) -> tuple[Any, Any, list[str]]:
        if step.op == "http":
            return self._http(sc, step, variables)
        if step.op == "driver":
            return self._driver(sc, step, variables)
        if step.op == "await":
            return self._await(sc, step, variables, after_seq)
        if step.op == "set":
            try:
                values = render(step.params, variables)
            except Undefined as exc:
                raise StepSkipped(f"needs {exc}") from None
            return values, values, []
        if step.op == "ask":
            if self.ctx.operator is None:
                raise StepSkipped("no operator in an unattended run")
            self.ctx.operator.prompt(
                str(render(step.params.get("text", step.title or step.id), variables, lenient=True))
            )
            self.ctx.operator.confirm(step.timeout or self.ctx.await_timeout)
            return None, None, []
        raise StepSkipped(f"step type {step.op} is not supported in this version")

    def _http(self, sc: Scenario, step: Step, variables: dict[str, Any]) -> tuple[Any, Any, list[str]]:
        try:
            params = render(step.params, variables)
        except Undefined as exc:
            raise StepSkipped(f"needs {exc}") from None
        headers = {"Accept": "application/fhir+json", **(params.get("headers") or {})}
        url = str(params["url"])
        fhir_base = self.ctx.target.endpoints.get("fhir")
        if not url.startswith(("http://", "https://")) and isinstance(fhir_base, str):
            # A driver may answer with a FHIR relative reference ("Patient/123"): resolve it on the base.
            url = urljoin(fhir_base.rstrip("/") + "/", url.lstrip("/"))
            params["url"] = url
        try:
            ex = self.ctx.http.request(
                params.get("method", "GET"),
                url,
                name=step.title or step.id,
                scenario=sc.id,
                headers=headers,
                timeout=step.timeout or self.ctx.step_timeout,
            )
        except TransportError as exc:
            ev = [e.id for e in self.ctx.evidence.items() if e.scenario == sc.id][-1:]
            raise StepFailed(Finding(exc.rule, "error", exc.message, params["url"], tuple(ev))) from None
        ids = [ex.evidence_id] if ex.evidence_id else []
        saved = ex.as_vars()
        saved["ins"] = _exposed_ins(saved.get("json"))
        return ex, saved, ids

    def _services(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: url + SERVICE_PATHS.get(name, "") for name, url in self.ctx.simulators.items()}
        for name, (sim, path) in EXTRA_SERVICES.items():
            if sim in self.ctx.simulators:
                out[name] = self.ctx.simulators[sim] + path
        if self.ctx.pki is not None:
            # The vendor signs (VIHF) and authenticates with credentials the bench trusts for this run.
            out["pki"] = self.ctx.pki.services()
            out["ca_pem"] = out["pki"]["ca_pem"]
        return out

    def _driver(self, sc: Scenario, step: Step, variables: dict[str, Any]) -> tuple[Any, Any, list[str]]:
        try:
            params = render(step.params, variables)
        except Undefined as exc:
            raise StepSkipped(f"needs {exc}") from None
        action = params["action"]
        timeout = step.timeout or self.ctx.await_timeout
        if self.ctx.driver is None:
            assert self.ctx.operator is not None  # guaranteed by _precondition
            services = self._services()
            shown = json.dumps(params.get("params", {}), ensure_ascii=False)
            text = f"[{sc.id}] {step.title or action}\n  action: {action} {shown}"
            text += "\n  services: " + ", ".join(f"{k}={v}" for k, v in services.items())
            self.ctx.operator.prompt(text)
            if action in ("ins.qualify",):
                self.ctx.operator.confirm(timeout)
            # Nothing comes back from a person: later steps needing the driver's result are skipped.
            raise StepSkipped(f"{action} done by the operator; no driver result to use")
        try:
            reply = self.ctx.driver.run(
                action,
                params.get("params", {}),
                self._services(),
                scenario=sc.id,
                timeout=timeout,
                cancelled=self._cancel.is_set,
            )
        except DriverError as exc:
            if exc.unsupported:
                raise StepSkipped(exc.message, unsupported=True) from None
            ev = (exc.evidence,) if exc.evidence else ()
            raise StepFailed(Finding("INPUT.DRIVER", "error", exc.message, f"driver {action}", ev)) from None
        ev_ids = [reply["evidence"]] if reply.get("evidence") else []
        return reply, reply, ev_ids

    def _await(self, sc: Scenario, step: Step, variables: dict[str, Any], after_seq: int) -> tuple[Any, Any, list[str]]:
        params = render(step.params, variables, lenient=True)
        service = params["service"]
        action_id = params.get("action_id")
        birth_name = (params.get("birth_name") or "").upper()

        operation = params.get("operation")

        def match(item: Received) -> bool:
            if item.service != service:
                return False
            if operation and item.facts.get("operation") != operation:
                return False
            if action_id and item.header("X-Segur-Bench-Action") == action_id:
                return True
            if birth_name and birth_name in _birth_names(item.facts):
                return True
            return not action_id and not birth_name

        timeout = self.ctx.await_override or step.timeout or self.ctx.await_timeout
        deadline = time.monotonic() + timeout
        found: Received | None = None
        while found is None and not self._cancel.is_set():
            slice_ = min(0.5, deadline - time.monotonic())
            if slice_ <= 0:
                break
            found = self.ctx.traffic.wait(match, timeout=slice_, after_seq=after_seq)
        if found is None:
            why = "run interrupted" if self._cancel.is_set() else f"no {service} request received within {timeout:g} s"
            raise StepFailed(Finding("INPUT.NO-TRAFFIC", "error", why, f"simulator {service}"))
        ev_id = self.ctx.evidence.add(
            name=step.title or step.id,
            scenario=sc.id,
            direction="incoming",
            protocol="http",
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.received_at)),
            duration_ms=found.duration_ms,
            request={
                "method": found.method,
                "url": found.path + (f"?{found.query}" if found.query else ""),
                "headers": dict(found.headers),
                "client": found.client,
                **body_text(found.body),
            },
            response={
                "status": found.response_status,
                "headers": dict(found.response_headers),
                **body_text(found.response_body),
            },
        )
        saved = {"facts": found.facts, "headers": dict(found.headers), "path": found.path, "evidence": ev_id}
        return found, saved, [ev_id]

    # ------------------------------------------------------------ assertions
    def _assert(
        self,
        sc: Scenario,
        step: Step,
        requirement: str,
        check_name: str,
        raw_args: dict[str, Any],
        artefact: Any,
        variables: dict[str, Any],
        evidence: list[str],
    ) -> CheckOutcome:
        base: dict[str, Any] = {"scenario": sc.id, "step": step.id, "check": check_name, "evidence": evidence}
        req = self.profile.requirement(requirement)
        if req is None:
            return CheckOutcome(**base, status="error", reason=f"requirement {requirement} not in profile")
        try:
            args = render(raw_args, variables)
        except Undefined as exc:
            return CheckOutcome(**base, status="error", reason=f"check arguments: {exc}")
        try:
            findings = self._run_on(check_name, artefact, args)
        except Exception as exc:  # buggy check: this outcome is an error, the run goes on
            return CheckOutcome(**base, status="error", reason=f"check {check_name} raised {type(exc).__name__}: {exc}")
        relevant = [f for f in findings if f.rule.startswith("INPUT.") or rule_matches(f.rule, req.rules)]
        status: Status = "failed" if has_errors(relevant) else "passed"
        return CheckOutcome(
            **base,
            status=status,
            findings=[f.with_evidence(*evidence).as_dict() if not f.evidence else f.as_dict() for f in relevant],
        )

    def _run_on(self, check_name: str, artefact: Any, args: dict[str, Any]) -> list[Finding]:
        info = CHECKS[check_name]
        if info.kind == "fhir-patient":
            body = artefact.body if isinstance(artefact, HttpExchange) else artefact
            if isinstance(body, (bytes, bytearray)):
                try:
                    doc = parse_json(bytes(body))
                except InputError as exc:
                    return [Finding(exc.rule, "error", exc.message, "body")]
            else:
                doc = body
            found = patients_in(doc)
            if not found:
                return [Finding("INPUT.NO-RESOURCE", "error", "no Patient resource in the response", "body")]
            out: list[Finding] = []
            for loc, res in found:
                out.extend(run_check(check_name, res, location=loc, **args))
            return out
        if isinstance(artefact, Received) and info.kind in PART_KINDS:
            part = received_part(info.kind, artefact)
            if isinstance(part, Finding):
                return [part]
            target, extra = part
            if info.kind == "vihf" and self.ctx.pki is not None:
                extra.setdefault("ca_pem", self.ctx.pki.ca_pem)
            # An MHD Bundle carries its document (Binary): mhd.cda reads it when no cda_root is given.
            needs_cda = info.kind != "mhd" and "cda_root" in inspect.signature(info.func).parameters
            if needs_cda and "cda_root" not in extra | args:
                return [Finding("INPUT.NO-DOCUMENT", "error", "no CDA document in the request", "//xdsb:Document")]
            return run_check(check_name, target, **check_arguments(info.func, extra, args))
        return run_check(check_name, artefact, **args)


def _birth_names(facts: dict[str, Any]) -> set[str]:
    """Birth names a simulator saw in a request (traits, carte Vitale) or returned (identity)."""
    names = set()
    for part in ("traits", "carte_vitale", "identity"):
        value = (facts.get(part) or {}).get("birth_name")
        if isinstance(value, str):
            names.add(value.upper())
    if isinstance(facts.get("birth_name"), str):
        names.add(facts["birth_name"].upper())
    return names


def _exposed_ins(doc: Any) -> dict[str, str] | None:
    """The INS a Patient answer exposes, so later steps search by what the vendor actually stores."""
    from conformance.checks.ins import identity_from_patient

    if not isinstance(doc, dict) or doc.get("resourceType") != "Patient":
        return None
    try:
        current = identity_from_patient(doc).current_ins
    except Exception:
        return None
    if current is None or not current.value or not current.oid:
        return None
    return {
        "system": f"urn:oid:{current.oid}",
        "value": current.value,
        "token": f"urn:oid:{current.oid}|{current.value}",
    }


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)
