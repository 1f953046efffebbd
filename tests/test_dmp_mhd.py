"""The reference vendor's MHD (PDSm ITI-65) path: its Bundle passes the MHD checks, a replacement
relates to the previous version, each metadata/CDA fault shows through MHD with the requirement it
declares, and a vendor that refuses ``transport: mhd`` (422) has that scenario skipped, never failed.

The vendor runs in-process against the DMP double on a real socket (``tests.test_dmp_simulator.Env``),
so what is judged is what goes over the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import requests

from conformance.checks.registry import CHECKS, rule_matches, run_check
from conformance.engine.artefacts import check_arguments, received_part
from conformance.model import Finding
from conformance.simulators.dmp import STATUS_DEPRECATED
from conformance.simulators.faults import FAULTS
from conformance.simulators.mhd_builder import fhir_instant, fhir_system
from conformance.simulators.vendor_dmp import DmpSide
from tests.test_dmp_simulator import Env

MHD = {"kind": "CR-CONS", "confidentiality": "N", "transport": "mhd"}


class MhdEnv(Env):
    """The DMP double with its MHD base given to the vendor too (``services.mhd``)."""

    def __init__(self, faults: frozenset[str] = frozenset()) -> None:
        super().__init__(faults)
        self.services["mhd"] = f"{self.server.url}/fhir"


@pytest.fixture(scope="module")
def env() -> Iterator[MhdEnv]:
    e = MhdEnv()
    yield e
    e.close()


def _judge(item: Any, check_name: str, **args: Any) -> list[Finding]:
    """Run a registered check on a received request the way the engine does (its part, its extras)."""
    info = CHECKS[check_name]
    part = received_part(info.kind, item)
    assert not isinstance(part, Finding), part
    artefact, extra = part
    return run_check(check_name, artefact, **check_arguments(info.func, extra, args))


def _errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity == "error"}


# ------------------------------------------------------------------------------------------- conformant
def test_vendor_mhd_bundle_passes_mhd_checks(env: MhdEnv) -> None:
    result = env.act("dmp.publish", "mhd-publish", document=MHD)
    assert set(result["document"]) == {"unique_id", "entry_uuid", "set_id", "version"}  # same shape as XDS
    item = env.last("iti-65")
    assert item.header("X-Segur-Bench-Action") == "mhd-publish"
    assert (item.header("Content-Type") or "").startswith("application/fhir+json")
    bundle = item.facts["bundle"]
    assert bundle["type"] == "transaction"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["List", "DocumentReference", "Binary"]
    docref = bundle["entry"][1]["resource"]
    cda = base64.b64decode(bundle["entry"][2]["resource"]["data"])
    # FHIR hash = base64 of the SHA-1 bytes; size in bytes; masterIdentifier = the CDA id.
    assert docref["content"][0]["attachment"]["hash"] == base64.b64encode(hashlib.sha1(cda).digest()).decode()
    assert docref["content"][0]["attachment"]["size"] == len(cda)
    root, _, ext = result["document"]["unique_id"].partition("^")
    assert docref["masterIdentifier"] == {"system": f"urn:oid:{root}", "value": ext}
    assert docref["subject"]["identifier"] == {
        "system": f"urn:oid:{env.identity['oid']}",
        "value": env.identity["matricule"],
    }
    assert "relatesTo" not in docref
    assert _judge(item, "mhd.bundle") == []
    assert _judge(item, "mhd.cda") == []
    assert _errors(_judge(item, "cda.header")) == set()
    assert _errors(_judge(item, "ins.cda")) == set()


def test_mhd_replacement_relates_to_the_previous_version(env: MhdEnv) -> None:
    first = env.act("dmp.publish", "mhd-p1", document=MHD)["document"]
    second = env.act("dmp.replace", "mhd-r1", document=MHD, replaces=first["entry_uuid"])
    assert second["replaced"] == first and second["document"]["version"] == first["version"] + 1
    assert second["document"]["set_id"] == first["set_id"]
    item = env.last("iti-65")
    [rel] = item.facts["bundle"]["entry"][1]["resource"]["relatesTo"]
    assert rel["code"] == "replaces" and rel["target"]["reference"].startswith("DocumentReference/")
    assert _judge(item, "mhd.bundle", replaces=first["entry_uuid"]) == []
    assert _judge(item, "mhd.cda") == []
    # The double superseded the previous version: ITI-67 shows it next to the new current one.
    assert env.store.get(first["entry_uuid"]) is not None
    assert env.store.get(first["entry_uuid"]).status == STATUS_DEPRECATED  # type: ignore[union-attr]
    ident = f"urn:oid:{env.identity['oid']}|{env.identity['matricule']}"
    found = requests.get(f"{env.server.url}/fhir/DocumentReference", params={"patient.identifier": ident}, timeout=10)
    statuses = {e["resource"]["identifier"][0]["value"]: e["resource"]["status"] for e in found.json()["entry"]}
    assert statuses[first["entry_uuid"]] == "superseded"
    assert statuses[second["document"]["entry_uuid"]] == "current"


def test_xds_remains_the_default_transport(env: MhdEnv) -> None:
    env.act("dmp.publish", "xds-default", document={"kind": "CR-CONS"})
    assert env.last().facts["operation"] == "iti-41"


@pytest.mark.parametrize(
    ("document", "services", "reason"),
    [
        ({"transport": "ftp"}, {"mhd": "http://x/fhir"}, "transport must be xds or mhd"),
        ({"transport": "mhd"}, {}, "services.mhd"),
        ({"transport": "mhd"}, {"mhd": "ftp://x"}, "services.mhd"),
    ],
)
def test_transport_parameter_is_validated(document: dict[str, Any], services: dict[str, Any], reason: str) -> None:
    why = DmpSide.validate(
        "dmp.publish", {"patient": {"patient_id": "p"}, "document": document}, {"dmp": "http://x/dmp", **services}
    )
    assert why is not None and reason in why


def test_fhir_encodings_of_the_metadata() -> None:
    assert fhir_system("2.16.840.1.113883.6.1") == "http://loinc.org"
    assert fhir_system("1.2.250.1.213.1.1.4.1") == (
        "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
    )
    assert fhir_system("1.2.3.4") == "urn:oid:1.2.3.4"
    assert fhir_instant("20240115093000") == "2024-01-15T09:30:00Z"
    assert fhir_instant("202401150930") == "2024-01-15T09:30:00Z"
    assert fhir_instant("20240115") == "2024-01-15"
    assert fhir_instant(None) is None


# ------------------------------------------------------------------------------------------- faults
# Faults of the shared metadata model / CDA / replacement: seen through MHD by this rule.
MHD_FAULT_RULES = {
    "dmp.metadata-type-mismatch": ("mhd.cda", "MHD.CDA.TYPE"),
    "dmp.wrong-class-code": ("mhd.bundle", "MHD.CLASS-TYPE"),
    "dmp.bad-confidentiality": ("mhd.bundle", "MHD.VS.CONFIDENTIALITY"),
    "dmp.missing-ins": ("mhd.bundle", "DMP.PATIENTID"),
    "dmp.wrong-hash": ("mhd.bundle", "MHD.HASH"),
    "dmp.cda-missing-custodian": ("cda.header", "CDA.CUSTODIAN"),
    "dmp.cda-bad-language": ("cda.header", "CDA.LANGUAGE"),
    "dmp.replace-without-rplc": ("mhd.bundle", "DMP.RPLC"),
}
# VIHF, SOAP and ITI-43 faults concern XDS.b only: the MHD submission is conformant under them.
XDS_ONLY = sorted(name for name, f in FAULTS.items() if f.service == "dmp" and name not in MHD_FAULT_RULES)


def _mhd_requirements(rules: set[str]) -> set[str]:
    """Requirements of segur-v2-dmp whose rules match ``rules`` (what the engine would fail)."""
    from conformance.profiles import load

    profile = load("segur-v2-dmp").profile
    return {r.id for r in profile.requirements if any(rule_matches(rule, r.rules) for rule in rules)}


def _submissions(fault: str) -> tuple[Any, Any, str]:
    """(publish ITI-65, replace ITI-65, replaced entryUUID) of a vendor carrying ``fault``."""
    e = MhdEnv(frozenset({fault}))
    try:
        first = e.act("dmp.publish", "p1", document=MHD)["document"]
        e.act("dmp.replace", "r1", document=MHD, replaces=first["entry_uuid"])
        items = [i for i in e.traffic.items("dmp") if i.facts.get("operation") == "iti-65"]
        assert len(items) == 2
        return items[0], items[1], first["entry_uuid"]
    finally:
        e.close()


def _all_errors(publish: Any, replace: Any, previous: str) -> set[str]:
    found: set[str] = set()
    for item, args in ((publish, {}), (replace, {"replaces": previous})):
        found |= _errors(_judge(item, "mhd.bundle", **args))
        found |= _errors(_judge(item, "mhd.cda"))
        found |= _errors(_judge(item, "cda.header"))
    return found


@pytest.mark.parametrize("fault", sorted(MHD_FAULT_RULES))
def test_metadata_fault_shows_through_mhd_with_its_requirements(fault: str) -> None:
    check_name, rule = MHD_FAULT_RULES[fault]
    publish, replace, previous = _submissions(fault)
    item, args = (replace, {"replaces": previous}) if fault == "dmp.replace-without-rplc" else (publish, {})
    assert rule in _errors(_judge(item, check_name, **args))
    # Through MHD the fault fails only requirements it declares (the e2e matrix proves the whole set).
    failed = _mhd_requirements(_all_errors(publish, replace, previous))
    assert failed and failed <= set(FAULTS[fault].requirements), failed


@pytest.mark.parametrize("fault", XDS_ONLY)
def test_xds_only_faults_leave_the_mhd_submission_conformant(fault: str) -> None:
    publish, replace, previous = _submissions(fault)
    assert _all_errors(publish, replace, previous) == set()


def test_every_dmp_fault_is_classified_for_mhd() -> None:
    assert set(MHD_FAULT_RULES) | set(XDS_ONLY) == {n for n, f in FAULTS.items() if f.service == "dmp"}
    assert XDS_ONLY == [
        "dmp.retrieve-wrong-repository",
        "dmp.soap11",
        "dmp.vihf-expired",
        "dmp.vihf-missing-attribute",
        "dmp.vihf-unsigned",
    ]


# ------------------------------------------------------------------------------------------- 422
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def _refusing_mhd(inner: ASGIApp) -> ASGIApp:
    """The reference vendor, except that it answers 422 to any DMP action asked over MHD (XDS-only product)."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/driver/actions"):
            await inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        request = json.loads(body or b"{}")
        if ((request.get("params") or {}).get("document") or {}).get("transport") == "mhd":
            answer = json.dumps(
                {"id": request.get("id"), "error": {"code": "unsupported", "message": "transport mhd unsupported"}}
            ).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
            await send({"type": "http.response.start", "status": 422, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await inner(scope, replay, send)

    return app


def test_vendor_refusing_mhd_gets_the_mhd_scenario_skipped(tmp_path: Path) -> None:
    from conformance.engine.session import SessionOptions, run_session
    from conformance.engine.target import Target
    from conformance.profiles import load
    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    loaded = load("segur-v2-dmp")
    loaded.scenarios = {k: v for k, v in loaded.scenarios.items() if k == "dmp-mhd-publish"}
    vendor = BackgroundServer(_refusing_mhd(create_vendor_app()), name="vendor").start()
    try:
        target = Target(base=vendor.url, endpoints={"fhir": f"{vendor.url}/fhir", "driver": f"{vendor.url}/driver"})
        result, _code = run_session(
            target, loaded, SessionOptions(out_dir=tmp_path, workers=1, await_timeout=20, formats=("json",))
        )
    finally:
        vendor.stop()
    outcomes = [c for r in result.requirements for c in r.checks if c.scenario == "dmp-mhd-publish"]
    assert outcomes and {c.status for c in outcomes} == {"skipped"}
    assert all("transport mhd unsupported" in (c.reason or "") for c in outcomes)
    assert not [r for r in result.requirements if r.status in ("failed", "error")]
