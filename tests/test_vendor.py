"""The reference vendor honours the driver contract, INS identity vigilance and its fault catalogue.

Everything runs over real sockets: the vendor and the bench's INSi double are started on loopback
with ``BackgroundServer``, and the vendor's INSi calls are read back from the double's TrafficLog.
Each fault gets one assertion showing that it changes the behaviour it claims, and a guard test
fails when a fault is added to the catalogue without such an assertion.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.simulators.faults import FAULTS, parse_faults
from conformance.simulators.insi import build_fault, build_response, create_insi_app, load_identities
from conformance.simulators.server import BackgroundServer
from conformance.simulators.traffic import Received, TrafficLog
from conformance.simulators.vendor import _tls_options, create_vendor_app

TIMEOUT = 10
OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
EXT_RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
EXT_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
EXT_BIRTH_LIST = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"

# INSi test identities known to the double (conformance/data/insi_identities.yaml).
ECETINSI: dict[str, Any] = {
    "birth_name": "ECETINSI",
    "given_names": ["PIERRE-ALAIN"],
    "sex": "M",
    "birth_date": "2009-07-14",
    "birth_place": "63220",
}
ECETINSI_INS = "109076322083489"
ECETINSI_GIVEN = ["PIERRE-ALAIN", "MURIEL", "FLORIANT"]
ECETINSI_CARD: dict[str, Any] = {"carte_vitale": True, "nir": ECETINSI_INS, "birth_date": "2009-07-14"}
NOT_FOUND: dict[str, Any] = {
    "birth_name": "HOUILLES",
    "given_names": ["PIERRE"],
    "sex": "M",
    "birth_date": "1993-01-27",
}
SEVERAL: dict[str, Any] = {
    "birth_name": "DE VINCI",
    "given_names": ["LEONARDO"],
    "sex": "M",
    "birth_date": "2014-02-01",
}


# ---------------------------------------------------------------------------------------------------
# Harness


class Harness:
    """A running vendor wired to the shared INSi double, with the calls a bench driver makes."""

    def __init__(self, vendor: BackgroundServer, insi: BackgroundServer, traffic: TrafficLog) -> None:
        self.url = vendor.url
        self.app = vendor.app
        self.insi_url = insi.url + "/lps"
        self.traffic = traffic

    def act(self, action: str, params: dict[str, Any], *, action_id: str | None = None) -> dict[str, Any]:
        body = {"id": action_id or str(uuid.uuid4()), "action": action, "params": params}
        body["services"] = {"insi": self.insi_url}
        resp = requests.post(f"{self.url}/driver/actions", json=body, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        assert out["id"] == body["id"]
        return out

    def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        out = self.act("ins.fetch", params)
        assert out["status"] == "done", out
        return out["result"]

    def patient(self, params: dict[str, Any] = ECETINSI, *, qualify: bool = False) -> dict[str, Any]:
        """Fetch (and optionally qualify) an identity, then read its Patient over FHIR."""
        result = self.fetch(params)
        assert result["insi_cr"] == "00", result
        if qualify:
            out = self.act("ins.qualify", {"patient_id": result["patient"]["id"]})
            assert out["status"] == "done", out
        resp = requests.get(result["patient"]["fhir"], timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def insi_call(self, action_id: str) -> Received:
        item = self.traffic.wait(lambda r: r.facts.get("action_id") == action_id, timeout=5)
        assert item is not None, f"INSi received no call for action {action_id}"
        return item

    def search(self, query: str) -> dict[str, Any]:
        resp = requests.get(f"{self.url}/fhir/Patient?{query}", timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/fhir+json")
        return dict(resp.json())


@pytest.fixture(scope="module")
def insi() -> Iterator[tuple[BackgroundServer, TrafficLog]]:
    traffic = TrafficLog()
    with BackgroundServer(create_insi_app(traffic), name="insi") as server:
        yield server, traffic


@pytest.fixture
def make_vendor(insi: tuple[BackgroundServer, TrafficLog]) -> Iterator[Callable[..., Harness]]:
    started: list[BackgroundServer] = []

    def make(*faults: str) -> Harness:
        server = BackgroundServer(create_vendor_app(faults=parse_faults(faults)), name="vendor").start()
        started.append(server)
        return Harness(server, *insi)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def vendor(make_vendor: Callable[..., Harness]) -> Harness:
    return make_vendor()


def _ext(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension", []) if e.get("url") == url), None)


def _status(resource: dict[str, Any]) -> str | None:
    ext = _ext(resource, EXT_RELIABILITY)
    if ext is None:
        return None
    sub = next(e for e in ext["extension"] if e["url"] == "identityStatus")
    return str(sub["valueCoding"]["code"])


def _ins(resource: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (i for i in resource["identifier"] if i.get("system", "").startswith("urn:oid:1.2.250.1.213.1.4.")),
        None,
    )


def _official(resource: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in resource["name"] if n["use"] == "official")


class GatedInsi:
    """INSi stand-in that holds every call until ``release`` is set, then answers ECETINSI (CR 00),
    or ``fault`` when given: lets a test observe the vendor while a call is in flight."""

    def __init__(self, fault: bytes | None = None) -> None:
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        identity = next(i for i in load_identities() if i["key"] == "ECETINSI-PIERRE-ALAIN")
        self.answer = (500, fault) if fault else (200, build_response("00", identity))

    def endpoint(self, request: Request) -> Response:  # sync: Starlette runs it in a worker thread
        self.arrived.release()
        self.release.wait(TIMEOUT)
        status, body = self.answer
        return Response(body, status_code=status, media_type="application/soap+xml")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/lps", self.endpoint, methods=["POST"])])


def _free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/lps"


# ---------------------------------------------------------------------------------------------------
# Discovery and driver contract


def test_well_known_and_capabilities(vendor: Harness) -> None:
    doc = requests.get(f"{vendor.url}/.well-known/segur-bench", timeout=TIMEOUT).json()
    assert doc["fhir"] == f"{vendor.url}/fhir"
    assert doc["driver"] == f"{vendor.url}/driver"
    assert doc["product"] and doc["version"]
    caps = requests.get(f"{vendor.url}/driver/capabilities", timeout=TIMEOUT).json()
    assert set(caps) >= {"product", "version", "software_type", "actions"}
    assert {"ins.fetch", "ins.qualify"} <= set(caps["actions"])


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"action": "ins.fetch", "params": {}, "services": {}}',
        b'{"id": "a1", "params": {}, "services": {}}',
        b'{"id": "a1", "action": "ins.qualify", "params": [], "services": {}}',
        b'{"id": "a1", "action": "ins.qualify", "params": {}, "services": {}}',
        b'{"id": "a1", "action": "ins.fetch", "params": {"birth_name": "X"}, "services": {"insi": "http://x"}}',
        b'{"id": "a1", "action": "ins.fetch", "params": {"carte_vitale": true, "nir": "1"}, '
        b'"services": {"insi": "http://x"}}',
    ],
    ids=[
        "malformed",
        "empty",
        "not-object",
        "no-id",
        "no-action",
        "params-not-object",
        "no-patient-id",
        "missing-traits",
        "bad-nir",
    ],
)
def test_malformed_requests_are_400(vendor: Harness, body: bytes) -> None:
    resp = requests.post(
        f"{vendor.url}/driver/actions",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad-request"


def test_fetch_without_insi_url_is_400(vendor: Harness) -> None:
    body = {"id": "x", "action": "ins.fetch", "params": ECETINSI, "services": {}}
    resp = requests.post(f"{vendor.url}/driver/actions", json=body, timeout=TIMEOUT)
    assert resp.status_code == 400


def test_unsupported_action_is_422(vendor: Harness) -> None:
    body = {"id": "x", "action": "mss.send", "params": {}, "services": {}}
    resp = requests.post(f"{vendor.url}/driver/actions", json=body, timeout=TIMEOUT)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "unsupported-action"


def test_unknown_action_id_is_404(vendor: Harness) -> None:
    resp = requests.get(f"{vendor.url}/driver/actions/{uuid.uuid4()}", timeout=TIMEOUT)
    assert resp.status_code == 404


def test_action_outcome_is_kept_and_a_retry_does_not_run_twice(vendor: Harness) -> None:
    action_id = str(uuid.uuid4())
    first = vendor.act("ins.fetch", ECETINSI, action_id=action_id)
    assert first["status"] == "done"
    stored = requests.get(f"{vendor.url}/driver/actions/{action_id}", timeout=TIMEOUT).json()
    assert stored["status"] == "done" and stored["result"] == first["result"]
    seq = vendor.traffic.last_seq
    again = vendor.act("ins.fetch", ECETINSI, action_id=action_id)
    assert again["result"] == first["result"]
    assert vendor.traffic.wait(lambda r: r.facts.get("action_id") == action_id, timeout=0.3, after_seq=seq) is None


def test_failed_actions_answer_200_failed(vendor: Harness) -> None:
    out = vendor.act("ins.qualify", {"patient_id": "nobody"})
    assert out["status"] == "failed" and out["error"]["code"] == "unknown-patient"
    vendor.insi_url = _free_port_url()
    out = vendor.act("ins.fetch", ECETINSI)
    assert out["status"] == "failed" and out["error"]["code"] == "insi-unreachable"
    assert set(out["error"]) == {"code", "message"}


def test_insi_soap_fault_fails_the_action(vendor: Harness) -> None:
    gated = GatedInsi(fault=build_fault("siram_100", "Erreur", detail_code="desir_550", detail_text="IDAM inconnu"))
    gated.release.set()
    with BackgroundServer(gated.app(), name="insi-fault") as server:
        vendor.insi_url = server.url + "/lps"
        out = vendor.act("ins.fetch", ECETINSI)
    assert out["status"] == "failed" and out["error"]["code"] == "insi-fault"
    assert "desir_550" in out["error"]["message"]


def test_a_pending_insi_call_blocks_neither_the_server_nor_a_retry(vendor: Harness) -> None:
    gated = GatedInsi()
    action_id = str(uuid.uuid4())
    body = {"id": action_id, "action": "ins.fetch", "params": ECETINSI}
    with BackgroundServer(gated.app(), name="insi-gated") as server, ThreadPoolExecutor(2) as pool:
        body["services"] = {"insi": server.url + "/lps"}
        pending = pool.submit(requests.post, f"{vendor.url}/driver/actions", json=body, timeout=TIMEOUT)
        assert gated.arrived.acquire(timeout=TIMEOUT)
        try:
            caps = requests.get(f"{vendor.url}/driver/capabilities", timeout=2)
            assert caps.status_code == 200
            stored = requests.get(f"{vendor.url}/driver/actions/{action_id}", timeout=2).json()
            assert stored["status"] == "accepted"
            retry = requests.post(f"{vendor.url}/driver/actions", json=body, timeout=2)
            assert retry.status_code == 202 and retry.json()["status"] == "accepted"
        finally:
            gated.release.set()
        done = pending.result(timeout=TIMEOUT)
    assert done.status_code == 200 and done.json()["status"] == "done"


def test_concurrent_fetches_of_one_person_make_one_patient(vendor: Harness) -> None:
    gated = GatedInsi()
    with BackgroundServer(gated.app(), name="insi-gated") as server, ThreadPoolExecutor(4) as pool:
        vendor.insi_url = server.url + "/lps"
        futures = [pool.submit(vendor.fetch, ECETINSI) for _ in range(4)]
        for _ in futures:
            assert gated.arrived.acquire(timeout=TIMEOUT)
        gated.release.set()
        ids = {f.result(timeout=TIMEOUT)["patient"]["id"] for f in futures}
    assert len(ids) == 1


def test_bench_tls_material_is_handed_to_requests_as_private_temporary_files() -> None:
    services = {"ca_pem": "CA", "pki": {"cert_pem": "CERT", "key_pem": "KEY"}}
    with _tls_options(services) as tls:
        cert, key = tls["cert"]
        for path, text in ((tls["verify"], "CA"), (cert, "CERT"), (key, "KEY")):
            assert Path(path).read_text(encoding="utf-8") == text
            assert os.stat(path).st_mode & 0o077 == 0
    assert not os.path.exists(key)
    with _tls_options({"insi": "http://x"}) as tls:
        assert tls == {}


def test_internal_errors_never_leak_a_traceback(vendor: Harness) -> None:
    def boom(query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        raise RuntimeError("secret detail")

    vendor.app.state.vendor.search = boom
    resp = requests.get(f"{vendor.url}/fhir/Patient?family=X", timeout=TIMEOUT)
    assert resp.status_code == 500
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert "secret detail" not in resp.text and "Traceback" not in resp.text


# ---------------------------------------------------------------------------------------------------
# INS behaviour of the conformant vendor


def test_fetch_calls_insi_as_the_wsdl_says(vendor: Harness) -> None:
    action_id = str(uuid.uuid4())
    out = vendor.act("ins.fetch", ECETINSI, action_id=action_id)
    assert out["result"]["insi_cr"] == "00"
    call = vendor.insi_call(action_id)
    assert call.facts["soap_version"] == "1.2"
    assert (call.header("content-type") or "").startswith("application/soap+xml")
    assert call.facts["operation"] == "traits"
    assert call.facts["contexts"]["lps"] is not None and call.facts["contexts"]["bam"] is not None
    assert call.facts["traits"]["birth_name"] == "ECETINSI"


def test_recup_identity_is_stored_verbatim_without_exposing_the_ins(vendor: Harness) -> None:
    patient = vendor.patient()
    assert _status(patient) == "RECUP"
    assert _ins(patient) is None  # rule 28: traits only until qualified
    name = _official(patient)
    assert name["family"] == "ECETINSI"
    assert name["given"] == ["PIERRE-ALAIN"]
    assert _ext(name, EXT_BIRTH_LIST) == {"url": EXT_BIRTH_LIST, "valueString": " ".join(ECETINSI_GIVEN)}
    assert patient["gender"] == "male" and patient["birthDate"] == "2009-07-14"
    place = _ext(patient, EXT_BIRTH_PLACE)
    assert place is not None
    assert place["valueAddress"]["extension"][0]["valueCoding"]["code"] == "63220"


def test_qualified_identity_exposes_the_ins(vendor: Harness) -> None:
    patient = vendor.patient(qualify=True)
    assert _status(patient) == "QUAL"
    ins = _ins(patient)
    assert ins is not None
    assert ins["use"] == "official"
    assert ins["system"] == f"urn:oid:{OID_NIR}" and ins["value"] == ECETINSI_INS
    assert ins["type"]["coding"][0]["code"] == "INS-NIR"
    assert patient["meta"]["profile"] == ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"]


def test_nia_is_exposed_under_the_nia_oid(vendor: Harness) -> None:
    nia = {"birth_name": "PROVISOIRE", "given_names": ["MATRICULE"], "sex": "M", "birth_date": "2009-07-01"}
    ins = _ins(vendor.patient(nia, qualify=True))
    assert ins is not None and ins["system"] == f"urn:oid:{OID_NIA}"
    assert ins["type"]["coding"][0]["code"] == "INS-NIA"


def test_insi_result_codes_01_and_02_store_nothing(vendor: Harness) -> None:
    assert vendor.fetch(NOT_FOUND) == {"insi_cr": "01"}
    assert vendor.fetch(SEVERAL) == {"insi_cr": "02"}


def test_refetching_a_person_updates_the_same_patient(vendor: Harness) -> None:
    first = vendor.fetch(ECETINSI)["patient"]
    vendor.act("ins.qualify", {"patient_id": first["id"]})
    second = vendor.fetch(ECETINSI)["patient"]
    assert second["id"] == first["id"] and second["identity_status"] == "QUAL"


def test_carte_vitale_uses_the_carte_vitale_operation(vendor: Harness) -> None:
    action_id = str(uuid.uuid4())
    out = vendor.act("ins.fetch", ECETINSI_CARD, action_id=action_id)
    assert out["result"]["insi_cr"] == "00", out
    assert vendor.insi_call(action_id).facts["operation"] == "carte-vitale"


def test_fhir_read_and_search(vendor: Harness) -> None:
    patient = vendor.patient(qualify=True)
    bundle = vendor.search(f"identifier=urn:oid:{OID_NIR}|{ECETINSI_INS}")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    entry = bundle["entry"][0]
    assert entry["resource"]["id"] == patient["id"]
    assert entry["fullUrl"] == f"{vendor.url}/fhir/Patient/{patient['id']}"
    assert entry["search"] == {"mode": "match"}
    assert vendor.search(f"identifier={ECETINSI_INS}")["total"] == 1
    assert vendor.search(f"identifier=urn:oid:{OID_NIA}|{ECETINSI_INS}")["total"] == 0
    assert vendor.search("identifier=urn:oid:1.2.250.1.213.1.4.8|275126322074974")["total"] == 0
    assert vendor.search("family=ecetinsi&birthdate=2009-07-14")["total"] == 1
    assert vendor.search("family=ecetinsi&birthdate=2001-01-01")["total"] == 0
    missing = requests.get(f"{vendor.url}/fhir/Patient/unknown", timeout=TIMEOUT)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert missing.json()["resourceType"] == "OperationOutcome"
    meta = requests.get(f"{vendor.url}/fhir/metadata", timeout=TIMEOUT).json()
    assert meta["resourceType"] == "CapabilityStatement" and meta["fhirVersion"] == "4.0.1"


def test_a_recup_identity_cannot_be_found_by_its_ins(vendor: Harness) -> None:
    vendor.patient()
    assert vendor.search(f"identifier=urn:oid:{OID_NIR}|{ECETINSI_INS}")["total"] == 0


# ---------------------------------------------------------------------------------------------------
# Faults: each changes the behaviour it claims


def _fault_bad_key(v: Harness) -> None:
    ins = _ins(v.patient(qualify=True))
    assert ins is not None and ins["value"][:13] == ECETINSI_INS[:13] and ins["value"] != ECETINSI_INS


def _fault_bad_oid(v: Harness) -> None:
    ins = _ins(v.patient(qualify=True))
    assert ins is not None and ins["system"] == "urn:oid:1.2.250.1.213.1.4.2" and ins["value"] == ECETINSI_INS


def _fault_missing_birth_place(v: Harness) -> None:
    assert _ext(v.patient(), EXT_BIRTH_PLACE) is None


def _fault_sex_mismatch(v: Harness) -> None:
    assert v.patient()["gender"] == "female"


def _fault_first_given_mismatch(v: Harness) -> None:
    name = _official(v.patient())
    assert name["given"] == ["FLORIANT"]
    assert _ext(name, EXT_BIRTH_LIST)["valueString"] == " ".join(ECETINSI_GIVEN)  # type: ignore[index]


def _fault_used_name_as_birth_name(v: Harness) -> None:
    assert _official(v.patient())["family"] == "MARTIN"
    assert _official(v.patient({**ECETINSI, "used_name": "DUPONT"}))["family"] == "DUPONT"


def _fault_no_status(v: Harness) -> None:
    assert _ext(v.patient(), EXT_RELIABILITY) is None


def _fault_unqualified_ins(v: Harness) -> None:
    patient = v.patient()
    assert _status(patient) == "RECUP" and _ins(patient) is not None


def _fault_insi_soap11(v: Harness) -> None:
    action_id = str(uuid.uuid4())
    v.act("ins.fetch", ECETINSI, action_id=action_id)
    call = v.insi_call(action_id)
    assert call.facts["soap_version"] == "1.1"
    assert (call.header("content-type") or "").startswith("text/xml")


def _fault_insi_no_context(v: Harness) -> None:
    action_id = str(uuid.uuid4())
    v.act("ins.fetch", ECETINSI, action_id=action_id)
    assert v.insi_call(action_id).facts["contexts"] == {"lps": None, "bam": None}


def _fault_no_carte_vitale(v: Harness) -> None:
    action_id = str(uuid.uuid4())
    v.act("ins.fetch", {**ECETINSI_CARD, **ECETINSI}, action_id=action_id)
    assert v.insi_call(action_id).facts["operation"] == "traits"


def _fault_search_ignores_identifier(v: Harness) -> None:
    v.patient(qualify=True)
    assert v.search(f"identifier=urn:oid:{OID_NIR}|{ECETINSI_INS}")["total"] > 1
    assert v.search("identifier=urn:oid:1.2.250.1.213.1.4.8|275126322074974")["total"] > 0


FAULT_EFFECTS: dict[str, Callable[[Harness], None]] = {
    "ins.bad-key": _fault_bad_key,
    "ins.bad-oid": _fault_bad_oid,
    "ins.missing-birth-place": _fault_missing_birth_place,
    "ins.sex-mismatch": _fault_sex_mismatch,
    "ins.first-given-mismatch": _fault_first_given_mismatch,
    "ins.used-name-as-birth-name": _fault_used_name_as_birth_name,
    "ins.no-status": _fault_no_status,
    "ins.unqualified-ins": _fault_unqualified_ins,
    "ins.insi-soap11": _fault_insi_soap11,
    "ins.insi-no-context": _fault_insi_no_context,
    "ins.no-carte-vitale": _fault_no_carte_vitale,
    "ins.search-ignores-identifier": _fault_search_ignores_identifier,
}


def test_every_fault_has_an_effect_test() -> None:
    # DMP faults have theirs in tests/test_dmp_simulator.py (they act on the DMP client side).
    assert set(FAULT_EFFECTS) == {name for name, f in FAULTS.items() if f.service == "ins"}


@pytest.mark.parametrize("fault", sorted(FAULT_EFFECTS))
def test_fault_changes_what_it_claims(make_vendor: Callable[..., Harness], fault: str) -> None:
    FAULT_EFFECTS[fault](make_vendor(fault))


def test_fault_registry_is_consistent() -> None:
    known: dict[str, set[str]] = {}
    for service in ("ins", "dmp"):
        profile = yaml.safe_load(
            resources.files("conformance").joinpath(f"profiles/segur-v2-{service}.yaml").read_text(encoding="utf-8")
        )
        known[service] = {r["id"] for r in profile["requirements"]}
    for name, fault in FAULTS.items():
        assert name == fault.name and name.startswith(fault.service + ".")
        assert fault.description and "\n" not in fault.description
        assert fault.requirements and set(fault.requirements) <= known[fault.service], name


def test_parse_faults_rejects_unknown_names() -> None:
    assert parse_faults(["ins.bad-key,ins.no-status", " "]) == {"ins.bad-key", "ins.no-status"}
    with pytest.raises(ValueError, match=r"unknown fault: ins\.nope; see --list-faults"):
        parse_faults(["ins.nope"])
