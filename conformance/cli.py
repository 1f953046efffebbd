"""Command line (contract in DESIGN.md). Thin: parse, call the core, render, pick the exit code.

Heavy modules (lxml, starlette, requests, pydantic models) are imported inside commands so that
``segur-bench --help`` stays fast.  Every expected failure ends with one line on stderr and exit 2;
unexpected ones too (``main`` catches them): a user never sees a traceback.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from conformance.engine.runner import Event

app = typer.Typer(
    name="segur-bench",
    help="Conformance and referencing test bench for the Ségur services socles (INS, DMP, MSSanté, PSC, ordonnance).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profiles_app = typer.Typer(help="List, show and lint profiles and scenarios.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
pki_app = typer.Typer(help="Test PKI standing in for IGC-Santé: CA and test certificates.", no_args_is_help=True)
app.add_typer(pki_app, name="pki")


class UsageError(Exception):
    """Ends the command with exit 2 and this one-line message."""


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def fail(message: str) -> None:
    raise UsageError(message)


# ---------------------------------------------------------------- run / demo
class FailOn(str, Enum):
    mandatory = "mandatory"
    any = "any"
    none = "none"


def _progress_handler(console: Console) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from conformance.engine.runner import RunStarted, ScenarioFinished, StepFinished

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    state: dict[str, Any] = {}

    def handle(event: Event) -> None:
        if isinstance(event, RunStarted):
            progress.start()
            state["task"] = progress.add_task("segur-bench", total=max(event.steps, 1))
        elif isinstance(event, StepFinished):
            progress.advance(state["task"])
            if event.status in ("failed", "error"):
                progress.console.print(f"  [red]{event.status}[/] {event.scenario}/{event.step} {event.message}")
        elif isinstance(event, ScenarioFinished):
            colour = {"passed": "green", "failed": "red", "error": "red"}.get(event.status, "yellow")
            why = f" — {event.reason}" if event.reason else ""
            progress.console.print(f"[{colour}]{event.status:>7}[/] scenario {event.scenario}{why}")

    return progress, handle


def _summary_table(console: Console, result: Any, out_dir: Path) -> None:
    from rich.table import Table

    colours = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow", "waived": "cyan"}
    table = Table(title=f"{result.profile['id']} {result.profile['version']} — {result.target.get('base')}")
    for col in ("Requirement", "Status", "Crit.", "Title"):
        table.add_column(col)
    for r in result.requirements:
        table.add_row(r.id, f"[{colours.get(r.status, 'white')}]{r.status}[/]", r.criticality, r.title)
    console.print(table)
    s = result.summary
    console.print(
        f"passed {s.get('passed', 0)}, failed {s.get('failed', 0)}, error {s.get('error', 0)}, "
        f"skipped {s.get('skipped', 0)}, waived {s.get('waived', 0)} — results in {out_dir}"
    )
    if not result.complete:
        console.print("[bold red]Run interrupted: results are incomplete.[/]")


def _operator(console: Console) -> Any:
    import select

    from conformance.engine.driver import Operator

    def prompt(text: str) -> None:
        console.print(f"[bold yellow]ACTION REQUIRED[/] {text}")

    def confirm(timeout: float) -> bool:
        console.print(f"  press Enter when done (waiting up to {timeout:g} s)")
        try:
            ready, _, _ = select.select([sys.stdin], [], [], timeout)
        except (OSError, ValueError):
            return False
        if ready:
            sys.stdin.readline()
            return True
        return False

    return Operator(prompt, confirm)


def _do_run(
    target_ref: str,
    profile: str,
    service: str | None,
    out: Path,
    junit: Path | None,
    workers: int,
    fail_on: FailOn,
    lang: str,
    await_timeout: float | None,
    target_obj: Any = None,
    *,
    waivers: Path | None = None,
    sign: Path | None = None,
    db: Path | None = None,
    no_db: bool = False,
) -> int:
    from conformance.engine.session import SessionOptions, run_session, stdin_is_interactive
    from conformance.engine.target import TargetError, resolve
    from conformance.profiles import LintFailed, load
    from conformance.yamlio import DataError

    try:
        loaded = load(profile)
    except LintFailed as exc:
        fail(f"invalid profile: {exc.errors[0]}" + (f" (+{len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""))
    except DataError as exc:
        fail(str(exc))
    services = {s.strip().upper() for s in service.split(",")} if service else None
    if services:
        unknown = services - set(loaded.profile.services)
        if unknown:
            fail(
                f"--service {','.join(sorted(unknown))}: not in profile {loaded.profile.id} "
                f"(services: {','.join(loaded.profile.services)})"
            )
    try:
        target = target_obj or resolve(target_ref)
    except TargetError as exc:
        fail(str(exc))
    console = _console()
    operator = _operator(console) if target.operator and stdin_is_interactive() else None
    opts = SessionOptions(
        out_dir=out,
        workers=workers,
        services=services,
        fail_on=fail_on.value,
        junit=junit,
        lang=lang,
        await_timeout=await_timeout,
        **_trust_options(waivers, sign, db, no_db, out, console),
    )
    progress, handle = _progress_handler(console)
    try:
        result, code = run_session(target, loaded, opts, on_event=handle, operator=operator)
    finally:
        progress.stop()
    _summary_table(console, result, out)
    _trust_summary(console, result, opts)
    if result.interrupted:
        # Everything is written; worker threads may still sit in an exchange that will time out.
        # Leave now rather than wait for them at interpreter exit.
        console.print(f"interrupted: partial results in {out}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    from conformance.engine.session import nothing_tested

    if nothing_tested(result):
        reasons = sorted({r.reason for r in result.requirements if r.reason})
        print(f"segur-bench: error: nothing could be tested: {'; '.join(reasons)[:300]}", file=sys.stderr)
    return code


@app.command()
def run(
    target: Annotated[str, typer.Option("--target", "-t", help="Vendor base URL or TOML target file.")],
    profile: Annotated[
        str, typer.Option(help="Profile id or YAML path; several comma-separated; `all` = every shipped profile.")
    ] = "all",
    service: Annotated[str | None, typer.Option(help="Comma-separated services to run (ins,dmp,…).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for results and reports.")] = Path("segur-bench-results"),
    junit: Annotated[Path | None, typer.Option(help="Also write JUnit XML here.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Scenarios run concurrently.")] = 4,
    fail_on: Annotated[FailOn, typer.Option(help="What makes the exit code 1.")] = FailOn.mandatory,
    lang: Annotated[str, typer.Option(help="Report language: fr or en.")] = "fr",
    await_timeout: Annotated[float | None, typer.Option(help="Seconds to wait for vendor traffic.")] = None,
    waivers: Annotated[Path | None, typer.Option(help="Waivers YAML: requirement, justification, expires.")] = None,
    sign: Annotated[Path | None, typer.Option(help="Sign results.json with this Ed25519 PEM key (see keygen).")] = None,
    db: Annotated[Path | None, typer.Option(help="Run history SQLite file (default: $SEGUR_BENCH_DB or XDG).")] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Do not record this run in the history.")] = False,
) -> None:
    """Run a profile against a vendor target; exit 0 conformant, 1 not, 2 could not run."""
    raise typer.Exit(
        _do_run(
            target,
            profile,
            service,
            out,
            junit,
            workers,
            fail_on,
            lang,
            await_timeout,
            waivers=waivers,
            sign=sign,
            db=db,
            no_db=no_db,
        )
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("segur-bench-demo"),
    fault: Annotated[list[str] | None, typer.Option(help="Inject a fault in the reference vendor.")] = None,
    lang: Annotated[str, typer.Option(help="Report language: fr or en.")] = "fr",
    workers: Annotated[int, typer.Option(min=1, max=64)] = 4,
    waivers: Annotated[Path | None, typer.Option(help="Waivers YAML: requirement, justification, expires.")] = None,
    sign: Annotated[Path | None, typer.Option(help="Sign results.json with this Ed25519 PEM key (see keygen).")] = None,
    db: Annotated[Path | None, typer.Option(help="Run history SQLite file (default: $SEGUR_BENCH_DB or XDG).")] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Do not record this run in the history.")] = False,
) -> None:
    """Start the embedded reference vendor on loopback and run the full profile against it."""
    from conformance.simulators.faults import parse_faults
    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    try:
        faults = parse_faults(fault or [])
    except ValueError as exc:
        fail(str(exc))
    server = BackgroundServer(create_vendor_app(faults=faults), name="vendor").start()
    try:
        _console().print(
            f"reference vendor on {server.url}" + (f" with faults {', '.join(sorted(faults))}" if faults else "")
        )
        code = _do_run(
            server.url,
            "all",
            None,
            out,
            None,
            workers,
            FailOn.mandatory,
            lang,
            30.0,
            waivers=waivers,
            sign=sign,
            db=db,
            no_db=no_db,
        )
    finally:
        server.stop()
    raise typer.Exit(code)


# ---------------------------------------------------------------- validate
class VFormat(str, Enum):
    table = "table"
    json = "json"
    junit = "junit"


class VKind(str, Enum):
    auto = "auto"
    cda = "cda"
    fhir = "fhir"
    xds = "xds"
    mhd = "mhd"


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to validate.")],
    kind: Annotated[VKind, typer.Option(help="File kind.")] = VKind.auto,
    format: Annotated[VFormat, typer.Option("--format", "-f", help="Output format.")] = VFormat.table,
    out: Annotated[Path | None, typer.Option(help="Write the output to this file.")] = None,
    terminology: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of official value sets (JDV SVS XML, NOS FHIR JSON); repeatable."),
    ] = None,
    ans_pack: Annotated[
        Path | None,
        typer.Option("--ans-pack", help="ANS TestContenuCDA checkout: also run its XSD and volet schematron."),
    ] = None,
) -> None:
    """Validate FHIR Patient JSON and CDA files offline (INS and CI-SIS header rules); exit 1 if any file fails."""
    import json

    from conformance.validate import validate_paths

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {missing[0]}")
    for folder in [*(terminology or []), *([ans_pack] if ans_pack is not None else [])]:
        if not folder.is_dir():
            fail(f"not a folder: {folder}")
    report = validate_paths(paths, kind.value, terminology=terminology or [], ans_pack=ans_pack)
    if format is VFormat.json:
        text = json.dumps(report, ensure_ascii=False, indent=2)
    elif format is VFormat.junit:
        text = _validation_junit(report)
    else:
        text = ""
    if out is not None:
        out.write_text(
            text if format is not VFormat.table else json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    elif format is not VFormat.table:
        sys.stdout.write(text + "\n")
    if format is VFormat.table:
        _validation_table(report)
    bad = report["summary"]["failed"] + report["summary"]["error"]
    raise typer.Exit(1 if bad else 0)


def _validation_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="segur-bench validate")
    for col in ("File", "Kind", "Status", "Rule", "Severity", "Message", "Location"):
        table.add_column(col, overflow="fold")
    colours = {"passed": "green", "failed": "red", "error": "magenta"}
    for f in report["files"]:
        status = f"[{colours[f['status']]}]{f['status']}[/]"
        shown = [x for x in f["findings"] if x["severity"] != "info"] or [None]
        for i, finding in enumerate(shown):
            first = (f["path"], f["kind"], status) if i == 0 else ("", "", "")
            if finding is None:
                table.add_row(*first, "", "", "", "")
            else:
                table.add_row(
                    *first, finding["rule"], finding["severity"], finding["message"], finding["location"] or ""
                )
    console.print(table)
    s = report["summary"]
    console.print(f"{s['files']} files: {s['passed']} passed, {s['failed']} failed, {s['error']} error")


def _validation_junit(report: dict[str, Any]) -> str:
    from xml.sax.saxutils import quoteattr

    s = report["summary"]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="segur-bench validate" tests="{s["files"]}" failures="{s["failed"]}" errors="{s["error"]}">',
    ]
    for f in report["files"]:
        lines.append(f'  <testcase classname="validate.{f["kind"]}" name={quoteattr(f["path"])}>')
        errs = [x for x in f["findings"] if x["severity"] == "error"]
        if f["status"] != "passed":
            tag = "error" if f["status"] == "error" else "failure"
            msg = "; ".join(f"{x['rule']}: {x['message']}" for x in errs)[:2000]
            lines.append(f"    <{tag} message={quoteattr(msg)}/>")
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines)


# ---------------------------------------------------------------- sim
class SimWhat(str, Enum):
    vendor = "vendor"
    services = "services"


@app.command()
def sim(
    what: Annotated[
        SimWhat, typer.Argument(help="vendor: the reference vendor; services: national-service doubles.")
    ] = SimWhat.vendor,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    fault: Annotated[list[str] | None, typer.Option(help="Fault to inject (repeatable); see --list-faults.")] = None,
    list_faults: Annotated[
        bool, typer.Option("--list-faults", help="List the faults and the requirements each breaks.")
    ] = False,
) -> None:
    """Start the reference vendor (with optional faults) or the national-service simulators."""
    from conformance.simulators.faults import FAULTS, parse_faults

    if list_faults:
        from rich.table import Table

        table = Table(title="Reference vendor faults")
        for col in ("Fault", "Breaks", "Description"):
            table.add_column(col)
        for f in sorted(FAULTS.values(), key=lambda x: x.name):
            table.add_row(f.name, ", ".join(f.requirements), f.description)
        _console().print(table)
        raise typer.Exit(0)
    try:
        faults = parse_faults(fault or [])
    except ValueError as exc:
        fail(str(exc))
    import threading

    from conformance.simulators.server import BackgroundServer

    if what is SimWhat.vendor:
        from conformance.simulators.vendor import create_vendor_app

        app_ = create_vendor_app(faults=faults)
        label = "reference vendor"
    else:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from conformance.simulators.dmp import create_dmp_app
        from conformance.simulators.insi import create_insi_app
        from conformance.simulators.traffic import TrafficLog

        traffic = TrafficLog()
        app_ = Starlette(
            routes=[Mount("/insi", app=create_insi_app(traffic)), Mount("/dmp", app=create_dmp_app(traffic))]
        )
        label = (
            "national-service simulators (INSi: POST {url}/insi/lps; DMP XDS.b: POST {url}/dmp; MHD: {url}/dmp/fhir)"
        )
    try:
        server = BackgroundServer(app_, host=host, port=port, name=what.value).start()
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except RuntimeError as exc:
        fail(str(exc))
    console = _console()
    console.print(
        f"{label.replace('{url}', server.url)} listening on {server.url}"
        + (f" with faults {', '.join(sorted(faults))}" if faults else "")
    )
    console.print("Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# ---------------------------------------------------------------- report
class RFormat(str, Enum):
    html = "html"
    md = "md"
    junit = "junit"
    json = "json"
    pdf = "pdf"


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results.json of a run.")],
    format: Annotated[RFormat, typer.Option("--format", "-f")] = RFormat.html,
    out: Annotated[Path | None, typer.Option(help="Output file (default: stdout, except pdf).")] = None,
    lang: Annotated[str, typer.Option(help="fr or en.")] = "fr",
) -> None:
    """Render a results file as HTML, Markdown, JUnit, JSON or PDF."""
    import json

    import jsonschema

    from conformance.report import render as r
    from conformance.yamlio import load_schema

    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"no such file: {results}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{results}: not a readable results file: {exc}")
    try:
        jsonschema.validate(data, load_schema("results.schema.json"))
    except jsonschema.ValidationError as exc:
        fail(f"{results}: not a segur-bench results/v1 file: {exc.message}")
    if format is RFormat.pdf:
        if out is None:
            fail("--format pdf needs --out FILE")
        try:
            r.render_pdf(data, out, lang=lang)
        except ImportError:
            fail("PDF output needs the optional extra: pip install 'segur-bench[pdf]'")
        raise typer.Exit(0)
    text = {
        RFormat.html: lambda: r.render_html(data, lang=lang),
        RFormat.md: lambda: r.render_markdown(data, lang=lang),
        RFormat.junit: lambda: r.render_junit(data),
        RFormat.json: lambda: r.render_json(data),
    }[format]()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- profiles
@profiles_app.command("list")
def profiles_list() -> None:
    """List the profiles shipped with the bench."""
    from rich.table import Table

    from conformance.profiles import load_profile_file, profile_files

    table = Table()
    for col in ("Id", "Version", "Services", "Requirements", "Title"):
        table.add_column(col)
    for f in profile_files():
        p, _ = load_profile_file(f)
        table.add_row(p.id, p.version, ",".join(p.services), str(len(p.requirements)), p.title)
    _console().print(table)


@profiles_app.command("show")
def profiles_show(profile_id: Annotated[str, typer.Argument(help="Profile id or path.")]) -> None:
    """Show a profile's requirements, rules and the scenarios that prove them."""
    from rich.table import Table

    from conformance.profiles import LintFailed, load
    from conformance.yamlio import DataError

    try:
        loaded = load(profile_id)
    except (LintFailed, DataError) as exc:
        fail(str(exc).splitlines()[0])
    p = loaded.profile
    console = _console()
    console.print(f"[bold]{p.id}[/] {p.version} — {p.title}")
    proof: dict[str, list[str]] = {}
    for sc in loaded.scenarios.values():
        for rid in sc.requirement_ids():
            proof.setdefault(rid, []).append(sc.id)
    table = Table()
    for col in ("Requirement", "Crit.", "Wave", "Rules", "Scenarios", "Title"):
        table.add_column(col, overflow="fold")
    for r in p.requirements:
        table.add_row(
            r.id, r.criticality, str(r.wave), ", ".join(r.rules), ", ".join(sorted(proof.get(r.id, []))) or "—", r.title
        )
    console.print(table)
    for w in loaded.warnings:
        console.print(f"[yellow]warning[/] {w}")


@profiles_app.command("lint")
def profiles_lint(path: Annotated[Path, typer.Argument(help="Profile or scenario YAML file, or a folder.")]) -> None:
    """Validate profile/scenario YAML files; errors as file:line: message, exit 2 if any."""
    from conformance.profiles import lint_path

    if not path.exists():
        fail(f"no such file or folder: {path}")
    errors, warnings = lint_path(path)
    err = _console(stderr=True)
    for w in warnings:
        err.print(f"warning: {w}", markup=False)
    for e in errors:
        err.print(str(e), markup=False)
    if errors:
        raise typer.Exit(2)
    _console().print(f"{path}: OK")


# ---------------------------------------------------------------- trust: waivers, signing, history
def _trust_options(
    waivers: Path | None, sign: Path | None, db: Path | None, no_db: bool, out: Path, console: Console
) -> dict[str, Any]:
    """Load waivers and the signing key and open the history *before* the run: a bad file is exit 2 now,
    not after minutes of testing. An unusable default history only warns (it must never cost a run)."""
    from conformance.trust.history import HistoryRecorder, default_db_path
    from conformance.yamlio import DataError

    opts: dict[str, Any] = {}
    if waivers is not None:
        from conformance.trust.waivers import WaiversError, load_waivers

        try:
            opts["waivers"] = load_waivers(waivers)
        except WaiversError as exc:
            more = f" (+{len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
            fail(f"invalid waivers file: {exc}{more}")
        except DataError as exc:
            fail(f"invalid waivers file: {exc}")
    if sign is not None:
        from conformance.trust.signing import KeyFileError, load_private_key

        try:
            opts["sign_key"] = load_private_key(sign)
        except KeyFileError as exc:
            fail(str(exc))
    path = None if no_db else (db or default_db_path())
    if path is not None:
        import sqlite3

        recorder = HistoryRecorder(path, results_path=(out / "results.json").resolve())
        try:
            recorder.check()
            opts["history"] = recorder
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                fail(f"--db {db}: cannot open the history database: {exc}")
            console.print(f"[yellow]warning[/] run history disabled ({path}: {exc}); use --db PATH or --no-db")
    return opts


def _trust_summary(console: Console, result: Any, opts: Any) -> None:
    for w in result.waivers:
        colour = {"applied": "cyan", "not_run": "yellow"}.get(w["status"], "red")
        console.print(
            f"waiver [{colour}]{w['status']}[/] {w['id']} (expires {w['expires']})"
            + (f" — {w['reason']}" if w.get("reason") else "")
        )
    if result.signature:
        console.print(f"signed (Ed25519, key {result.signature['key_id'][:16]}…)")
    if opts.history is not None and opts.history.error:
        console.print(f"[yellow]warning[/] {opts.history.error}")


class DiffFormat(str, Enum):
    table = "table"
    json = "json"
    md = "md"


class HistoryFormat(str, Enum):
    table = "table"
    json = "json"


def _read_results(path: Path) -> dict[str, Any]:
    """A results/v1 file or exit 2 with one line: commands that judge a file must not guess."""
    import json

    import jsonschema

    from conformance.yamlio import load_schema

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"no such file: {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        fail(f"{path}: not a readable results file: {exc}")
    try:
        jsonschema.validate(data, load_schema("results.schema.json"))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path)
        fail(f"{path}: not a segur-bench results/v1 file: {where + ': ' if where else ''}{exc.message[:200]}")
    return dict(data)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Private key file to create (PEM, mode 0600); OUT.pub alongside.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Create an Ed25519 key pair for --sign; give OUT.pub to whoever verifies your results."""
    from conformance.trust.signing import generate_key, key_id, write_keypair

    key = generate_key()
    try:
        pub = write_keypair(out, key, force=force)
    except FileExistsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    _console().print(f"private key {out} (keep it secret), public key {pub}, key id {key_id(key.public_key())}")


@app.command()
def verify(
    results: Annotated[Path, typer.Argument(help="results.json of a signed run.")],
    public_key: Annotated[
        Path | None, typer.Option(help="Trusted public key (PEM from keygen, or base64 raw); default: embedded key.")
    ] = None,
    allow_unsigned: Annotated[
        bool, typer.Option("--allow-unsigned", help="Check evidence hashes of an unsigned file without failing.")
    ] = False,
) -> None:
    """Check every evidence hash and the signature; exit 0 intact, 1 altered (or unsigned), 2 unreadable."""
    from conformance.trust.signing import KeyFileError, load_public_key, verify_results

    trusted = None
    if public_key is not None:
        try:
            trusted = load_public_key(public_key)
        except KeyFileError as exc:
            fail(str(exc))
    data = _read_results(results)
    outcome = verify_results(data, public_key=trusted, require_signature=not allow_unsigned)
    console = _console()
    for problem in outcome.problems:
        console.print(f"[red]ALTERED[/] {problem}", markup=True, highlight=False)
    if outcome.ok:
        who = ""
        if outcome.signed:
            who = f", signature valid (key {outcome.key_id})"
            if trusted is None:
                who += " — key taken from the file: pass --public-key to check who signed"
        console.print(f"[green]intact[/]: {outcome.evidence_checked} evidence hashes match{who}")
        raise typer.Exit(0)
    console.print(f"{results}: {len(outcome.problems)} problem(s)")
    raise typer.Exit(1)


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="results.json of the reference run.")],
    new: Annotated[Path, typer.Argument(help="results.json of the new run.")],
    format: Annotated[DiffFormat, typer.Option("--format", "-f")] = DiffFormat.table,
) -> None:
    """Requirements that regressed, improved, appeared or disappeared; exit 1 on any regression."""
    from conformance.trust import diff as d

    result = d.diff_results(_read_results(old), _read_results(new))
    if format is DiffFormat.json:
        sys.stdout.write(d.render_json(result))
    elif format is DiffFormat.md:
        sys.stdout.write(d.render_markdown(result))
    else:
        from rich.markup import escape
        from rich.table import Table

        console = _console()
        for note in result["notes"]:
            console.print(f"[yellow]note[/] {escape(note)}")
        colours = {"regressed": "red", "improved": "green", "appeared": "cyan", "disappeared": "yellow"}
        table = Table(title=f"segur-bench diff {result['old']['run_id']} → {result['new']['run_id']}")
        for col in ("Change", "Requirement", "Service", "Old", "New", "Title"):
            table.add_column(col, overflow="fold")
        for kind in d.KINDS:
            for e in result[kind]:
                table.add_row(
                    f"[{colours.get(kind, 'white')}]{kind}[/]",
                    escape(e["id"]),
                    escape(str(e["service"] or "")),
                    e["old"] or "—",
                    e["new"] or "—",
                    escape(str(e["title"] or "")),
                )
        console.print(table)
        console.print(", ".join(f"{k} {v}" for k, v in result["summary"].items()))
    raise typer.Exit(1 if result["regressions"] else 0)


@app.command()
def history(
    product: Annotated[str | None, typer.Option(help="Only this product.")] = None,
    db: Annotated[Path | None, typer.Option(help="History SQLite file (default: $SEGUR_BENCH_DB or XDG).")] = None,
    format: Annotated[HistoryFormat, typer.Option("--format", "-f")] = HistoryFormat.table,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the last N runs.")] = None,
) -> None:
    """Past runs per product with the maturity trend (↑ better, ↓ worse, = same, · first/incomplete)."""
    import json
    import sqlite3

    from conformance.trust.history import default_db_path, list_runs

    path = db or default_db_path()
    if path is None:
        fail(f"run history disabled ($SEGUR_BENCH_DB={os.environ.get('SEGUR_BENCH_DB', '')!r}); use --db PATH")
        return
    try:
        rows = list_runs(path, product=product, limit=limit)
    except FileNotFoundError:
        fail(f"no run history at {path} (runs record there unless --no-db)")
    except sqlite3.Error as exc:
        fail(f"{path}: not a readable segur-bench history: {exc}")
    if format is HistoryFormat.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"segur-bench history — {path}")
    for col in ("Product", "Profile", "Started", "Run", "State", "P/F/E/S/W", "Maturity", "Score", "Trend", "Services"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "complete" if r["complete"] else ("interrupted" if r["interrupted"] else "incomplete")
        score = r["maturity_score"]
        table.add_row(
            escape(r["product"]),
            escape(f"{r['profile_id']} {r['profile_version'] or ''}".strip()),
            r["started"],
            r["run_id"][:12],
            state + (" · signed" if r["signed"] else ""),
            f"{r['passed']}/{r['failed']}/{r['error']}/{r['skipped']}/{r['waived']}",
            "—" if r["maturity_level"] is None else str(r["maturity_level"]),
            "—" if score is None else f"{score:g}",
            r["trend"],
            " ".join(f"{s}:{m['level']}" for s, m in r["maturity_services"].items()),
        )
    console = _console()
    console.print(table)
    if not rows:
        console.print("no runs recorded" + (f" for product {product!r}" if product else ""))


# ---------------------------------------------------------------- pki (test PKI standing in for IGC-Santé)
class PkiUsage(str, Enum):
    server = "server"
    client = "client"
    signing = "signing"


class PkiKeyType(str, Enum):
    rsa = "rsa"
    ec = "ec"


@pki_app.command("init")
def pki_init(
    dir: Annotated[Path, typer.Option("--dir", help="CA folder (ca.pem, ca-key.pem).")] = Path("segur-bench-pki"),
    key_type: Annotated[PkiKeyType, typer.Option("--key-type", help="CA key: RSA 2048 or EC P-256.")] = PkiKeyType.rsa,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA.")] = False,
) -> None:
    """Create the bench's test CA (not IGC-Santé); the key file is written 0600."""
    from cryptography.hazmat.primitives import hashes

    from conformance.pki import PkiError, init_ca

    try:
        ca = init_ca(dir, key_type=key_type.value, force=force)
    except PkiError as exc:
        fail(str(exc))
    typer.echo(f"CA created in {dir}: {dir / 'ca.pem'} (certificate), {dir / 'ca-key.pem'} (private key, 0600)")
    typer.echo(f"subject {ca.cert.subject.rfc4514_string()}")
    typer.echo(f"SHA-256 {ca.cert.fingerprint(hashes.SHA256()).hex(':')}")


@pki_app.command("issue")
def pki_issue(
    cn: Annotated[str, typer.Option("--cn", help="Common name of the certificate holder.")],
    usage: Annotated[PkiUsage, typer.Option("--usage", help="server, client (ORG authentication) or signing.")],
    dir: Annotated[Path, typer.Option("--dir", help="Folder of the CA.")] = Path("segur-bench-pki"),
    out: Annotated[Path | None, typer.Option("--out", help="Output prefix (PREFIX.pem, PREFIX-key.pem).")] = None,
    san: Annotated[list[str] | None, typer.Option("--san", help="Extra DNS name or IP (server; repeatable).")] = None,
) -> None:
    """Issue a test certificate from the bench's CA; the key file is written 0600, never printed."""
    from cryptography.hazmat.primitives import hashes

    from conformance.pki import PkiError, issue_to_files

    try:
        cert_path, key_path, cert = issue_to_files(dir, cn, usage.value, out=out, sans=san or ())
    except PkiError as exc:
        fail(str(exc))
    typer.echo(f"{usage.value} certificate {cert_path}, private key {key_path} (0600)")
    typer.echo(f"subject {cert.subject.rfc4514_string()}")
    typer.echo(f"SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}")


def main() -> None:
    """Console entry point: one clear line and exit 2 for anything that is not a normal outcome."""
    try:
        rv = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageError as exc:
        print(f"segur-bench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("segur-bench: interrupted", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # click usage errors and anything unexpected
        # Typer may use click or its own vendored copy: recognise click's exceptions by shape.
        names = {cls.__name__ for cls in type(exc).__mro__}
        if "Abort" in names:
            print("segur-bench: aborted", file=sys.stderr)
            sys.exit(2)
        if "ClickException" in names and hasattr(exc, "format_message"):
            print(f"segur-bench: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(2)
        print(f"segur-bench: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
