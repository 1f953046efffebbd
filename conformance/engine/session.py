"""One run from start to finish: simulators up, engine run, results and reports written, exit code.

The CLI stays thin (parse, call this, render); tests call this directly too.  Results are written
after every scenario and once more at the end; on Ctrl-C the partial result is written, marked
incomplete, and the reports say so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.engine.driver import DriverClient, Operator
from conformance.engine.evidence import EvidenceStore
from conformance.engine.redaction import Redactor
from conformance.engine.results import ResultsWriter
from conformance.engine.runner import Engine, Event, RunContext, RunFinished
from conformance.engine.target import Target
from conformance.model import RunResult
from conformance.profiles import Loaded
from conformance.simulators.server import BackgroundServer
from conformance.simulators.traffic import TrafficLog

FAIL_ON = ("mandatory", "any", "none")


@dataclass
class SessionOptions:
    out_dir: Path
    workers: int = 4
    services: set[str] | None = None
    fail_on: str = "mandatory"
    junit: Path | None = None
    sim_host: str = "127.0.0.1"
    formats: tuple[str, ...] = ("json", "html", "junit", "md")
    lang: str = "fr"
    step_timeout: float | None = None
    await_timeout: float | None = None
    extra_secrets: list[str] = field(default_factory=list)
    # Trust (conformance/trust): waivers applied after the run, Ed25519 key signing results.json,
    # history recorder (a row at start, updated per scenario and at the end).
    waivers: list[Any] | None = None
    sign_key: Any = None
    history: Any = None


def nothing_tested(result: RunResult) -> bool:
    """No requirement could be evaluated at all: the run proves nothing, so it is not a pass."""
    return bool(result.requirements) and all(r.status == "skipped" for r in result.requirements)


def exit_code(result: RunResult, fail_on: str) -> int:
    if nothing_tested(result):
        return 2
    if fail_on == "none":
        return 0
    bad = {"failed", "error"}
    for r in result.requirements:
        if r.status in bad and (fail_on == "any" or r.category == "exigence"):
            return 1
    if any(w.get("status") in ("expired", "unused") for w in result.waivers):
        return 1  # a waiver that rots is a failure (trust/waivers.py)
    return 0


def load_fixtures() -> dict[str, Any]:
    from conformance.simulators.insi import load_identities

    insi = {}
    for ident in load_identities():
        ident = dict(ident)
        ident.setdefault("first_given_name", (ident.get("given_names") or [None])[0])
        insi[ident["key"]] = ident
    return {"insi": insi}


def start_simulators(names: set[str], traffic: TrafficLog, host: str) -> dict[str, BackgroundServer]:
    servers: dict[str, BackgroundServer] = {}
    if "insi" in names:
        from conformance.simulators.insi import create_insi_app

        servers["insi"] = BackgroundServer(create_insi_app(traffic), host=host, name="insi").start()
    if "dmp" in names:
        from conformance.simulators.dmp import create_dmp_app

        servers["dmp"] = BackgroundServer(create_dmp_app(traffic), host=host, name="dmp").start()
    return servers


def run_pki(needed: set[str]) -> Any:
    """A throw-away test PKI when a simulator judges signed tokens (the DMP's VIHF), else None.

    Its CA is what the VIHF check trusts; its client key goes to the vendor in ``services.pki``.
    """
    if "dmp" not in needed:
        return None
    from conformance.pki import ephemeral_run_pki

    return ephemeral_run_pki()


def run_session(
    target: Target,
    loaded: Loaded,
    opts: SessionOptions,
    *,
    on_event: Callable[[Event], None] = lambda e: None,
    operator: Operator | None = None,
) -> tuple[RunResult, int]:
    from conformance.transports.http import HttpClient

    redactor = Redactor([*target.secrets, *opts.extra_secrets])
    evidence = EvidenceStore(redactor)
    http = HttpClient(target.http, evidence)
    traffic = TrafficLog()
    scenarios = [loaded.scenarios[s] for s in loaded.profile.scenarios if s in loaded.scenarios]
    if opts.services is not None:
        scenarios = [s for s in scenarios if s.service in opts.services]
    needed = {sim for s in scenarios for sim in s.simulators}
    pki = run_pki(needed)
    if pki is not None:
        # The run's private key travels in driver requests: never into evidence.
        redactor.add(pki.services()["key_pem"])
    servers = start_simulators(needed, traffic, opts.sim_host)
    driver = DriverClient(target.endpoints["driver"], http) if target.endpoints.get("driver") else None
    if driver is not None:
        caps = driver.capabilities()
        if caps:
            for key in ("product", "version", "software_type"):
                if key in caps and isinstance(caps[key], str):
                    target.product.setdefault(key, caps[key])
    ctx = RunContext(
        pki=pki,
        target=target,
        http=http,
        evidence=evidence,
        traffic=traffic,
        simulators={name: srv.url for name, srv in servers.items()},
        fixtures=load_fixtures(),
        driver=driver,
        operator=operator if driver is None else None,
        step_timeout=opts.step_timeout or target.http.timeout,
        await_timeout=opts.await_timeout or target.await_timeout,
        await_override=opts.await_timeout,
    )
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    writer = ResultsWriter(opts.out_dir / "results.json")

    def on_partial(partial: RunResult) -> None:
        writer.write(partial)
        if opts.history is not None:
            opts.history.record(partial)

    engine = Engine(loaded.profile, scenarios, ctx, workers=opts.workers, services=opts.services, on_partial=on_partial)
    on_partial(engine.result(complete=False))  # a file (and a history row) exist from the first second on
    result: RunResult | None = None
    try:
        for event in engine.execute():
            on_event(event)
            if isinstance(event, RunFinished):
                result = event.result
    except KeyboardInterrupt:
        engine.cancel()
        result = engine.result(complete=False, interrupted=True)
    finally:
        for srv in servers.values():
            srv.stop()
        http.close()
    assert result is not None
    finalize_trust(result, opts, {r.id for r in loaded.profile.requirements})
    writer.write(result)
    write_reports(result, opts)
    code = exit_code(result, opts.fail_on)
    if result.interrupted:
        code = 2
    if opts.history is not None:
        opts.history.record(result, exit_code=code)
    return result, code


def finalize_trust(result: RunResult, opts: SessionOptions, profile_ids: set[str]) -> None:
    """Apply waivers, then sign (last: the signature covers the waived statuses and waiver records)."""
    if opts.waivers is not None:
        from conformance.trust.waivers import apply_waivers

        apply_waivers(result, opts.waivers, profile_ids=profile_ids)
    if opts.sign_key is not None:
        from conformance.trust.signing import sign_results

        result.signature = None
        result.signature = sign_results(result.to_json_dict(), opts.sign_key)


def write_reports(result: RunResult, opts: SessionOptions) -> dict[str, Path]:
    from conformance.report.render import write_reports as _write

    data = result.to_json_dict()
    formats = tuple(f for f in opts.formats if f != "json")
    written: dict[str, Path] = {}
    try:
        written = _write(data, opts.out_dir, formats=formats, lang=opts.lang)
    except TypeError:  # renderer without lang support
        written = _write(data, opts.out_dir, formats=formats)
    if opts.junit is not None:
        from conformance.report.render import render_junit

        opts.junit.parent.mkdir(parents=True, exist_ok=True)
        opts.junit.write_text(render_junit(data), encoding="utf-8")
        written["junit-extra"] = opts.junit
    written["json"] = opts.out_dir / "results.json"
    return written


def stdin_is_interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False
