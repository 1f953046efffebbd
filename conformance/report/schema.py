"""Validation of a results/v1 document against the JSON Schema shipped in the package.

``segur-bench report RESULTS.json`` and ``verify`` read files that may have been edited or truncated;
they validate first so that a bad file is one clear line (exit 2), not a template traceback.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from conformance.report._yamlpos import pointer

RESULTS_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "results.schema.json"


@lru_cache(maxsize=1)
def results_validator() -> Draft202012Validator:
    """The compiled validator, built once (schema parsing costs more than validating a small run)."""
    return Draft202012Validator(json.loads(RESULTS_SCHEMA_PATH.read_text(encoding="utf-8")))


def validate_results(data: Any) -> list[str]:
    """Return ``"/json/pointer: message"`` for every schema violation; empty when the file is valid."""
    errors = sorted(results_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{pointer(e.absolute_path) or '/'}: {e.message}" for e in errors]
