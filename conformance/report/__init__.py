"""Reports of a run: maturity scoring and renderers (HTML, Markdown, JUnit XML, JSON, PDF).

The report layer only reads the results/v1 document (a dict), never the engine's objects, so a report
can be re-rendered later from a ``results.json`` alone (``segur-bench report``).
"""

from conformance.report.maturity import (
    MaturityModelError,
    compute_maturity,
    load_maturity_model,
    validate_maturity_model,
)
from conformance.report.render import (
    render_html,
    render_json,
    render_junit,
    render_markdown,
    render_pdf,
    write_reports,
)
from conformance.report.schema import validate_results

__all__ = [
    "MaturityModelError",
    "compute_maturity",
    "load_maturity_model",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_pdf",
    "validate_maturity_model",
    "validate_results",
    "write_reports",
]
