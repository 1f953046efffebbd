"""INS rules on CDA R2 documents (CI-SIS header ``recordTarget/patientRole``).

This module only *reads* the CDA encoding of the identity into an :class:`~conformance.checks.ins.Identity`;
the rules themselves are :func:`conformance.checks.ins.identity_findings`, shared with FHIR, so a
vendor's documents and its FHIR API are judged identically and under the same rule ids.

CI-SIS encoding (``urn:hl7-org:v3``), as in ANS's official examples:

- ``patientRole/id[@root = INS OID]/@extension`` — the matricule (OIDs ``1.2.250.1.213.1.4.8|9|10|11``);
- ``patient/name/family[@qualifier='BR']`` — birth name; ``family[@qualifier='CL']`` (RNIV) or the older
  ``'SP'`` — used name;
- ``patient/name/given`` without qualifier — the list of birth given names; ``given[@qualifier='BR']`` —
  the first birth given name; ``given[@qualifier='CL']`` — the used given name;
- ``patient/administrativeGenderCode/@code`` — ``M`` / ``F`` (``U`` undetermined);
- ``patient/birthTime/@value`` — ``YYYYMMDD[hhmm…]``;
- ``patient/birthplace/place/addr/county`` — the INSEE COG code of the birth commune (``99xxx`` abroad).

CDA carries no identity status (an INS in a CDA header implies a qualified identity), so the
``INS.STATUS.*`` and ``INS.QUALIFIED`` rules do not apply here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from conformance.checks.ins import (
    IDENTIFIER_RULES,
    INS_OIDS,
    TRAIT_RULES,
    Identity,
    InsIdentifier,
    identity_findings,
)
from conformance.checks.registry import check
from conformance.model import Finding
from conformance.parsing import InputError, parse_xml

V3 = "urn:hl7-org:v3"
_CLINICAL_DOCUMENT = f"{{{V3}}}ClinicalDocument"
_RECORD_TARGET = f"{{{V3}}}recordTarget"
_PATIENT_ROLE = f"{{{V3}}}patientRole"
_ID = f"{{{V3}}}id"
_PATIENT = f"{{{V3}}}patient"
_NAME = f"{{{V3}}}name"
_FAMILY = f"{{{V3}}}family"
_GIVEN = f"{{{V3}}}given"
_GENDER = f"{{{V3}}}administrativeGenderCode"
_BIRTH_TIME = f"{{{V3}}}birthTime"
_BIRTHPLACE = f"{{{V3}}}birthplace"
_PLACE = f"{{{V3}}}place"
_ADDR = f"{{{V3}}}addr"
_COUNTY = f"{{{V3}}}county"

CDA_RULES: dict[str, str] = {**IDENTIFIER_RULES, **TRAIT_RULES}

_TS = re.compile(r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2}))?)?")


def _text(el: Any) -> str:
    """Text content of an element, comments skipped (official examples comment inside names)."""
    return "".join(t for t in el.itertext() if isinstance(t, str))


def _usable(el: Any) -> bool:
    return el is not None and el.get("nullFlavor") is None


def _qualifiers(el: Any) -> set[str]:
    return set((el.get("qualifier") or "").split())


def _cda_date(value: str) -> str:
    """``YYYYMMDD[hhmmss…]`` → ``YYYY-MM-DD`` (``YYYY-MM`` / ``YYYY`` when truncated, raw otherwise)."""
    m = _TS.match(value)
    if m is None:
        return value
    rest = value[m.end() :]
    if rest and not (m.group(3) and rest[0] in "0123456789+-."):
        return value
    return "-".join(p for p in m.groups() if p)


def identities_from_cda(root: Any) -> list[Identity]:
    """One :class:`Identity` per ``recordTarget/patientRole`` of a CDA document.

    ``root`` is the parsed ClinicalDocument or any element containing it (auto-presentable documents
    wrap it in an ``xsl:stylesheet``).  Locations are XPaths without namespace prefixes.
    """
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    if root.tag == _CLINICAL_DOCUMENT:
        doc, prefix = root, "/ClinicalDocument"
    else:
        doc = next(root.iter(_CLINICAL_DOCUMENT), None)
        prefix = "//ClinicalDocument"
        if doc is None:
            return []
    targets = doc.findall(_RECORD_TARGET)
    out: list[Identity] = []
    for t, target in enumerate(targets, 1):
        tloc = f"{prefix}/recordTarget" + (f"[{t}]" if len(targets) > 1 else "")
        for role in target.findall(_PATIENT_ROLE):
            out.append(_identity(role, f"{tloc}/patientRole"))
    return out


def _identity(role: Any, rloc: str) -> Identity:
    ident = Identity(root=rloc, status_applicable=False)
    locs = ident.locations
    locs["root"] = rloc
    for n, idel in enumerate(role.findall(_ID), 1):
        oid = idel.get("root")
        if oid not in INS_OIDS:
            continue
        iloc = f"{rloc}/id[{n}]"
        ident.ins.append(
            InsIdentifier(
                value=idel.get("extension"),
                oid=oid,
                current=True,
                location=iloc,
                value_location=f"{iloc}/@extension",
                oid_location=f"{iloc}/@root",
            )
        )
    if ident.ins:
        ident.matricule, ident.oid = ident.ins[0].value, ident.ins[0].oid

    ploc = f"{rloc}/patient"
    patient = role.find(_PATIENT)
    for key in ("birth_name", "first_given_name", "given_names"):
        locs[key] = f"{ploc}/name"
    locs["sex"] = f"{ploc}/administrativeGenderCode"
    locs["birth_date"] = f"{ploc}/birthTime"
    locs["birth_place"] = f"{ploc}/birthplace/place/addr/county"
    if not _usable(patient):
        return ident

    listed: list[str] = []
    used_sp: str | None = None
    for name in patient.findall(_NAME):
        if not _usable(name):
            continue
        for part in name:
            if part.tag not in (_FAMILY, _GIVEN) or not _usable(part):
                continue
            quals = _qualifiers(part)
            text = _text(part)
            if part.tag == _FAMILY:
                if "BR" in quals and ident.birth_name is None:
                    ident.birth_name = text
                    locs["birth_name"] = f"{ploc}/name/family[@qualifier='BR']"
                elif "CL" in quals and ident.used_name is None:
                    ident.used_name = text
                elif "SP" in quals and used_sp is None:
                    used_sp = text
            elif "BR" in quals:
                if ident.first_given_name is None:
                    ident.first_given_name = text
                    locs["first_given_name"] = f"{ploc}/name/given[@qualifier='BR']"
            elif "CL" in quals:
                if ident.used_given_name is None:
                    ident.used_given_name = text
            elif not quals:
                listed.append(text)
                locs["given_names"] = f"{ploc}/name/given[not(@qualifier)]"
    if ident.used_name is None:
        ident.used_name = used_sp
    if listed:
        ident.given_names_list = " ".join(listed)
        ident.given_names = ident.given_names_list.split()

    gender = patient.find(_GENDER)
    code = gender.get("code") if _usable(gender) else None
    if code is not None:
        ident.gender = code
        if code in ("M", "F"):
            ident.sex, ident.gender_kind = ("M" if code == "M" else "F"), "sex"
        elif code == "U":
            ident.gender_kind = "undetermined"
        else:
            ident.gender_kind = "invalid"
        locs["sex"] = f"{ploc}/administrativeGenderCode/@code"

    birth = patient.find(_BIRTH_TIME)
    value = birth.get("value") if _usable(birth) else None
    if value is not None:
        ident.birth_date = _cda_date(value.strip())
        locs["birth_date"] = f"{ploc}/birthTime/@value"

    county: Any = patient
    for tag in (_BIRTHPLACE, _PLACE, _ADDR, _COUNTY):
        county = county.find(tag)
        if not _usable(county):
            break
    else:
        ident.birth_place = _text(county).strip()
    return ident


@check("ins.cda", kind="cda", service="INS", rules=CDA_RULES)
def ins_cda(document: Any) -> Iterator[Finding]:
    """INS rules on the CDA header's patient: matricule, OID, strict traits and NIR coherence.

    Strict traits are required only when the patient carries an INS: without one, the header's
    content is the CDA checks' business, not the INS socle's.
    """
    if isinstance(document, bytes | bytearray):
        try:
            document = parse_xml(bytes(document))
        except InputError as exc:
            yield Finding(exc.rule, "error", exc.message, None)
            return
    root = document.getroot() if isinstance(document, etree._ElementTree) else document
    if root.tag != _CLINICAL_DOCUMENT and next(root.iter(_CLINICAL_DOCUMENT), None) is None:
        yield Finding("INPUT.XML", "error", "no CDA ClinicalDocument (urn:hl7-org:v3) element", "/")
        return
    for ident in identities_from_cda(root):
        yield from identity_findings(ident, traits_required=ident.has_ins)


__all__ = ["CDA_RULES", "identities_from_cda", "ins_cda"]
