"""Pure checks: artefact in, findings out. Importing this package fills the registry."""

from conformance.checks import cda, cda_ins, dmp, fhir, ins, insi, mhd, vihf, xds  # noqa: F401  (registration side effect)
from conformance.checks.registry import CHECKS, RULES, CheckInfo, check, run_check

__all__ = ["CHECKS", "RULES", "CheckInfo", "check", "run_check"]
