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
    )
    progress, handle = _progress_handler(console)
    try:
        result, code = run_session(target, loaded, opts, on_event=handle, operator=operator)
    finally:
        progress.stop()
    _summary_table(console, result, out)
    if result.interrupted:
        # Everything is written; worker threads may still sit in an exchange that will time out.
        # Leave now rather than wait for them at interpreter exit.
        console.print(f"interrupted: partial results in {out}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    return code


@app.command()
def run(
    target: Annotated[str, typer.Option("--target", "-t", help="Vendor base URL or TOML target file.")],
    profile: Annotated[str, typer.Option(help="Profile id or YAML path.")] = "segur-v2-ins",
    service: Annotated[str | None, typer.Option(help="Comma-separated services to run (ins,dmp,…).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for results and reports.")] = Path("segur-bench-results"),
    junit: Annotated[Path | None, typer.Option(help="Also write JUnit XML here.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Scenarios run concurrently.")] = 4,
    fail_on: Annotated[FailOn, typer.Option(help="What makes the exit code 1.")] = FailOn.mandatory,
    lang: Annotated[str, typer.Option(help="Report language: fr or en.")] = "fr",
    await_timeout: Annotated[float | None, typer.Option(help="Seconds to wait for vendor traffic.")] = None,
) -> None:
    """Run a profile against a vendor target; exit 0 conformant, 1 not, 2 could not run."""
    raise typer.Exit(_do_run(target, profile, service, out, junit, workers, fail_on, lang, await_timeout))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("segur-bench-demo"),
    fault: Annotated[list[str] | None, typer.Option(help="Inject a fault in the reference vendor.")] = None,
    lang: Annotated[str, typer.Option(help="Report language: fr or en.")] = "fr",
    workers: Annotated[int, typer.Option(min=1, max=64)] = 4,
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
        code = _do_run(server.url, "segur-v2-ins", None, out, None, workers, FailOn.mandatory, lang, 30.0)
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


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to validate.")],
    kind: Annotated[VKind, typer.Option(help="File kind.")] = VKind.auto,
    format: Annotated[VFormat, typer.Option("--format", "-f", help="Output format.")] = VFormat.table,
    out: Annotated[Path | None, typer.Option(help="Write the output to this file.")] = None,
) -> None:
    """Validate FHIR Patient JSON and CDA files offline (INS rules); exit 1 if any file fails."""
    import json

    from conformance.validate import validate_paths

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {missing[0]}")
    report = validate_paths(paths, kind.value)
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
        from conformance.simulators.insi import create_insi_app
        from conformance.simulators.traffic import TrafficLog

        app_ = create_insi_app(TrafficLog())
        label = "INSi simulator (POST SOAP 1.2 to /lps)"
    try:
        server = BackgroundServer(app_, host=host, port=port, name=what.value).start()
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except RuntimeError as exc:
        fail(str(exc))
    console = _console()
    console.print(
        f"{label} listening on {server.url}" + (f" with faults {', '.join(sorted(faults))}" if faults else "")
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
        import click

        if isinstance(exc, click.exceptions.Abort):
            print("segur-bench: aborted", file=sys.stderr)
            sys.exit(2)
        if isinstance(exc, click.ClickException):
            print(f"segur-bench: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(2)
        print(f"segur-bench: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
