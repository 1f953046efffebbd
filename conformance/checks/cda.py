"""CI-SIS header rules on CDA R2 documents (``ClinicalDocument``), rule ids ``CDA.*``.

What the CI-SIS (volet *Structuration minimale des documents de santé*) requires of every document's
header, calibrated on ANS's official examples (every one of them passes these rules):

- ``realmCode`` ``FR``; ``typeId`` ``2.16.840.1.113883.1.3`` / ``POCD_HD000040``; templateIds
  ``2.16.840.1.113883.2.8.2.1`` (HL7 France) and ``1.2.250.1.213.1.1.1.1`` (CI-SIS) plus the volet's own;
- ``id`` (root an OID or a UUID), ``code`` (coded, in JDV_J07 typeCode), ``title``, ``effectiveTime``
  (HL7 TS), ``confidentialityCode`` N/R/V (``2.16.840.1.113883.5.25``), ``languageCode`` ``fr-FR``,
  ``setId``, ``versionNumber`` (positive integer);
- one ``recordTarget/patientRole`` with an ``id`` (its INS is judged by ``ins.cda``, not here);
- ``author`` (time, ``assignedAuthor/id``, a person or an authoring device), ``custodian`` (organization
  with an ``id``), ``legalAuthenticator`` (time, ``signatureCode`` ``S``, ``assignedEntity/id``),
  ``documentationOf/serviceEvent`` (with an ``effectiveTime``), ``componentOf/encompassingEncounter``
  (``effectiveTime``, ``location/healthCareFacility/code`` in JDV_J02).

Severity follows what the CI-SIS states: a missing or wrong required element is an ``error``; RPPS and
FINESS check digits are ``warning``s (the CI-SIS does not require them and ANS's own examples use
fictitious identifiers); a timezone written ``+100`` is a ``warning`` (the HL7 XSD pattern accepts it,
ISO 8601 does not).  Every finding is located by an XPath without namespace prefixes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from conformance.checks.luhn import luhn_ok
from conformance.checks.registry import check
from conformance.model import Finding, Severity
from conformance.parsing import InputError, parse_xml
from conformance.terminology import Terminology, builtin

V3 = "urn:hl7-org:v3"
_CD = f"{{{V3}}}ClinicalDocument"

HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
TYPE_ID_ROOT = "2.16.840.1.113883.1.3"
TYPE_ID_EXTENSION = "POCD_HD000040"
CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"
CONFIDENTIALITY_CODES = ("N", "R", "V")
RPPS_OID = "1.2.250.1.71.4.2.1"  # identifiants nationaux des professionnels (IdNat_PS)
FINESS_OID = "1.2.250.1.71.4.2.2"  # identifiants nationaux des structures (IdNat_Struct)
J07_TYPE_CODE = "1.2.250.1.213.1.1.5.471"
J02_FACILITY = "1.2.250.1.213.1.1.5.466"

RULES: dict[str, str] = {
    "CDA.DOCUMENT": "Le document est un ClinicalDocument CDA R2 (urn:hl7-org:v3)",
    "CDA.REALM": "realmCode présent avec @code='FR'",
    "CDA.TYPEID": "typeId @root='2.16.840.1.113883.1.3' @extension='POCD_HD000040'",
    "CDA.TEMPLATE": "templateIds 2.16.840.1.113883.2.8.2.1 (HL7 France) et 1.2.250.1.213.1.1.1.1 (CI-SIS) présents",
    "CDA.TEMPLATE.VOLET": "templateId du modèle de document (volet) présent",
    "CDA.ID": "Identifiant unique du document (id/@root) présent",
    "CDA.OID": "Racine d'identifiant (@root) : OID ou UUID valide",
    "CDA.CODE": "Type de document (code) présent avec @code et @codeSystem",
    "CDA.CODE.VALUESET": "Type de document (code) dans le jeu de valeurs JDV_J07-XdsTypeCode-CISIS",
    "CDA.TITLE": "Titre du document (title) présent et non vide",
    "CDA.EFFECTIVE-TIME": "Date de création du document (effectiveTime) présente, au format HL7 TS",
    "CDA.EFFECTIVE-TIME.PRECISION": "Date de création précise à la minute au moins, avec décalage UTC",
    "CDA.TS": "Horodatages de l'en-tête au format HL7 TS (date valide)",
    "CDA.TS.TZ": "Décalage horaire au format ±HHMM",
    "CDA.CONFIDENTIALITY": "confidentialityCode N, R ou V du système 2.16.840.1.113883.5.25",
    "CDA.LANGUAGE": "languageCode @code='fr-FR'",
    "CDA.SETID": "Identifiant du lot de versions (setId/@root) présent",
    "CDA.VERSION": "versionNumber présent, entier strictement positif",
    "CDA.RECORD-TARGET": "Un recordTarget/patientRole avec un identifiant et un patient",
    "CDA.AUTHOR": "Auteur : au moins un author avec time et une personne ou un dispositif",
    "CDA.AUTHOR.ID": "Auteur : assignedAuthor/id présent",
    "CDA.RPPS": "Identifiant RPPS (8 + RPPS 11 chiffres, clé de Luhn)",
    "CDA.CUSTODIAN": "Structure conservant le document (custodian) avec un identifiant",
    "CDA.FINESS": "Identifiant FINESS (1 + FINESS 9 caractères, clé de Luhn)",
    "CDA.LEGAL-AUTHENTICATOR": "Responsable du document (legalAuthenticator) : time, signatureCode S, id",
    "CDA.SERVICE-EVENT": "Acte documenté (documentationOf/serviceEvent) avec effectiveTime",
    "CDA.ENCOUNTER": "Prise en charge (componentOf/encompassingEncounter) avec effectiveTime et lieu",
    "CDA.ENCOUNTER.FACILITY": "Cadre d'exercice (healthCareFacility/code) dans JDV_J02-HealthcareFacilityTypeCode",
}

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# HL7 V3 datatypes-base.xsd, type ts: what CDA_extended.xsd accepts.
_TS = re.compile(r"(?P<d>[0-9]{1,8})|(?P<dt>[0-9]{9,14}|[0-9]{14}\.[0-9]+)(?P<tz>[+-][0-9]{1,4})?")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _q(tag: str) -> str:
    return f"{{{V3}}}{tag}"


def _usable(el: Any) -> bool:
    return el is not None and el.get("nullFlavor") is None


def _text(el: Any) -> str:
    return "".join(t for t in el.itertext() if isinstance(t, str)).strip()


def is_oid_or_uuid(value: str | None) -> bool:
    return bool(value) and bool(_OID.fullmatch(value or "") or _UUID.fullmatch(value or ""))


def ts_problem(value: str | None) -> tuple[str | None, str | None]:
    """``(error, warning)`` for an HL7 TS literal: syntax/calendar errors, then a non-ISO timezone."""
    if value is None or value == "":
        return "valeur absente", None
    m = _TS.fullmatch(value)
    if m is None:
        return f"{value!r} n'est pas un horodatage HL7 TS (AAAA[MM[JJ[hh[mm[ss]]]]][±HHMM])", None
    digits = (m.group("d") or m.group("dt") or "").split(".")[0]
    parts = [digits[0:4], digits[4:6], digits[6:8], digits[8:10], digits[10:12], digits[12:14]]
    if len(digits) % 2 and len(digits) > 4:
        return f"{value!r} : composante de date incomplète", None
    if len(digits) < 4:
        return f"{value!r} : l'année doit avoir 4 chiffres", None
    month, day, hour, minute, sec = (int(p) if p else None for p in parts[1:])
    if month is not None and not 1 <= month <= 12:
        return f"{value!r} : mois {month:02d} invalide", None
    if day is not None and month is not None:
        year = int(parts[0])
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        if not 1 <= day <= (_DAYS[month - 1] if month != 2 else (29 if leap else 28)):
            return f"{value!r} : jour {day:02d} invalide", None
    if (hour is not None and hour > 23) or (minute is not None and minute > 59) or (sec is not None and sec > 60):
        return f"{value!r} : heure invalide", None
    tz = m.group("tz")
    if tz is not None:
        if len(tz) != 5:
            return None, f"{value!r} : décalage horaire {tz!r} attendu sur 4 chiffres (±HHMM)"
        if int(tz[1:3]) > 14 or int(tz[3:5]) > 59:
            return f"{value!r} : décalage horaire {tz!r} invalide", None
    return None, None


class _Ctx:
    """Collects findings with XPath locations relative to the document element."""

    def __init__(self, doc: Any, prefix: str, terminology: Terminology) -> None:
        self.doc = doc
        self.prefix = prefix
        self.term = terminology
        self.out: list[Finding] = []

    def add(self, rule: str, severity: Severity, message: str, path: str) -> None:
        loc = self.prefix + (("/" + path) if path else "")
        self.out.append(Finding(rule, severity, message, loc))

    def err(self, rule: str, message: str, path: str) -> None:
        self.add(rule, "error", message, path)

    def warn(self, rule: str, message: str, path: str) -> None:
        self.add(rule, "warning", message, path)


def _indexed(parent: Any, tag: str, base: str) -> list[tuple[Any, str]]:
    els = parent.findall(_q(tag))
    if len(els) == 1:
        return [(els[0], f"{base}{tag}")]
    return [(el, f"{base}{tag}[{i}]") for i, el in enumerate(els, 1)]


def _check_ts(ctx: _Ctx, el: Any, path: str, *, required: bool, what: str, allow_null: bool = True) -> None:
    """A TS element (``time``, ``effectiveTime``) or an IVL_TS with ``low``/``high``/``center``."""
    if el is None:
        if required:
            ctx.err("CDA.TS", f"{what} : horodatage absent", path)
        return
    if el.get("nullFlavor") is not None:
        if not allow_null:
            ctx.err("CDA.TS", f"{what} : nullFlavor interdit", path)
        return
    values: list[tuple[str | None, str]] = []
    if el.get("value") is not None:
        values.append((el.get("value"), f"{path}/@value"))
    for bound in ("low", "high", "center"):
        b = el.find(_q(bound))
        if b is not None and b.get("nullFlavor") is None:
            values.append((b.get("value"), f"{path}/{bound}/@value"))
    if not values:
        if required:
            ctx.err("CDA.TS", f"{what} : ni @value ni low/high", path)
        return
    for value, vpath in values:
        error, warning = ts_problem(value)
        if error:
            ctx.err("CDA.TS", f"{what} : {error}", vpath)
        elif warning:
            ctx.warn("CDA.TS.TZ", f"{what} : {warning}", vpath)


def _check_ps_ids(ctx: _Ctx, owner: Any, base: str, what: str) -> None:
    """RPPS identifiers (``8`` + RPPS) under IdNat_PS: format and Luhn key, as warnings."""
    for idel, ipath in _indexed(owner, "id", base):
        if idel.get("root") != RPPS_OID:
            continue
        ext = (idel.get("extension") or "").strip()
        if not ext.startswith("8"):
            continue  # ADELI (0…), staff of a structure (3/4/5…/local id): no national check digit
        rpps = ext[1:]
        if len(rpps) != 11 or not rpps.isdigit():
            ctx.warn("CDA.RPPS", f"{what} : identifiant {ext!r} : RPPS attendu sur 11 chiffres après '8'", ipath)
        elif not luhn_ok(rpps):
            ctx.warn("CDA.RPPS", f"{what} : RPPS {rpps} : clé de Luhn incorrecte (identifiant fictif ?)", ipath)


def _check_finess(ctx: _Ctx, owner: Any, base: str, what: str) -> None:
    for idel, ipath in _indexed(owner, "id", base):
        if idel.get("root") != FINESS_OID:
            continue
        ext = (idel.get("extension") or "").strip()
        if not ext.startswith("1"):
            continue  # SIREN (2), SIRET (3), RPPS rang (4): other registries
        finess = ext[1:]
        if len(finess) != 9:
            ctx.warn("CDA.FINESS", f"{what} : identifiant {ext!r} : FINESS attendu sur 9 caractères après '1'", ipath)
        elif finess.isdigit() and not luhn_ok(finess):
            ctx.warn("CDA.FINESS", f"{what} : FINESS {finess} : clé de Luhn incorrecte (identifiant fictif ?)", ipath)


def _has_id(owner: Any) -> bool:
    return any(_usable(i) and (i.get("root") or i.get("extension")) for i in owner.findall(_q("id")))


def _value_set(ctx: _Ctx, key: str, el: Any, path: str, rule: str, what: str) -> None:
    code, system = el.get("code"), el.get("codeSystem")
    found, vs = ctx.term.lookup(key, code, system)
    if found != "unknown" or vs is None:
        return
    label = vs.name.removesuffix(".tabs") or key
    if vs.authoritative:
        ctx.err(rule, f"{what} {code!r} ({system}) absent du jeu de valeurs {label}", path)
    else:
        ctx.warn(
            rule,
            f"{what} {code!r} ({system}) absent du sous-ensemble intégré de {label} "
            "(donner le jeu officiel avec --terminology pour trancher)",
            path,
        )


def header_findings(
    doc: Any, *, prefix: str = "/ClinicalDocument", terminology: Terminology | None = None
) -> list[Finding]:
    """All ``CDA.*`` findings of one ClinicalDocument element."""
    ctx = _Ctx(doc, prefix, terminology if terminology is not None else builtin())
    _root_elements(ctx, doc)
    _identification(ctx, doc)
    _participants(ctx, doc)
    _context(ctx, doc)
    return ctx.out


def _root_elements(ctx: _Ctx, doc: Any) -> None:
    realms = [r.get("code") for r in doc.findall(_q("realmCode"))]
    if not realms:
        ctx.err("CDA.REALM", "realmCode absent (attendu @code='FR')", "realmCode")
    elif "FR" not in realms:
        ctx.err("CDA.REALM", f"realmCode {realms[0]!r} : attendu 'FR'", "realmCode/@code")

    type_id = doc.find(_q("typeId"))
    if type_id is None:
        ctx.err("CDA.TYPEID", "typeId absent", "typeId")
    elif type_id.get("root") != TYPE_ID_ROOT or type_id.get("extension") != TYPE_ID_EXTENSION:
        ctx.err(
            "CDA.TYPEID",
            f"typeId {type_id.get('root')!r}/{type_id.get('extension')!r} : attendu {TYPE_ID_ROOT}/{TYPE_ID_EXTENSION}",
            "typeId",
        )

    templates = [t.get("root") for t in doc.findall(_q("templateId"))]
    for required, label in ((HL7_FRANCE_TEMPLATE, "HL7 France"), (CISIS_TEMPLATE, "CI-SIS")):
        if required not in templates:
            ctx.err("CDA.TEMPLATE", f"templateId {required} ({label}) absent", "templateId")
    if not [t for t in templates if t not in (HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE)]:
        ctx.warn(
            "CDA.TEMPLATE.VOLET",
            "aucun templateId de modèle de document (volet) en plus des templateIds CI-SIS",
            "templateId",
        )


def _identification(ctx: _Ctx, doc: Any) -> None:
    ident = doc.find(_q("id"))
    if not _usable(ident) or not ident.get("root"):
        ctx.err("CDA.ID", "identifiant du document (id/@root) absent", "id")
    elif not is_oid_or_uuid(ident.get("root")):
        ctx.err("CDA.OID", f"id/@root {ident.get('root')!r} n'est ni un OID ni un UUID", "id/@root")

    code = doc.find(_q("code"))
    if not _usable(code) or not code.get("code") or not code.get("codeSystem"):
        ctx.err("CDA.CODE", "type de document (code avec @code et @codeSystem) absent", "code")
    else:
        _value_set(ctx, J07_TYPE_CODE, code, "code", "CDA.CODE.VALUESET", "type de document")

    title = doc.find(_q("title"))
    if title is None or not _text(title):
        ctx.err("CDA.TITLE", "titre du document (title) absent ou vide", "title")

    eff = doc.find(_q("effectiveTime"))
    if not _usable(eff) or not eff.get("value"):
        ctx.err("CDA.EFFECTIVE-TIME", "date de création du document (effectiveTime/@value) absente", "effectiveTime")
    else:
        value = eff.get("value")
        error, warning = ts_problem(value)
        if error:
            ctx.err("CDA.EFFECTIVE-TIME", f"effectiveTime : {error}", "effectiveTime/@value")
        else:
            if warning:
                ctx.warn("CDA.TS.TZ", f"effectiveTime : {warning}", "effectiveTime/@value")
            m = _TS.fullmatch(value)
            if m is not None and (m.group("tz") is None or len(m.group("dt") or m.group("d") or "") < 12):
                ctx.warn(
                    "CDA.EFFECTIVE-TIME.PRECISION",
                    f"effectiveTime {value!r} : attendu au moins AAAAMMJJhhmm avec décalage UTC (±HHMM)",
                    "effectiveTime/@value",
                )

    conf = doc.find(_q("confidentialityCode"))
    if conf is None:
        ctx.err("CDA.CONFIDENTIALITY", "confidentialityCode absent", "confidentialityCode")
    elif conf.get("code") not in CONFIDENTIALITY_CODES or conf.get("codeSystem") != CONFIDENTIALITY_SYSTEM:
        ctx.err(
            "CDA.CONFIDENTIALITY",
            f"confidentialityCode {conf.get('code')!r} ({conf.get('codeSystem')}) : attendu N, R ou V "
            f"du système {CONFIDENTIALITY_SYSTEM}",
            "confidentialityCode",
        )

    lang = doc.find(_q("languageCode"))
    if lang is None or lang.get("code") != "fr-FR":
        got = None if lang is None else lang.get("code")
        ctx.err("CDA.LANGUAGE", f"languageCode {got!r} : attendu 'fr-FR'", "languageCode")

    set_id = doc.find(_q("setId"))
    if not _usable(set_id) or not set_id.get("root"):
        ctx.err("CDA.SETID", "setId/@root absent", "setId")
    elif not is_oid_or_uuid(set_id.get("root")):
        ctx.err("CDA.OID", f"setId/@root {set_id.get('root')!r} n'est ni un OID ni un UUID", "setId/@root")

    version = doc.find(_q("versionNumber"))
    raw = None if version is None else version.get("value")
    if raw is None or not raw.strip().isdigit() or int(raw) < 1:
        ctx.err("CDA.VERSION", f"versionNumber {raw!r} : entier strictement positif attendu", "versionNumber")


def _participants(ctx: _Ctx, doc: Any) -> None:
    targets = doc.findall(_q("recordTarget"))
    if not targets:
        ctx.err("CDA.RECORD-TARGET", "recordTarget (patient) absent", "recordTarget")
    elif len(targets) > 1:
        ctx.err("CDA.RECORD-TARGET", f"{len(targets)} recordTarget : un seul patient attendu", "recordTarget")
    else:
        role = targets[0].find(_q("patientRole"))
        if role is None:
            ctx.err("CDA.RECORD-TARGET", "recordTarget/patientRole absent", "recordTarget/patientRole")
        else:
            if not _has_id(role):
                ctx.err(
                    "CDA.RECORD-TARGET", "identifiant du patient (patientRole/id) absent", "recordTarget/patientRole/id"
                )
            if role.find(_q("patient")) is None:
                ctx.err("CDA.RECORD-TARGET", "patientRole/patient absent", "recordTarget/patientRole/patient")

    authors = _indexed(doc, "author", "")
    if not authors:
        ctx.err("CDA.AUTHOR", "aucun auteur (author)", "author")
    for author, apath in authors:
        _check_ts(ctx, author.find(_q("time")), f"{apath}/time", required=True, what="author/time")
        assigned = author.find(_q("assignedAuthor"))
        if assigned is None:
            ctx.err("CDA.AUTHOR", "author/assignedAuthor absent", f"{apath}/assignedAuthor")
            continue
        if not _has_id(assigned):
            ctx.err("CDA.AUTHOR.ID", "identifiant de l'auteur (assignedAuthor/id) absent", f"{apath}/assignedAuthor/id")
        else:
            _check_ps_ids(ctx, assigned, f"{apath}/assignedAuthor/", "auteur")
        if assigned.find(_q("assignedPerson")) is None and assigned.find(_q("assignedAuthoringDevice")) is None:
            ctx.err(
                "CDA.AUTHOR",
                "auteur sans assignedPerson ni assignedAuthoringDevice",
                f"{apath}/assignedAuthor",
            )

    cpath = "custodian/assignedCustodian/representedCustodianOrganization"
    org = doc.find(f"{_q('custodian')}/{_q('assignedCustodian')}/{_q('representedCustodianOrganization')}")
    if doc.find(_q("custodian")) is None:
        ctx.err("CDA.CUSTODIAN", "structure conservant le document (custodian) absente", "custodian")
    elif org is None:
        ctx.err("CDA.CUSTODIAN", "custodian sans representedCustodianOrganization", cpath)
    elif not _has_id(org):
        ctx.err(
            "CDA.CUSTODIAN", "identifiant de la structure (representedCustodianOrganization/id) absent", f"{cpath}/id"
        )
    else:
        _check_finess(ctx, org, f"{cpath}/", "custodian")

    legal = doc.find(_q("legalAuthenticator"))
    if legal is None:
        ctx.err("CDA.LEGAL-AUTHENTICATOR", "responsable du document (legalAuthenticator) absent", "legalAuthenticator")
    else:
        time = legal.find(_q("time"))
        if time is None:
            ctx.err("CDA.LEGAL-AUTHENTICATOR", "legalAuthenticator/time absent", "legalAuthenticator/time")
        else:
            _check_ts(ctx, time, "legalAuthenticator/time", required=True, what="legalAuthenticator/time")
        sig = legal.find(_q("signatureCode"))
        if sig is None or sig.get("code") != "S":
            got = None if sig is None else sig.get("code")
            ctx.err(
                "CDA.LEGAL-AUTHENTICATOR", f"signatureCode {got!r} : attendu 'S'", "legalAuthenticator/signatureCode"
            )
        entity = legal.find(_q("assignedEntity"))
        if entity is None or not _has_id(entity):
            ctx.err(
                "CDA.LEGAL-AUTHENTICATOR",
                "identifiant du responsable (assignedEntity/id) absent",
                "legalAuthenticator/assignedEntity/id",
            )
        else:
            _check_ps_ids(ctx, entity, "legalAuthenticator/assignedEntity/", "legalAuthenticator")


def _context(ctx: _Ctx, doc: Any) -> None:
    events: list[tuple[Any, str]] = []
    for dof, dpath in _indexed(doc, "documentationOf", ""):
        se = dof.find(_q("serviceEvent"))
        if se is not None:
            events.append((se, f"{dpath}/serviceEvent"))
    if not events:
        ctx.err("CDA.SERVICE-EVENT", "acte documenté (documentationOf/serviceEvent) absent", "documentationOf")
    elif all(se.find(_q("effectiveTime")) is None for se, _ in events):
        ctx.err("CDA.SERVICE-EVENT", "aucun serviceEvent ne porte d'effectiveTime", f"{events[0][1]}/effectiveTime")
    for se, spath in events:
        _check_ts(ctx, se.find(_q("effectiveTime")), f"{spath}/effectiveTime", required=False, what="serviceEvent")

    epath = "componentOf/encompassingEncounter"
    enc = doc.find(f"{_q('componentOf')}/{_q('encompassingEncounter')}")
    if enc is None:
        ctx.err("CDA.ENCOUNTER", "prise en charge (componentOf/encompassingEncounter) absente", epath)
        return
    eff = enc.find(_q("effectiveTime"))
    if eff is None:
        ctx.err("CDA.ENCOUNTER", "encompassingEncounter/effectiveTime absent", f"{epath}/effectiveTime")
    else:
        _check_ts(ctx, eff, f"{epath}/effectiveTime", required=False, what="encompassingEncounter")
    fpath = f"{epath}/location/healthCareFacility/code"
    code = enc.find(f"{_q('location')}/{_q('healthCareFacility')}/{_q('code')}")
    if code is None:
        ctx.err("CDA.ENCOUNTER", "lieu de prise en charge (location/healthCareFacility/code) absent", fpath)
    elif _usable(code):
        _value_set(ctx, J02_FACILITY, code, fpath, "CDA.ENCOUNTER.FACILITY", "cadre d'exercice")


def find_clinical_document(root: Any) -> tuple[Any, str] | None:
    """The ClinicalDocument and its XPath prefix (``//ClinicalDocument`` when embedded, e.g. auto-présentable)."""
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    if root.tag == _CD:
        return root, ("/ClinicalDocument" if root.getparent() is None else "//ClinicalDocument")
    doc = next(root.iter(_CD), None)
    return (doc, "//ClinicalDocument") if doc is not None else None


@check("cda.header", kind="cda", service="CDA", rules=RULES)
def cda_header(document: Any, *, terminology: Terminology | None = None) -> Iterator[Finding]:
    """CI-SIS header rules; ``terminology`` adds the official value sets (built-in subsets otherwise)."""
    if isinstance(document, bytes | bytearray):
        try:
            document = parse_xml(bytes(document))
        except InputError as exc:
            yield Finding(exc.rule, "error", exc.message, None)
            return
    found = find_clinical_document(document)
    if found is None:
        yield Finding("CDA.DOCUMENT", "error", "aucun élément ClinicalDocument (urn:hl7-org:v3)", "/")
        return
    doc, prefix = found
    yield from header_findings(doc, prefix=prefix, terminology=terminology)


__all__ = [
    "RULES",
    "cda_header",
    "find_clinical_document",
    "header_findings",
    "is_oid_or_uuid",
    "luhn_ok",
    "ts_problem",
]
