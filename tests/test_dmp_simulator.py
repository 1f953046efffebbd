"""The DMP double: MTOM parsing of a vendor-built ITI-41, storage, stored queries, retrieve, MHD, hostile bodies.

The reference vendor's DMP side runs in-process against the double on a real socket, so what is
parsed here is exactly what a vendor sends over the wire (multipart/related, XOP, signed VIHF).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests
from lxml import etree

import conformance.checks  # noqa: F401  (fills the check registry)
from conformance.checks.registry import run_check
from conformance.engine.artefacts import received_part
from conformance.model import Finding
from conformance.parsing import InputError, parse_xml
from conformance.pki import RunPki, ephemeral_run_pki
from conformance.simulators import dmp
from conformance.simulators.insi import load_identities
from conformance.simulators.server import BackgroundServer
from conformance.simulators.traffic import Received, TrafficLog
from conformance.simulators.vendor import ReferenceVendor, StoredPatient

RIM = dmp.NS_RIM


@functools.cache
def _run_pki() -> RunPki:
    """One test PKI for the module: RSA key generation dominates the cost of an environment."""
    return ephemeral_run_pki()


class Env:
    """A DMP double on loopback and an in-process reference vendor with one qualified patient."""

    def __init__(self, faults: frozenset[str] = frozenset()) -> None:
        self.traffic = TrafficLog()
        self.store = dmp.DmpStore()
        self.server = BackgroundServer(dmp.create_dmp_app(self.traffic, store=self.store), name="dmp").start()
        self.pki = _run_pki()
        self.services: dict[str, Any] = {"dmp": f"{self.server.url}/dmp", "pki": self.pki.services()}
        self.vendor = ReferenceVendor(seed=False, faults=faults)
        ident = next(i for i in load_identities() if i["key"] == "NESSI-MICHELANGELO")
        self.identity = ident
        self.patient: StoredPatient = self.vendor.patients.create(
            status="QUAL",
            birth_name=ident["birth_name"],
            given_names=ident["given_names"],
            first_given_name=ident["given_names"][0],
            sex=ident["sex"],
            birth_date=ident["birth_date"],
            birth_place=ident.get("birth_place"),
            matricule=ident["matricule"],
            oid=ident["oid"],
        )
        self.handlers = self.vendor.dmp.handlers()

    def act(self, action: str, action_id: str, **params: Any) -> dict[str, Any]:
        params.setdefault("patient", {"patient_id": self.patient.id})
        return self.handlers[action](params, self.services, action_id, "http://vendor.invalid")

    def last(self, operation: str | None = None) -> Received:
        items = [i for i in self.traffic.items("dmp") if operation is None or i.facts.get("operation") == operation]
        assert items, f"no {operation} received"
        return items[-1]

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


@pytest.fixture(scope="module")
def published(env: Env) -> dict[str, Any]:
    return env.act("dmp.publish", "act-publish", document={"kind": "CR-CONS", "confidentiality": "N"})["document"]


# --------------------------------------------------------------------------------------------- ITI-41
def test_vendor_iti41_is_mtom_and_fully_understood(env: Env, published: dict[str, Any]) -> None:
    item = env.last("iti-41")
    facts = item.facts
    assert (item.header("content-type") or "").startswith("multipart/related")
    assert facts["mtom"] is True and facts["soap_version"] == "1.2" and facts["error"] is None
    assert facts["action"] == dmp.ACTION_ITI41 and facts["action_id"] == "act-publish"
    assert facts["patient_ins"] == env.identity["matricule"]
    assert facts["entry_uuids"] == [published["entry_uuid"]]
    assert facts["unique_ids"] == [published["unique_id"]]
    ((doc_id, document),) = facts["documents"].items()
    assert doc_id == published["entry_uuid"]
    cda = parse_xml(document)
    assert etree.QName(cda).localname == "ClinicalDocument"
    assert etree.QName(parse_xml(facts["metadata_xml"])).localname == "SubmitObjectsRequest"
    security = parse_xml(facts["security_xml"])
    assert etree.QName(security).localname == "Security"
    assert any(etree.QName(e).localname == "Assertion" for e in security)
    assert item.response_status == 200 and b"ResponseStatusType:Success" in item.response_body


def test_every_part_passes_its_check(env: Env, published: dict[str, Any]) -> None:
    item = env.last("iti-41")
    for name, kind in [("vihf.token", "vihf"), ("cda.header", "cda"), ("ins.cda", "cda"), ("xds.metadata", "xds")]:
        part = received_part(kind, item)
        assert not isinstance(part, Finding), part
        artefact, extra = part
        args: dict[str, Any] = {"ca_pem": env.pki.ca_pem} if kind == "vihf" else {}
        errors = [f for f in run_check(name, artefact, **args) if f.severity == "error"]
        assert errors == [], (name, errors)
    part = received_part("xds", item)
    assert not isinstance(part, Finding)
    artefact, extra = part
    assert [f for f in run_check("xds.cda", artefact, **extra) if f.severity == "error"] == []
    assert run_check("dmp.transaction", item, operation="iti-41") == []


def test_missing_parts_become_input_findings() -> None:
    empty = Received("dmp", "POST", "/dmp", {}, b"", 0.0, facts={"documents": {}})
    for kind, rule in [
        ("vihf", "INPUT.NO-SOAP"),
        ("cda", "INPUT.NO-DOCUMENT"),
        ("xds", "INPUT.NO-METADATA"),
        ("mhd", "INPUT.NO-BUNDLE"),
    ]:
        part = received_part(kind, empty)
        assert isinstance(part, Finding) and part.rule == rule


# --------------------------------------------------------------------------------------------- replace, ITI-18, ITI-43
def test_replace_deprecates_the_previous_version(env: Env, published: dict[str, Any]) -> None:
    out = env.act("dmp.replace", "act-replace", replaces=published["entry_uuid"])
    new, old = out["document"], out["replaced"]
    assert new["set_id"] == old["set_id"] and new["version"] == old["version"] + 1
    facts = env.last("iti-41").facts
    rplc = [a for a in facts["associations"] if a["type"] == dmp.ASSOCIATION_RPLC]
    assert rplc == [{"type": dmp.ASSOCIATION_RPLC, "source": new["entry_uuid"], "target": old["entry_uuid"]}]
    stored_old = env.store.get(old["entry_uuid"])
    assert stored_old is not None and stored_old.status == dmp.STATUS_DEPRECATED
    part = received_part("xds", env.last("iti-41"))
    assert not isinstance(part, Finding)
    assert [f for f in run_check("xds.metadata", part[0], replaces=old["entry_uuid"]) if f.rule == "DMP.RPLC"] == []

    # FindDocuments returns the current version only; the retrieve gets exactly its bytes.
    result = env.act("dmp.query", "act-query")
    assert [d["unique_id"] for d in result["documents"]] == [new["unique_id"]]
    assert result["documents"][0]["status"] == dmp.STATUS_APPROVED
    stored_new = env.store.by_unique_id(new["unique_id"])
    assert stored_new is not None
    assert result["retrieved"] == [{"unique_id": new["unique_id"], "size": len(stored_new.document)}]
    query = env.last("iti-18")
    assert query.facts["query"]["id"] == dmp.QUERY_FIND_DOCUMENTS
    assert run_check("dmp.transaction", query, operation="iti-18", expected_ins=env.identity["matricule"]) == []
    retrieve = env.last("iti-43")
    assert retrieve.facts["retrieved"] == [new["unique_id"]]
    assert run_check("dmp.transaction", retrieve, operation="iti-43") == []
    _root, parts, _ = dmp.parse_multipart(retrieve.response_body, retrieve.response_headers["Content-Type"])
    assert stored_new.document in [p.content for p in parts.values()]


def _query(env: Env, query_id: str, slots: dict[str, str]) -> etree._Element:
    slot_xml = "".join(
        f'<rim:Slot name="{n}"><rim:ValueList><rim:Value>{escape(v)}</rim:Value></rim:ValueList></rim:Slot>'
        for n, v in slots.items()
    )
    body = (
        f'<s:Envelope xmlns:s="{dmp.NS_SOAP12}" xmlns:a="{dmp.NS_WSA}"><s:Header><a:Action>{dmp.ACTION_ITI18}</a:Action>'
        f'</s:Header><s:Body><q:AdhocQueryRequest xmlns:q="{dmp.NS_QUERY}" xmlns:rim="{RIM}">'
        f'<q:ResponseOption returnType="LeafClass"/><rim:AdhocQuery id="{query_id}">{slot_xml}</rim:AdhocQuery>'
        "</q:AdhocQueryRequest></s:Body></s:Envelope>"
    )
    resp = requests.post(
        f"{env.server.url}/dmp", data=body.encode(), headers={"Content-Type": "application/soap+xml"}, timeout=10
    )
    assert resp.status_code == 200
    return parse_xml(resp.content)


def test_stored_queries_find_deprecated_and_get_documents(env: Env, published: dict[str, Any]) -> None:
    cx = f"'{env.identity['matricule']}^^^&{env.identity['oid']}&ISO^NH'"
    root = _query(
        env,
        dmp.QUERY_FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": cx, "$XDSDocumentEntryStatus": f"('{dmp.STATUS_DEPRECATED}')"},
    )
    found = list(root.iter(f"{{{RIM}}}ExtrinsicObject"))
    assert [e.get("id") for e in found] == [published["entry_uuid"]]
    assert found[0].get("status") == dmp.STATUS_DEPRECATED
    slots = {s.get("name") for s in found[0].findall(f"{{{RIM}}}Slot")}
    assert {"repositoryUniqueId", "hash", "size"} <= slots
    root = _query(env, dmp.QUERY_GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": f"('{published['entry_uuid']}')"})
    assert [e.get("id") for e in root.iter(f"{{{RIM}}}ExtrinsicObject")] == [published["entry_uuid"]]
    root = _query(env, "urn:uuid:00000000-0000-0000-0000-000000000000", {})
    assert any(etree.QName(e).localname == "RegistryError" for e in root.iter())


def test_plain_soap_iti41_with_inline_base64_is_stored(env: Env) -> None:
    import datetime as dt

    from conformance.simulators.vendor_dmp import build_cda
    from conformance.simulators.xds_builder import build_submit_objects, provide_and_register

    cda = build_cda(
        env.patient,
        kind="CR-BIO",
        confidentiality="N",
        doc_id="77V1",
        set_id="77",
        version=1,
        when=dt.datetime.now(dt.UTC),
    )
    sor = build_submit_objects(
        cda, parse_xml(cda), patient_ins=env.identity["matricule"], ins_oid=env.identity["oid"], author={}
    )
    pnr = provide_and_register(sor, cda).split(b"?>", 1)[-1]
    envelope = (
        (
            f'<s:Envelope xmlns:s="{dmp.NS_SOAP12}" xmlns:a="{dmp.NS_WSA}"><s:Header><a:Action>{dmp.ACTION_ITI41}</a:Action>'
            "</s:Header><s:Body>"
        ).encode()
        + pnr
        + b"</s:Body></s:Envelope>"
    )
    resp = requests.post(
        f"{env.server.url}/dmp", data=envelope, headers={"Content-Type": "application/soap+xml"}, timeout=10
    )
    assert resp.status_code == 200 and b"ResponseStatusType:Success" in resp.content
    item = env.last("iti-41")
    assert item.facts["mtom"] is False
    assert list(item.facts["documents"].values()) == [cda]
    assert [f.rule for f in run_check("dmp.transaction", item, operation="iti-41")] == ["DMP.SOAP.MTOM"]


# --------------------------------------------------------------------------------------------- MIME
def test_multipart_round_trip_and_errors() -> None:
    body, ctype = dmp.build_multipart(b"<root/>", [("a@x", "application/pdf", b"%PDF\r\n--not-a-boundary\r\n")])
    root, parts, params = dmp.parse_multipart(body, ctype)
    assert root.content == b"<root/>" and parts["a@x"].content == b"%PDF\r\n--not-a-boundary\r\n"
    assert params["type"] == "application/xop+xml"
    b64 = (
        b"--B\r\nContent-Type: text/xml\r\n\r\n<r/>\r\n--B\r\nContent-ID: <d@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--B--\r\n"
    )
    _, parts, _ = dmp.parse_multipart(b64, 'multipart/related; boundary="B"')
    assert parts["d@x"].content == b"hello"
    for bad, ct in [
        (b"--B\r\n\r\nx\r\n--B--", "multipart/related"),
        (b"no boundary here", "multipart/related; boundary=B"),
        (b"".join(b"--B\r\nX: y\r\n\r\nz\r\n" for _ in range(dmp.MAX_PARTS + 1)), "multipart/related; boundary=B"),
        (b"--B\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@\r\n--B--", "multipart/related; boundary=B"),
        (b"--B" * 3_000_000, "multipart/related; boundary=B"),  # delimiter bomb: bounded work
    ]:
        with pytest.raises(InputError) as info:
            dmp.parse_multipart(bad, ct)
        assert info.value.rule == "INPUT.MIME"


# --------------------------------------------------------------------------------------------- MHD
def test_mhd_publish_search_and_binary(env: Env) -> None:
    ins = env.identity["matricule"]
    system = f"urn:oid:{env.identity['oid']}"
    content = b"%PDF-1.4 mhd"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {"resourceType": "List", "status": "current", "mode": "working"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "DocumentReference",
                    "masterIdentifier": {"value": "1.2.250.1.999.1.2^MHD1"},
                    "status": "current",
                    "subject": {"identifier": {"system": system, "value": ins}},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "url": "urn:uuid:33333333-3333-4333-8333-333333333333",
                            }
                        }
                    ],
                },
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(content).decode(),
                },
            },
        ],
    }
    resp = requests.post(f"{env.server.url}/fhir", json=bundle, headers={"X-Segur-Bench-Action": "mhd-1"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["type"] == "transaction-response"
    item = env.last("iti-65")
    assert item.facts["bundle"] == bundle and item.facts["patient_ins"] == ins and item.facts["action_id"] == "mhd-1"
    assert received_part("mhd", item) == (bundle, {})
    search = requests.get(
        f"{env.server.url}/fhir/DocumentReference", params={"patient.identifier": f"{system}|{ins}"}, timeout=10
    )
    refs = [e["resource"] for e in search.json()["entry"]]
    assert [r["masterIdentifier"]["value"] for r in refs] == ["1.2.250.1.999.1.2^MHD1"]
    url = refs[0]["content"][0]["attachment"]["url"]
    raw = requests.get(f"{env.server.url}/fhir/{url}", timeout=10)
    assert raw.content == content
    as_json = requests.get(
        f"{env.server.url}/fhir/{url}", headers={"Accept": "application/fhir+json"}, timeout=10
    ).json()
    assert base64.b64decode(as_json["data"]) == content
    assert env.last("iti-68").facts["patient_ins"] == ins
    assert requests.get(f"{env.server.url}/fhir/Binary/unknown", timeout=10).status_code == 404


# --------------------------------------------------------------------------------------------- hostile input
HOSTILE: list[tuple[str, str, bytes, str, int]] = [
    ("/dmp", "application/soap+xml", b"not xml at all", "INPUT.XML", 400),
    ("/dmp", "application/soap+xml", b"", "INPUT.EMPTY", 400),
    (
        "/dmp",
        "application/soap+xml",
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
        "INPUT.DTD",
        400,
    ),
    ("/dmp", "multipart/related", b"--B\r\n\r\n<e/>\r\n--B--", "INPUT.MIME", 400),
    ("/dmp", "multipart/related; boundary=B", b"\xff\xfe garbage", "INPUT.MIME", 400),
    (
        "/dmp",
        "application/soap+xml",
        f'<s:Envelope xmlns:s="{dmp.NS_SOAP12}"><s:Body><x/></s:Body></s:Envelope>'.encode(),
        "INPUT.SOAP",
        400,
    ),
    ("/dmp", "application/soap+xml", b"<notsoap/>", "INPUT.SOAP", 400),
    ("/fhir", "application/fhir+json", b"\xff{", "INPUT.ENCODING", 400),
    ("/fhir", "application/fhir+json", b'{"resourceType": "Patient"}', "INPUT.FHIR", 400),
    ("/fhir", "application/fhir+json", b"[" * 100_000, "INPUT.JSON", 400),
]


@pytest.mark.parametrize(("path", "ctype", "body", "rule", "status"), HOSTILE)
def test_hostile_bodies_are_refused_and_recorded(
    env: Env, path: str, ctype: str, body: bytes, rule: str, status: int
) -> None:
    before = env.traffic.last_seq
    resp = requests.post(f"{env.server.url}{path}", data=body, headers={"Content-Type": ctype}, timeout=10)
    assert resp.status_code == status
    assert b"Traceback" not in resp.content and b"root:" not in resp.content
    item = env.traffic.items("dmp")[-1]
    assert item.seq > before and item.facts["error"]["rule"] == rule
    assert run_check("dmp.transaction", item) != []


def test_xop_include_to_a_missing_part_is_recorded_not_stored(env: Env) -> None:
    envelope = (
        f'<s:Envelope xmlns:s="{dmp.NS_SOAP12}"><s:Body><x:ProvideAndRegisterDocumentSetRequest xmlns:x="urn:ihe:iti:xds-b:2007">'
        '<x:Document id="d1"><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:nowhere"/></x:Document>'
        "</x:ProvideAndRegisterDocumentSetRequest></s:Body></s:Envelope>"
    ).encode()
    body, ctype = dmp.build_multipart(envelope, [])
    resp = requests.post(f"{env.server.url}/dmp", data=body, headers={"Content-Type": ctype}, timeout=10)
    assert resp.status_code == 200 and b"ResponseStatusType:Failure" in resp.content
    facts = env.last("iti-41").facts
    assert facts["documents"] == {} and facts["error"]["rule"] == "INPUT.XDS"


def test_oversized_body_and_wrong_method() -> None:
    traffic = TrafficLog()
    with BackgroundServer(dmp.create_dmp_app(traffic, max_body=1000), name="dmp-small") as srv:
        resp = requests.post(f"{srv.url}/dmp", data=b"<a>" + b"x" * 5000 + b"</a>", timeout=10)
        assert resp.status_code == 413
        assert traffic.items()[-1].facts["error"]["rule"] == "INPUT.TOO-LARGE"
        resp = requests.get(f"{srv.url}/dmp", timeout=10)
        assert resp.status_code == 405 and traffic.items()[-1].facts["error"]["rule"] == "HTTP.METHOD"


def test_soap11_fault_is_seen_by_the_transport_check() -> None:
    e = Env(frozenset({"dmp.soap11"}))
    try:
        e.act("dmp.publish", "act-11", document={"kind": "VSM"})
        item = e.last("iti-41")
        assert item.facts["soap_version"] == "1.1"
        assert [f.rule for f in run_check("dmp.transaction", item, operation="iti-41")] == ["DMP.SOAP.VERSION"]
    finally:
        e.close()


def test_unqualified_identity_is_not_sent(env: Env) -> None:
    from conformance.simulators.vendor import ActionFailed

    provisional = env.vendor.patients.create(
        status="RECUP",
        birth_name="X",
        given_names=["Y"],
        first_given_name="Y",
        sex="F",
        birth_date="1990-01-01",
        birth_place=None,
        matricule=env.identity["matricule"],
        oid=env.identity["oid"],
    )
    before = env.traffic.last_seq
    with pytest.raises(ActionFailed) as info:
        env.act("dmp.publish", "act-unq", patient={"patient_id": provisional.id})
    assert info.value.code == "identity-not-qualified"
    assert env.traffic.last_seq == before


def test_facts_are_json_safe_where_reports_need_them(env: Env, published: dict[str, Any]) -> None:
    facts = env.last("iti-41").facts
    # Scalar facts that correlate and describe the request serialise as JSON (bytes parts do not need to).
    json.dumps(
        {
            k: v
            for k, v in facts.items()
            if k not in ("documents", "metadata_xml", "security_xml", "envelope_xml", "bundle")
        }
    )


# --------------------------------------------------------------------------------------------- fault effects
# Each DMP fault changes what the vendor sends in the way it claims, seen by the rule it is about
# (the end-to-end proof that it fails exactly its requirements is tests/test_e2e_dmp.py).
FAULT_EFFECTS: dict[str, tuple[str, str, str]] = {
    # fault: (operation whose request shows it, check, rule)
    "dmp.vihf-missing-attribute": ("iti-41", "vihf.token", "VIHF.ATTRIBUTES"),
    "dmp.vihf-unsigned": ("iti-41", "vihf.token", "VIHF.SIGNATURE"),
    "dmp.vihf-expired": ("iti-41", "vihf.token", "VIHF.VALIDITY"),
    "dmp.metadata-type-mismatch": ("iti-41", "xds.cda", "XDS.CDA.TYPE"),
    "dmp.wrong-class-code": ("iti-41", "xds.metadata", "XDS.CLASS-TYPE"),
    "dmp.bad-confidentiality": ("iti-41", "xds.metadata", "XDS.VS.CONFIDENTIALITY"),
    "dmp.missing-ins": ("iti-41", "xds.metadata", "DMP.PATIENTID"),
    "dmp.wrong-hash": ("iti-41", "xds.metadata", "XDS.HASH"),
    "dmp.cda-missing-custodian": ("iti-41", "cda.header", "CDA.CUSTODIAN"),
    "dmp.cda-bad-language": ("iti-41", "cda.header", "CDA.LANGUAGE"),
    "dmp.replace-without-rplc": ("iti-41", "xds.metadata", "DMP.RPLC"),
    "dmp.soap11": ("iti-41", "dmp.transaction", "DMP.SOAP.VERSION"),
    "dmp.retrieve-wrong-repository": ("iti-43", "dmp.transaction", "DMP.RETRIEVE.REPOSITORY"),
}


def test_every_dmp_fault_has_an_effect_test() -> None:
    from conformance.simulators.faults import FAULTS

    assert set(FAULT_EFFECTS) == {name for name, f in FAULTS.items() if f.service == "dmp"}


@pytest.mark.parametrize("fault", sorted(FAULT_EFFECTS))
def test_dmp_fault_changes_what_it_claims(fault: str) -> None:
    from conformance.checks.registry import CHECKS
    from conformance.engine.artefacts import check_arguments

    operation, check_name, rule = FAULT_EFFECTS[fault]
    e = Env(frozenset({fault}))
    try:
        first = e.act("dmp.publish", "p1", document={"kind": "CR-CONS"})["document"]
        e.act("dmp.replace", "r1", replaces=first["entry_uuid"])
        e.act("dmp.query", "q1")
        item = e.last(operation)
        info = CHECKS[check_name]
        part = received_part(info.kind, item) if info.kind in ("vihf", "cda", "xds") else (item, {})
        assert not isinstance(part, Finding), part
        artefact, extra = part
        args: dict[str, Any] = {"ca_pem": e.pki.ca_pem} if info.kind == "vihf" else {}
        if fault == "dmp.replace-without-rplc":
            args["replaces"] = first["entry_uuid"]
        if check_name == "dmp.transaction":
            args["operation"] = operation
        rules = {
            f.rule
            for f in run_check(check_name, artefact, **check_arguments(info.func, extra, args))
            if f.severity == "error"
        }
        assert rule in rules, rules
    finally:
        e.close()
