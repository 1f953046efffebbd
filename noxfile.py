"""Sessions: tests, lint, bench. Everything the project needs is installed from pyproject.toml."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Install the package with its test extras in .nox/tests and run pytest (2 workers)."""
    _venv(session, "tests", ".[test,schematron,pdf]")
    args = session.posargs or ["-n", "2", "-q", "-p", "no:cacheprovider"]
    session.run(".nox/tests/bin/python", "-m", "pytest", *args, external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy over the package and the tests."""
    _venv(session, "lint", ".[test,lint]")
    session.run(".nox/lint/bin/python", "-m", "ruff", "check", "conformance", "tests", "noxfile.py", external=True)
    session.run(".nox/lint/bin/python", "-m", "mypy", "conformance", external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Print performance figures (not asserted): demo wall time, --help start-up, validation throughput."""
    _venv(session, "bench", ".[test,schematron]")
    session.run(".nox/bench/bin/python", "benchmarks/run.py", *session.posargs, external=True)


def _venv(session: nox.Session, name: str, spec: str) -> None:
    # A plain venv per session, created by the running interpreter: no other tool needed on the machine.
    import os
    import sys

    path = f".nox/{name}"
    if not os.path.exists(f"{path}/bin/python"):
        session.run(sys.executable, "-m", "venv", path, external=True)
    session.run(f"{path}/bin/python", "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
    session.run(f"{path}/bin/python", "-m", "pip", "install", "-q", "-e", spec, external=True)
