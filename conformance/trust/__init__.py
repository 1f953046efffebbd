"""Trust and CI semantics of a run: signatures, waivers, run-to-run diffs and run history.

Each module is pure (data in, data out) except ``history`` which owns one SQLite file; the CLI and the
session wire them. An auditor must be able to check a results file with ``verify`` alone, so nothing
here depends on the engine.
"""
