"""VIHF token check: a built token passes; each single defect fails exactly its rule; wrapping and
hostile input are caught; the official CPS assertion's XML-DSig verifies with our verifier."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from conformance import pki, vihf
from conformance.checks import run_check
from conformance.checks.vihf import vihf_token
from conformance.model import Finding
from conformance.parsing import parse_xml
from conformance.xmldsig import EXC_C14N, NS_DS, reference_digest, sign_enveloped, verify_enveloped
from tests.hostile import BOMB, XXE

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # certificates are issued "now" too
INS = "279035121518989"
BASE = "/soap:Envelope/soap:Header/wsse:Security/saml2:Assertion"
NS = vihf.NAMESPACES


def _valid_ins(body13: str) -> str:
    from conformance.checks.ins import nir_key

    return f"{body13}{nir_key(body13):02d}"


SECOND_INS = _valid_ins("1800175123456")


@pytest.fixture(scope="module")
def run() -> pki.RunPki:
    return pki.ephemeral_run_pki()


@pytest.fixture(scope="module")
def stranger() -> pki.RunPki:
    """Credentials from another CA than the bench's."""
    return pki.ephemeral_run_pki(key_type="ec")


def build(run: pki.RunPki, **kw: Any) -> etree._Element:
    args: dict[str, Any] = {
        "subject_id": "899700218896",
        "subject_name": "SPECIALISTE0021889 ROBERT",
        "role": [("10", "1.2.250.1.71.1.2.7", "Médecin"), ("SM26", "1.2.250.1.71.4.2.5")],
        "structure_id": "10B0156832",
        "secteur_activite": "SA07",
        "ins": INS,
        "purposeofuse": "normal",
        "lps_nom": "segur-bench reference vendor",
        "lps_version": "1.0.0",
        "lps_homologation": "HOMOLOG-TEST-0001",
        "issue_instant": NOW,
        "not_before": NOW - dt.timedelta(minutes=1),
        "not_on_or_after": NOW + dt.timedelta(hours=1),
        "signing_cert_pem": run.cert_pem,
        "signing_key_pem": run.key_pem,
    }
    args.update(kw)
    return vihf.build_vihf(**args)


def envelope(assertion: etree._Element) -> bytes:
    return vihf.to_bytes(vihf.soap_envelope(vihf.wrap_in_security(assertion)))


def judge(artefact: Any, run: pki.RunPki | None = None, **kw: Any) -> list[Finding]:
    kw.setdefault("now", NOW + dt.timedelta(seconds=1))
    if run is not None:
        kw.setdefault("ca_pem", run.ca_pem)
    return run_check("vihf.token", artefact, **kw)


def errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity == "error"}


# ---------------------------------------------------------------- conformant token
def test_conformant_token_passes(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run)), run, expected_ins=INS)
    assert findings == []


def test_conformant_token_passes_as_elements_and_soap11(run: pki.RunPki) -> None:
    a = build(run)
    security = vihf.wrap_in_security(a)
    assert judge(security, run) == []
    env11 = vihf.soap_envelope(vihf.wrap_in_security(build(run)), soap12=False)
    assert judge(vihf.to_bytes(env11), run) == []
    assert judge(env11, run) == []


def test_ecdsa_signed_token_passes(stranger: pki.RunPki) -> None:
    assert judge(envelope(build(stranger)), stranger) == []


def test_token_shape(run: pki.RunPki) -> None:
    root = parse_xml(envelope(build(run)))
    a = root.xpath(BASE, namespaces=NS)[0]
    assert a.get("Version") == "2.0" and a.get("ID", "").startswith("_")
    assert [etree.QName(c).localname for c in a][:2] == ["Issuer", "Signature"]
    role = a.xpath(
        "saml2:AttributeStatement/saml2:Attribute[@Name=$n]/saml2:AttributeValue/hl7:Role", n=vihf.ROLE, namespaces=NS
    )
    assert [(r.get("code"), r.get("codeSystem")) for r in role] == [
        ("10", "1.2.250.1.71.1.2.7"),
        ("SM26", "1.2.250.1.71.4.2.5"),
    ]
    rid = a.xpath(
        "string(saml2:AttributeStatement/saml2:Attribute[@Name=$n]/saml2:AttributeValue)",
        n=vihf.RESOURCE_ID,
        namespaces=NS,
    )
    assert rid == f"{INS}^^^&1.2.250.1.213.1.4.8&ISO"
    sec = a.xpath(
        "string(saml2:AttributeStatement/saml2:Attribute[@Name='Secteur_Activite']/saml2:AttributeValue)", namespaces=NS
    )
    assert sec == "SA07^1.2.250.1.71.4.2.4"
    assert a.xpath("string(saml2:AttributeStatement/saml2:Attribute[@Name='VIHF_Version'])", namespaces=NS) == "3.0"
    assert a.xpath("ds:Signature/ds:SignedInfo/ds:Reference/@URI", namespaces=NS) == [f"#{a.get('ID')}"]


def test_registered_rules() -> None:
    from conformance.checks import CHECKS

    info = CHECKS["vihf.token"]
    assert info.kind == "vihf" and info.service == "DMP"
    assert set(info.rules) == {
        "VIHF.PRESENT",
        "VIHF.ATTRIBUTES",
        "VIHF.VERSION",
        "VIHF.VALIDITY",
        "VIHF.SIGNATURE",
        "VIHF.TRUST",
        "VIHF.RESOURCE",
    }


# ---------------------------------------------------------------- VIHF.ATTRIBUTES
@pytest.mark.parametrize("name", [n for n in vihf.REQUIRED_ATTRIBUTES if n != vihf.VIHF_VERSION_ATTR])
def test_missing_required_attribute(run: pki.RunPki, name: str) -> None:
    findings = judge(envelope(build(run, omit={name})), run)
    assert errors(findings) == {"VIHF.ATTRIBUTES"}
    assert any(f.location == f"{BASE}/saml2:AttributeStatement/saml2:Attribute[@Name='{name}']" for f in findings)


@pytest.mark.parametrize("part", ["Issuer", "Subject", "AuthnStatement"])
def test_missing_structural_part(run: pki.RunPki, part: str) -> None:
    findings = judge(envelope(build(run, omit={part})), run)
    assert errors(findings) == {"VIHF.ATTRIBUTES"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("role", ("10", "1.2.3.4")),  # code system outside JDV_J65
        ("structure", "ABC"),
        ("secteur", "SA07"),  # no code system
        ("secteur", "XX07^1.2.250.1.71.4.2.4"),
        ("resource-id", "279035121518988^^^&1.2.250.1.213.1.4.8&ISO"),  # wrong INS key
        ("resource-id", f"{INS}^^^&1.2.3&ISO"),  # not an INS OID
        ("resource-id", INS),  # not CX
        ("purposeofuse", ("normal", "1.2.3")),
        ("ressource-urn", "urn:other"),
        ("NameID", "admin"),  # generic, not a national identifier (SC.DMP/AIRS.06)
        ("lps-nom", ""),
        ("lps-homologation", "   "),
        ("subject-id", "x" * 300),
    ],
)
def test_malformed_attribute(run: pki.RunPki, key: str, value: Any) -> None:
    findings = judge(envelope(build(run, overrides={key: value})), run)
    assert errors(findings) == {"VIHF.ATTRIBUTES"}, findings


def test_role_value_must_be_coded(run: pki.RunPki) -> None:
    a = build(run, omit={"Signature"})
    value = a.xpath(
        "saml2:AttributeStatement/saml2:Attribute[@Name=$n]/saml2:AttributeValue", n=vihf.ROLE, namespaces=NS
    )[0]
    for child in list(value):
        value.remove(child)
    value.text = "10^1.2.250.1.71.1.2.7"
    sign_enveloped(a, key_pem=run.key_pem, cert_pem=run.cert_pem, position=1)
    assert errors(judge(envelope(a), run)) == {"VIHF.ATTRIBUTES"}


def test_duplicated_attribute(run: pki.RunPki) -> None:
    a = build(run, omit={"Signature"})
    attr = a.xpath("saml2:AttributeStatement/saml2:Attribute[@Name='LPS_Nom']", namespaces=NS)[0]
    attr.addnext(copy.deepcopy(attr))
    sign_enveloped(a, key_pem=run.key_pem, cert_pem=run.cert_pem, position=1)
    assert errors(judge(envelope(a), run)) == {"VIHF.ATTRIBUTES"}


def test_unknown_modes_are_warnings_and_alias_spelling_is_accepted(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run, purposeofuse="SOMETHING", authentification_mode="AUTRE")), run)
    assert errors(findings) == set()
    assert {f.rule for f in findings if f.severity == "warning"} == {"VIHF.ATTRIBUTES"}
    a = build(run, omit={"Signature"})
    a.xpath("saml2:AttributeStatement/saml2:Attribute[@Name='Authentification_mode']", namespaces=NS)[0].set(
        "Name", "Authentification_Mode"
    )
    sign_enveloped(a, key_pem=run.key_pem, cert_pem=run.cert_pem, position=1)
    assert judge(envelope(a), run) == []


# ---------------------------------------------------------------- VIHF.VERSION
def test_wrong_vihf_version(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run, overrides={"version": "2.0"})), run)
    assert errors(findings) == {"VIHF.VERSION"}
    assert findings[0].location == f"{BASE}/saml2:AttributeStatement/saml2:Attribute[@Name='VIHF_Version']"


def test_missing_vihf_version(run: pki.RunPki) -> None:
    assert errors(judge(envelope(build(run, omit={"VIHF_Version"})), run)) == {"VIHF.VERSION"}


def test_wrong_saml_version(run: pki.RunPki) -> None:
    assert errors(judge(envelope(build(run, overrides={"Version": "1.1"})), run)) == {"VIHF.VERSION"}


# ---------------------------------------------------------------- VIHF.VALIDITY
def test_expired(run: pki.RunPki) -> None:
    token = build(
        run,
        issue_instant=NOW - dt.timedelta(hours=2),
        not_before=NOW - dt.timedelta(hours=2),
        not_on_or_after=NOW - dt.timedelta(hours=1),
    )
    findings = judge(envelope(token), run)
    assert errors(findings) == {"VIHF.VALIDITY"}
    assert any("expired" in f.message for f in findings)


def test_not_yet_valid(run: pki.RunPki) -> None:
    token = build(run, not_before=NOW + dt.timedelta(hours=1), not_on_or_after=NOW + dt.timedelta(hours=2))
    findings = judge(envelope(token), run)
    assert errors(findings) == {"VIHF.VALIDITY"}
    assert any("not yet valid" in f.message for f in findings)


def test_issue_instant_in_the_future(run: pki.RunPki) -> None:
    token = build(run, issue_instant=NOW + dt.timedelta(minutes=30))
    assert errors(judge(envelope(token), run)) == {"VIHF.VALIDITY"}


def test_bad_issue_instant(run: pki.RunPki) -> None:
    assert errors(judge(envelope(build(run, overrides={"IssueInstant": "yesterday"})), run)) == {"VIHF.VALIDITY"}


def test_clock_skew_is_tolerated(run: pki.RunPki) -> None:
    token = envelope(build(run, issue_instant=NOW - dt.timedelta(minutes=10), not_on_or_after=NOW))
    assert judge(token, run, now=NOW + dt.timedelta(seconds=60)) == []
    assert errors(judge(token, run, now=NOW + dt.timedelta(seconds=60), skew=0)) == {"VIHF.VALIDITY"}


def test_missing_conditions_is_a_warning(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run, omit={"Conditions"})), run)
    assert errors(findings) == set()
    assert [(f.rule, f.severity) for f in findings] == [("VIHF.VALIDITY", "warning")]


# ---------------------------------------------------------------- VIHF.SIGNATURE
def test_tampered_attribute_after_signing(run: pki.RunPki) -> None:
    data = envelope(build(run))
    tampered = data.replace(b"segur-bench reference vendor", b"segur-bench forged vendor!!")
    assert tampered != data
    findings = judge(tampered, run)
    assert errors(findings) == {"VIHF.SIGNATURE"}
    assert any("digest mismatch" in f.message for f in findings)


def test_tampered_signed_info(run: pki.RunPki) -> None:
    root = parse_xml(envelope(build(run)))
    dv = root.xpath(f"{BASE}/ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestValue", namespaces=NS)[0]
    dv.text = dv.text[:-4] + ("AAA=" if not dv.text.endswith("AAA=") else "BBB=")
    assert errors(judge(root, run)) == {"VIHF.SIGNATURE"}


def test_missing_signature(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run, omit={"Signature"})), run)
    assert errors(findings) == {"VIHF.SIGNATURE"}
    assert {(f.rule, f.severity) for f in findings if f.rule == "VIHF.TRUST"} == {("VIHF.TRUST", "info")}


def test_enveloped_transform_keeps_the_signature_tail() -> None:
    """Signers working from a pretty-printed template leave text after ds:Signature; the enveloped
    transform removes the element only, so that text stays in the digested content."""
    bare = etree.fromstring(b'<r xmlns="urn:x" ID="_1"><a/>\n  <b/></r>')
    with_sig = etree.fromstring(
        b'<r xmlns="urn:x" ID="_1"><a/><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>\n  <b/></r>'
    )
    first = etree.fromstring(
        b'<r xmlns="urn:x" ID="_1"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>\n  <a/>\n  <b/></r>'
    )
    assert reference_digest(with_sig, with_sig[1]) == reference_digest(bare, None)
    assert reference_digest(first, first[0]) == reference_digest(
        etree.fromstring(b'<r xmlns="urn:x" ID="_1">\n  <a/>\n  <b/></r>'), None
    )


def test_pretty_printed_token_verifies(run: pki.RunPki) -> None:
    a = build(run, omit={"Signature"})
    etree.indent(a)
    reparsed = parse_xml(etree.tostring(a))
    sign_enveloped(reparsed, key_pem=run.key_pem, cert_pem=run.cert_pem, position=1)
    security = vihf.wrap_in_security(reparsed)
    security.text, reparsed.tail = "\n    ", "\n  "  # whitespace around the assertion is not signed
    assert errors(judge(vihf.to_bytes(vihf.soap_envelope(security)), run)) == set()


@pytest.mark.parametrize("where", ["header", "advice"])
def test_signature_wrapping_forged_assertion_with_original_moved(run: pki.RunPki, where: str) -> None:
    """Classic XSW: the forged assertion sits where the DMP reads it, the genuine signed one is moved
    elsewhere so that an ID lookup would still find signed content."""
    original = build(run, ins=INS)
    forged = copy.deepcopy(original)
    rid = forged.xpath(
        "saml2:AttributeStatement/saml2:Attribute[@Name=$n]/saml2:AttributeValue", n=vihf.RESOURCE_ID, namespaces=NS
    )[0]
    rid.text = f"{SECOND_INS}^^^&1.2.250.1.213.1.4.8&ISO"
    env = vihf.soap_envelope(vihf.wrap_in_security(forged))
    if where == "header":
        holder = etree.SubElement(env[0], "{urn:attacker}Wrapper")
        holder.append(original)
    else:
        forged.set("ID", "_forged")  # fresh ID; its Signature still references the original's ID
        advice = etree.SubElement(forged, f"{{{vihf.NS_SAML2}}}Advice")
        advice.append(original)
    findings = judge(vihf.to_bytes(env), run)
    assert errors(findings) == {"VIHF.SIGNATURE"}, findings


def test_second_assertion_in_security(run: pki.RunPki) -> None:
    security = vihf.wrap_in_security(build(run))
    security.append(build(run, ins=SECOND_INS))
    findings = judge(vihf.to_bytes(vihf.soap_envelope(security)), run)
    assert errors(findings) == {"VIHF.SIGNATURE"}


def test_reference_to_another_element(run: pki.RunPki) -> None:
    a = build(run, omit={"Signature"})
    a.set("ID", "_target")
    sign_enveloped(a, key_pem=run.key_pem, cert_pem=run.cert_pem, position=1)
    a.set("ID", "_other")  # the signature no longer points at this assertion
    assert errors(judge(envelope(a), run)) == {"VIHF.SIGNATURE"}


def test_xpath_transform_is_refused(run: pki.RunPki) -> None:
    root = parse_xml(envelope(build(run)))
    t = root.xpath(f"{BASE}/ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform[2]", namespaces=NS)[0]
    t.set("Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116")
    findings = judge(root, run)
    assert errors(findings) == {"VIHF.SIGNATURE"}
    assert any("transforms" in f.message for f in findings)


# ---------------------------------------------------------------- VIHF.TRUST
def test_certificate_from_another_ca(run: pki.RunPki, stranger: pki.RunPki) -> None:
    token = build(run, signing_cert_pem=stranger.cert_pem, signing_key_pem=stranger.key_pem)
    findings = judge(envelope(token), run)
    assert errors(findings) == {"VIHF.TRUST"}


def test_no_trust_anchor_is_informative(run: pki.RunPki) -> None:
    findings = judge(envelope(build(run)))
    assert [(f.rule, f.severity) for f in findings] == [("VIHF.TRUST", "info")]


def test_dedicated_signing_certificate_passes(run: pki.RunPki) -> None:
    token = build(run, signing_cert_pem=run.signing_cert_pem, signing_key_pem=run.signing_key_pem)
    assert judge(envelope(token), run) == []


def test_certificate_without_signature_usage(run: pki.RunPki) -> None:
    # A TLS server certificate (EC: keyAgreement, digitalSignature) still may sign; build one without.
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    ca = run.ca
    cert = (
        cx.CertificateBuilder()
        .subject_name(cx.Name([cx.NameAttribute(cx.oid.NameOID.COMMON_NAME, "no-sign")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(cx.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(cx.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            cx.KeyUsage(False, False, False, False, True, False, False, False, False),
            critical=True,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    findings = judge(envelope(build(run, signing_cert_pem=cert_pem, signing_key_pem=key_pem)), run)
    assert errors(findings) == {"VIHF.TRUST"}


# ---------------------------------------------------------------- VIHF.RESOURCE
def test_resource_is_the_expected_patient(run: pki.RunPki) -> None:
    token = envelope(build(run))
    assert judge(token, run, expected_ins=INS) == []
    assert judge(token, run, expected_ins=f"{INS}^^^&1.2.250.1.213.1.4.8&ISO") == []
    findings = judge(token, run, expected_ins=SECOND_INS)
    assert errors(findings) == {"VIHF.RESOURCE"}


# ---------------------------------------------------------------- VIHF.PRESENT and hostile input
def test_no_security_header(run: pki.RunPki) -> None:
    env = etree.fromstring(
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body/></s:Envelope>'
    )
    findings = judge(etree.tostring(env), run)
    assert errors(findings) == {"VIHF.PRESENT"} and len(findings) == 1


def test_security_without_assertion(run: pki.RunPki) -> None:
    security = etree.Element(f"{{{vihf.NS_WSSE}}}Security")
    assert errors(judge(vihf.to_bytes(vihf.soap_envelope(security)), run)) == {"VIHF.PRESENT"}


def test_bare_assertion_is_judged_but_not_present(run: pki.RunPki) -> None:
    findings = judge(vihf.to_bytes(build(run)), run)
    assert errors(findings) == {"VIHF.PRESENT"}


def test_not_a_soap_message(run: pki.RunPki) -> None:
    assert errors(judge(b"<html><body>hi</body></html>", run)) == {"VIHF.PRESENT"}


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (XXE, "INPUT.DTD"),
        (BOMB, "INPUT.DTD"),
        (b"", "INPUT.EMPTY"),
        (b"not xml at all", "INPUT.XML"),
        (b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Header>", "INPUT.XML"),
    ],
)
def test_hostile_input(data: bytes, rule: str) -> None:
    findings = list(vihf_token(data))
    assert [f.rule for f in findings] == [rule]


def test_oversized_input_is_refused_before_parsing() -> None:
    findings = list(vihf_token(b"<a>" + b"x" * (21 * 1024 * 1024) + b"</a>"))
    assert [f.rule for f in findings] == ["INPUT.TOO-LARGE"]


# ---------------------------------------------------------------- xmldsig module on its own
def test_sign_and_verify_round_trip(run: pki.RunPki) -> None:
    doc = etree.fromstring(b'<r xmlns="urn:x" ID="_1"><a>text</a><!-- comment --><b/></r>')
    sign_enveloped(doc, key_pem=run.key_pem, cert_pem=run.cert_pem)
    result = verify_enveloped(parse_xml(etree.tostring(doc)))
    assert result.ok and result.problems == []
    c14n = doc.find(f"{{{NS_DS}}}Signature/{{{NS_DS}}}SignedInfo/{{{NS_DS}}}CanonicalizationMethod")
    assert c14n is not None and c14n.get("Algorithm") == EXC_C14N


# ---------------------------------------------------------------- the official CPS assertion
CPS = Path("insi/fixtures-extracted/assertionPs_SAML2_CPS-test-card.xml")
CPS_REQUEST = Path("insi/fixtures-extracted/request_RECSANSVITALE_ADRTROIS-DOMINIQUE_with-assertionPs.xml")


@pytest.mark.shared
def test_official_cps_assertion_signature_verifies(shared_data: Path) -> None:
    """A real assertion signed by a test CPS card (IGC-Santé TEST chain, unknown to the bench): the
    digest and the RSA-SHA256 signature must check with the embedded certificate."""
    assertion = parse_xml((shared_data / CPS).read_bytes())
    result = verify_enveloped(assertion)
    assert result.problems == [] and result.warnings == []
    assert result.signer is not None and "00B6087510" in result.signer.subject.rfc4514_string()
    # Inside the INSi request it came from (other ancestors and prefixes): still valid.
    request = parse_xml((shared_data / CPS_REQUEST).read_bytes())
    inner = request.xpath("//saml2:Assertion", namespaces=NS)
    assert len(inner) == 1 and verify_enveloped(inner[0]).ok


@pytest.mark.shared
def test_official_cps_assertion_through_the_check(shared_data: Path) -> None:
    data = (shared_data / CPS).read_bytes()
    security = vihf.wrap_in_security(parse_xml(data))
    findings = run_check("vihf.token", security, now=dt.datetime(2022, 4, 12, 15, 8, tzinfo=dt.UTC))
    # It is an INSi CPS assertion, not a DMP VIHF: attributes and version fail, the signature does not.
    assert "VIHF.SIGNATURE" not in errors(findings)
    assert {"VIHF.ATTRIBUTES", "VIHF.VERSION"} <= errors(findings)
    tampered = data.replace(b"123456789", b"123456780")
    findings = run_check("vihf.token", vihf.wrap_in_security(parse_xml(tampered)))
    assert "VIHF.SIGNATURE" in errors(findings)
