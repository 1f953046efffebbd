"""DMP document metadata: one model, two encodings (XDS.b ebRIM in :mod:`xds`, MHD FHIR in :mod:`mhd`).

Why one model: the DMP judges the *same* metadata whether a vendor submits it over ITI-41 (ebRIM
``SubmitObjectsRequest``) or over ITI-65 (FHIR transaction Bundle).  Each parser only *reads* its
encoding into :class:`DocumentEntry` / :class:`SubmissionSet` (and reports what is structurally
missing in its own terms); every semantic rule — value sets, patientId = INS, author identifiers,
typeCode → classCode (ASS_X04), CDA model → formatCode (ASS_A11), RPLC, consistency with the CDA
header, hash and size — lives here once, and is emitted under the encoding's prefix (``XDS.`` or
``MHD.``) so that a requirement can be mapped to one transport or both.  ``DMP.PATIENTID`` and
``DMP.RPLC`` are DMP-level rules and keep the same id in both encodings.

Terminology (value sets JDV J02…J66 and the NOS correspondences) is loaded *once*, outside the
checks: the shipped subsets under ``conformance/data/valuesets_dmp`` (codes and code-system OIDs,
written from the official NOS files, each naming its source), or the official NOS files themselves
(FHIR JSON ValueSet/ConceptMap, IHE SVS XML, derived CSV) from directories the user names.  The
checks receive the loaded :class:`DmpTerminology`; they never read files.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from lxml import etree

from conformance.checks.ins import (
    INS_OIDS,
    NIA_OIDS,
    NIR_OIDS,
    is_nia,
    key_is_valid,
    matricule_problem,
    nir_key,
    normalize_oid,
    parse_matricule,
)
from conformance.checks.luhn import luhn_ok
from conformance.model import Finding
from conformance.parsing import InputError, parse_json, parse_xml

# --- Identifiers ------------------------------------------------------------------------------------

RPPS_OID = "1.2.250.1.71.4.2.1"
"""National identifiers of health professionals (8 + RPPS, 0 + ADELI) and of devices/staff (structure/local)."""
STRUCTURE_OID = "1.2.250.1.71.4.2.2"
"""National identifiers of structures (1 + FINESS, 3 + SIRET, 4 + RPPS-cabinet …)."""
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
LOINC_OID = "2.16.840.1.113883.6.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
"""FHIR system of bare RPPS numbers (11 digits); equivalent to ``8`` + RPPS under :data:`RPPS_OID`."""

N1_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"
"""CDA "niveau 1" (unstructured body) model: the formatCode follows from the embedded media type."""

# NOS code systems: FHIR URL (https://mos.esante.gouv.fr/NOS/<name>/FHIR/<name with dashes>) → the
# OID XDS carries in ``codingScheme``.  Checked against the CodeSystem files' ``identifier`` and the
# ``codeSystem`` attributes of the SVS value sets of ANS's pack; systems whose OID is not published in
# that material are absent and matched on the code alone.
NOS_SYSTEM_OIDS: dict[str, str] = {
    "TRE_A00-ProducteurDocNonPS": "1.2.250.1.213.1.1.4.6",
    "TRE_A01-CadreExercice": "1.2.250.1.213.1.1.4.9",
    "TRE_A02-ProfessionSavFaire-CISIS": "1.2.250.1.213.1.1.4.5",
    "TRE_A03-ClasseDocument": "1.2.250.1.213.1.1.4.1",
    "TRE_A04-Loinc": LOINC_OID,
    "TRE_A05-TypeDocComplementaire": "1.2.250.1.213.1.1.4.12",
    "TRE_A06-FormatCodeComplementaire": "1.2.250.1.213.1.1.4.2.282",
    "TRE_A07-StatutVisibiliteDocument": "1.2.250.1.213.1.1.4.13",
    "TRE_A08-HL7Confidentiality": CONFIDENTIALITY_OID,
    "TRE_A09-DICOMuidRegistry": "1.2.840.10008.2.6.1",
    "TRE_A11-IheFormatCode": "1.3.6.1.4.1.19376.1.2.3",
    "TRE_A12-NomenclatureASTM": "ASTM",
    "TRE_R02-SecteurActivite": "1.2.250.1.71.4.2.4",
}
# FHIR systems that are not NOS URLs but name the same code systems.
FHIR_SYSTEM_OIDS: dict[str, str] = {
    "http://loinc.org": LOINC_OID,
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality": CONFIDENTIALITY_OID,
}
_NOS_URL = re.compile(r"https?://mos\.esante\.gouv\.fr/NOS/([A-Za-z0-9_-]+?)(?:/FHIR/.*)?$")


def system_oid(system: str | None) -> str | None:
    """OID of a code system given as a FHIR URL, ``urn:oid:…`` or a bare OID; ``None`` when unknown."""
    if not system:
        return None
    if system.startswith("urn:oid:"):
        return system[8:]
    if system in FHIR_SYSTEM_OIDS:
        return FHIR_SYSTEM_OIDS[system]
    m = _NOS_URL.match(system)
    if m:
        return NOS_SYSTEM_OIDS.get(m.group(1))
    return system if _OID.fullmatch(system) else None


# --- Terminology ------------------------------------------------------------------------------------

Slot = Literal["class", "type", "confidentiality", "format", "facility", "practice", "contentType", "specialty"]

VALUE_SET_PROFILES: dict[str, dict[Slot, str]] = {
    # What the DMP itself accepts (JDV "…-DMP"), the default for a DMP submission.
    "dmp": {
        "class": "J57",
        "type": "J66",
        "confidentiality": "J58",
        "format": "J60",
        "facility": "J61",
        "practice": "J62",
        "contentType": "J59",
        "specialty": "J56",
    },
    # The CI-SIS sets (any XDS affinity domain of the CI-SIS, e.g. an MSSanté XDM or a regional repository).
    "cisis": {
        "class": "J06",
        "type": "J07",
        "confidentiality": "J08",
        "format": "J10",
        "facility": "J02",
        "practice": "J04",
        "contentType": "J03",
        "specialty": "J01",
    },
}
VALUE_SET_IDS: tuple[str, ...] = tuple(sorted({v for p in VALUE_SET_PROFILES.values() for v in p.values()}))


@dataclass(frozen=True, slots=True)
class ValueSet:
    """Codes of one JDV; ``codes`` maps a code to the OIDs of the systems it is listed under (``None``: unknown)."""

    id: str
    name: str
    oid: str | None
    source: str
    codes: Mapping[str, frozenset[str | None]]

    def verdict(self, code: str, scheme: str | None, system_name: str | None = None) -> str | None:
        """Why ``code`` is not in the set under ``scheme``, or ``None`` when it is.

        The code decides first.  The system is then compared where both sides allow it: by NOS name
        (``nos:TRE_R209-TypeActivite``) when the coding came from a NOS URL and the set knows the name,
        else by OID when the set knows the OID of every system listing the code (the NOS does not
        publish an OID for every system, and XDS ``codingScheme`` spellings vary).
        """
        systems = self.codes.get(code)
        if systems is None:
            return f"code {code!r} is not in {self.name}"
        names = {s for s in systems if s and s.startswith("nos:")}
        oids = {s for s in systems if s and not s.startswith("nos:")}
        shown = "/".join(sorted(oids | {n[4:] for n in names}))
        if system_name and names:
            if f"nos:{system_name}" in names:
                return None
            return f"code {code!r} of {self.name} belongs to {shown}, not {system_name}"
        if not scheme or scheme in oids or None in systems:
            return None
        if is_oid(scheme) or scheme in ("ASTM", "URN"):
            if names and not oids:
                return None  # only NOS names known for this code: an OID cannot be judged
            if oids:
                return f"code {code!r} of {self.name} belongs to {shown}, not {scheme}"
            return None
        return f"code {code!r} of {self.name} belongs to {shown}, not {scheme}"


@dataclass(frozen=True, slots=True)
class DmpTerminology:
    """Value sets by JDV id (``J06`` …) and the NOS correspondences the checks need."""

    valuesets: Mapping[str, ValueSet]
    type_to_class: Mapping[str, frozenset[str]]
    """ASS_X04: typeCode → classCode(s)."""
    template_to_format: Mapping[str, frozenset[str]]
    """ASS_A11: CDA model templateId → formatCode(s)."""
    media_to_format: Mapping[str, str]
    """ASS_A12: ``nonXMLBody/text/@mediaType`` of a CDA N1 → formatCode."""
    sources: tuple[str, ...] = ()


def _codes_from_include(include: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str | None]]:
    """``code → {OID, "nos:<system name>"}``; ``None`` when neither is known for that system."""
    out: dict[str, set[str | None]] = {}
    for inc in include:
        keys: set[str | None] = set()
        if inc.get("oid"):
            keys.add(str(inc["oid"]))
        if inc.get("system"):
            keys.add(f"nos:{inc['system']}")
        for code in inc.get("codes") or ():
            out.setdefault(str(code), set()).update(keys or {None})
    return {k: frozenset(v) for k, v in out.items()}


def nos_name(system: str | None) -> str | None:
    """``TRE_R209-TypeActivite`` for a NOS FHIR URL, else ``None``."""
    m = _NOS_URL.match(system or "")
    return m.group(1) if m else None


def _shipped_dir() -> Any:
    return resources.files("conformance").joinpath("data/valuesets_dmp")


@cache
def shipped_terminology() -> DmpTerminology:
    """The subsets shipped with the package (written from the NOS files named in each ``source:``)."""
    base = _shipped_dir()
    valuesets: dict[str, ValueSet] = {}
    for vid in VALUE_SET_IDS:
        data = yaml.safe_load(base.joinpath(f"{vid}.yaml").read_text(encoding="utf-8"))
        valuesets[vid] = ValueSet(
            id=vid,
            name=str(data["name"]),
            oid=data.get("oid"),
            source=str(data["source"]),
            codes=_codes_from_include(data["include"]),
        )
    x04 = yaml.safe_load(base.joinpath("ass_x04.yaml").read_text(encoding="utf-8"))
    a11 = yaml.safe_load(base.joinpath("ass_a11.yaml").read_text(encoding="utf-8"))
    return DmpTerminology(
        valuesets=valuesets,
        type_to_class={str(k): frozenset(map(str, v)) for k, v in x04["map"].items()},
        template_to_format={str(k): frozenset(map(str, v)) for k, v in a11["map"].items()},
        media_to_format={str(k): str(v) for k, v in a11["media_types"].items()},
        sources=("shipped subsets (conformance/data/valuesets_dmp)",),
    )


# Loading official NOS files (I/O; done once by the caller, never inside a check) ---------------------


def _fhir_valueset(data: Any, vid: str, path: Path) -> ValueSet:
    if not isinstance(data, dict) or data.get("resourceType") != "ValueSet":
        raise InputError("INPUT.JSON", f"{path.name}: not a FHIR ValueSet")
    include: list[dict[str, Any]] = []
    for inc in (data.get("compose") or {}).get("include") or []:
        if not isinstance(inc, dict):
            continue
        codes = [c.get("code") for c in inc.get("concept") or [] if isinstance(c, dict) and c.get("code")]
        include.append({"oid": system_oid(inc.get("system")), "system": nos_name(inc.get("system")), "codes": codes})
    oid = next(
        (normalize_oid(i.get("value")) for i in data.get("identifier") or [] if isinstance(i, dict)),
        None,
    )
    return ValueSet(vid, str(data.get("name") or vid), oid, f"{path.name} (official)", _codes_from_include(include))


_SVS = "urn:ihe:iti:svs:2008"


def _svs_valueset(root: Any, vid: str, path: Path) -> ValueSet:
    vs = root.find(f".//{{{_SVS}}}ValueSet")
    if vs is None:
        raise InputError("INPUT.XML", f"{path.name}: not an IHE SVS value set")
    include = [
        {"oid": c.get("codeSystem"), "codes": [c.get("code")]} for c in vs.iter(f"{{{_SVS}}}Concept") if c.get("code")
    ]
    return ValueSet(
        vid, str(vs.get("displayName") or vid), vs.get("id"), f"{path.name} (official)", _codes_from_include(include)
    )


def _find(dirs: Sequence[Path], patterns: Sequence[str]) -> Path | None:
    for d in dirs:
        for pattern in patterns:
            hits = sorted(d.glob(pattern))
            if hits:
                return hits[0]
    return None


def _concept_map(dirs: Sequence[Path], name: str) -> dict[str, set[str]] | None:
    """``source code → target codes`` from an official ConceptMap JSON, or its derived CSV."""
    path = _find(dirs, [f"ConceptMap-{name}-*.json"])
    out: dict[str, set[str]] = {}
    if path is not None:
        data = parse_json(path.read_bytes())
        for group in data.get("group") or []:
            for el in group.get("element") or []:
                for tgt in el.get("target") or []:
                    if el.get("code") and tgt.get("code"):
                        out.setdefault(str(el["code"]), set()).add(str(tgt["code"]))
        return out
    path = _find(dirs, [f"{name}-*.csv", f"{name.replace('-', '_')}-*.csv"])
    if path is None:
        return None
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        if row.get("source_code") and row.get("target_code"):
            out.setdefault(row["source_code"], set()).add(row["target_code"])
    return out


def load_terminology(*dirs: str | Path) -> DmpTerminology:
    """Official NOS files from ``dirs`` (e.g. ``shared/data/nos`` and ``ans-pack/jeuxDeValeurs``).

    Accepts FHIR ValueSet JSON (``ValueSet-JDV-J06-….json``), IHE SVS XML (``JDV_J02_….xml``),
    ConceptMap JSON or the derived ``ASS-*.csv``.  Whatever is not found falls back to the shipped
    subsets, and :attr:`DmpTerminology.sources` says which file each part came from.  Unreadable files
    raise :class:`~conformance.parsing.InputError` (the caller turns it into an ``INPUT.*`` finding or
    a one-line exit 2).
    """
    paths = [Path(d) for d in dirs]
    valuesets: dict[str, ValueSet] = {}
    sources: list[str] = []
    for vid in VALUE_SET_IDS:
        path = _find(paths, [f"ValueSet-JDV-{vid}-*.json", f"JDV_{vid}[-_]*.xml", f"JDV-{vid}[-_]*.xml"])
        if path is None:
            valuesets[vid] = shipped_terminology().valuesets[vid]
            sources.append(f"{vid}: shipped subset")
            continue
        raw = path.read_bytes()
        if path.suffix == ".json":
            valuesets[vid] = _fhir_valueset(parse_json(raw), vid, path)
        else:
            valuesets[vid] = _svs_valueset(parse_xml(raw), vid, path)
        sources.append(f"{vid}: {path}")
    x04 = _concept_map(paths, "ASS-X04")
    a11 = _concept_map(paths, "ASS-A11")
    a12 = _concept_map(paths, "ASS-A12")
    sources.append(f"ASS_X04: {'official' if x04 is not None else 'shipped subset'}")
    sources.append(f"ASS_A11/A12: {'official' if a11 is not None else 'shipped subset'}")
    return DmpTerminology(
        valuesets=valuesets,
        type_to_class=(
            {k: frozenset(v) for k, v in x04.items()} if x04 is not None else shipped_terminology().type_to_class
        ),
        template_to_format=(
            {k: frozenset(v) for k, v in a11.items()} if a11 is not None else shipped_terminology().template_to_format
        ),
        media_to_format=(
            {k: sorted(v)[0] for k, v in a12.items()} if a12 is not None else shipped_terminology().media_to_format
        ),
        sources=tuple(sources),
    )


def export_subsets(term: DmpTerminology, out: Path, provenance: Mapping[str, str]) -> None:
    """Write the shipped subset files from an officially loaded terminology (maintainers only).

    ``provenance`` maps ``J06``/``ass_x04``/``ass_a11`` to the ``source:`` note naming the official
    file, its version and date.  Only codes and system OIDs are kept (no displays, no metadata).
    """
    out.mkdir(parents=True, exist_ok=True)
    for vid, vs in term.valuesets.items():
        groups: dict[tuple[str, str], list[str]] = {}
        for code, keys in vs.codes.items():
            oid = next((k for k in keys if k and not k.startswith("nos:")), "")
            name = next((k[4:] for k in keys if k and k.startswith("nos:")), "")
            groups.setdefault((oid, name), []).append(code)
        doc = {
            "id": vid,
            "name": vs.name,
            "oid": vs.oid,
            "source": provenance.get(vid, vs.source),
            "include": [
                {"system": name or None, "oid": oid or None, "codes": sorted(codes)}
                for (oid, name), codes in sorted(groups.items())
            ],
        }
        (out / f"{vid}.yaml").write_text(
            yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=110), encoding="utf-8"
        )
    x04 = {
        "source": provenance.get("ass_x04", ""),
        "map": {k: sorted(v) for k, v in sorted(term.type_to_class.items())},
    }
    a11 = {
        "source": provenance.get("ass_a11", ""),
        "map": {k: sorted(v) for k, v in sorted(term.template_to_format.items())},
        "media_types": dict(sorted(term.media_to_format.items())),
    }
    (out / "ass_x04.yaml").write_text(
        yaml.safe_dump(x04, allow_unicode=True, sort_keys=False, width=110), encoding="utf-8"
    )
    (out / "ass_a11.yaml").write_text(
        yaml.safe_dump(a11, allow_unicode=True, sort_keys=False, width=110), encoding="utf-8"
    )


# --- Model ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Coded:
    """A coded metadata value; ``scheme`` is the code system's OID where the encoding gives it."""

    code: str | None
    scheme: str | None
    display: str | None
    location: str
    system_name: str | None = None
    """NOS code-system name when the encoding named the system by its NOS URL (FHIR)."""


@dataclass(slots=True)
class PatientRef:
    """The patient identifier of an entry: the INS matricule and its assigning authority OID."""

    raw: str | None
    matricule: str | None
    oid: str | None
    id_type: str | None
    location: str
    problem: str | None = None
    """Structural problem spotted by the parser (not a CX, no identifier in the reference …)."""


@dataclass(slots=True)
class AuthorRef:
    """One author (XDS author classification / FHIR author reference), normalised."""

    location: str
    person: str | None = None
    """As carried: the XCN of ``authorPerson`` or ``system|value`` of the FHIR identifier."""
    person_id: str | None = None
    person_oid: str | None = None
    """Assigning authority OID (XDS XCN.9 / FHIR ``urn:oid:`` system)."""
    person_system: str | None = None
    """FHIR identifier system when it is a URL (``https://rpps.esante.gouv.fr``)."""
    institutions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    specialties: list[Coded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def national_id(self) -> str | None:
        """The identifier as a CDA ``assignedAuthor/id`` under :data:`RPPS_OID` would carry it."""
        if self.person_id is None:
            return None
        if self.person_system == RPPS_SYSTEM:
            return "8" + self.person_id
        return self.person_id


@dataclass(slots=True)
class DocumentEntry:
    """XDSDocumentEntry / DocumentReference metadata, normalised (times as UTC ``YYYYMMDDhhmmss`` prefixes)."""

    id: str
    location: str
    unique_id: str | None = None
    patient: PatientRef | None = None
    class_code: Coded | None = None
    type_code: Coded | None = None
    confidentiality: list[Coded] = field(default_factory=list)
    format_code: Coded | None = None
    facility: Coded | None = None
    practice: Coded | None = None
    creation_time: str | None = None
    service_start: str | None = None
    service_stop: str | None = None
    language: str | None = None
    mime_type: str | None = None
    title: str | None = None
    hash: str | None = None
    """Lower-case hex SHA-1 (MHD's base64 is decoded by its parser)."""
    size: int | None = None
    authors: list[AuthorRef] = field(default_factory=list)
    content: bytes | None = None
    """The document bytes when the message carries them (xdsb:Document, Binary)."""
    locations: dict[str, str] = field(default_factory=dict)

    def loc(self, key: str) -> str:
        return self.locations.get(key, self.location)


@dataclass(slots=True)
class SubmissionSet:
    id: str
    location: str
    unique_id: str | None = None
    source_id: str | None = None
    patient: PatientRef | None = None
    content_type: Coded | None = None
    submission_time: str | None = None
    authors: list[AuthorRef] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)

    def loc(self, key: str) -> str:
        return self.locations.get(key, self.location)


@dataclass(slots=True)
class Replacement:
    """A replacement: RPLC association (XDS) or ``relatesTo.code = replaces`` (MHD)."""

    source: str
    target: str
    location: str


@dataclass(slots=True)
class Submission:
    """A parsed submission; ``shape`` holds what the parser found structurally wrong, in its own rules."""

    encoding: Literal["xds", "mhd"]
    submission_set: SubmissionSet | None
    documents: list[DocumentEntry]
    replacements: list[Replacement] = field(default_factory=list)
    shape: list[Finding] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return "XDS" if self.encoding == "xds" else "MHD"


# --- Shared rule ids --------------------------------------------------------------------------------

PATIENTID = "DMP.PATIENTID"
RPLC = "DMP.RPLC"

VS_RULE_SUFFIX: dict[Slot, str] = {
    "class": "VS.CLASS",
    "type": "VS.TYPE",
    "confidentiality": "VS.CONFIDENTIALITY",
    "format": "VS.FORMAT",
    "facility": "VS.FACILITY",
    "practice": "VS.PRACTICE",
    "contentType": "VS.CONTENTTYPE",
    "specialty": "VS.SPECIALTY",
}


def semantic_rules(prefix: str) -> dict[str, str]:
    """Rules the shared metadata logic emits under ``prefix`` (``XDS`` / ``MHD``)."""
    return {
        PATIENTID: "patientId = matricule INS (CX ^^^&OID INS&ISO^NH): clé, OID INS cohérent NIR/NIA",
        f"{prefix}.PATIENT-MATCH": "Même patientId dans le lot de soumission et chaque fiche",
        RPLC: "Remplacement : association RPLC vers l'entryUUID de la version précédente",
        f"{prefix}.VS.CLASS": "classCode dans le JDV (J57 DMP / J06 CI-SIS)",
        f"{prefix}.VS.TYPE": "typeCode dans le JDV (J66 DMP / J07 CI-SIS)",
        f"{prefix}.VS.CONFIDENTIALITY": "confidentialityCode dans le JDV (J58 DMP / J08 CI-SIS)",
        f"{prefix}.VS.FORMAT": "formatCode dans le JDV (J60 DMP / J10 CI-SIS)",
        f"{prefix}.VS.FACILITY": "healthcareFacilityTypeCode dans le JDV (J61 DMP / J02 CI-SIS)",
        f"{prefix}.VS.PRACTICE": "practiceSettingCode dans le JDV (J62 DMP / J04 CI-SIS)",
        f"{prefix}.VS.CONTENTTYPE": "contentTypeCode du lot dans le JDV (J59 DMP / J03 CI-SIS)",
        f"{prefix}.VS.SPECIALTY": "authorSpecialty dans le JDV (J56 DMP / J01 CI-SIS)",
        f"{prefix}.CLASS-TYPE": "classCode déduit du typeCode (correspondance NOS ASS_X04)",
        f"{prefix}.AUTHOR": "Auteur identifié (XCN/identifiant national RPPS 8+RPPS ou structure), structure, rôle",
        f"{prefix}.UNIQUEID": "uniqueId : OID[^extension] (OID ≤ 64 caractères, extension ≤ 16)",
        f"{prefix}.HASH": "hash = SHA-1 du document",
        f"{prefix}.SIZE": "size = taille du document en octets",
    }


def cda_rules(prefix: str) -> dict[str, str]:
    """Rules of the metadata ↔ CDA header consistency check under ``prefix``."""
    return {
        f"{prefix}.CDA.PATIENT": "patientId = INS du recordTarget du CDA",
        f"{prefix}.CDA.TYPE": "typeCode = ClinicalDocument/code",
        f"{prefix}.CDA.CONFIDENTIALITY": "confidentialityCode contient ClinicalDocument/confidentialityCode",
        f"{prefix}.CDA.AUTHOR": "Auteur des métadonnées = un auteur du CDA (assignedAuthor/id)",
        f"{prefix}.CDA.DATES": "creationTime = effectiveTime, serviceStart/StopTime = serviceEvent low/high (UTC)",
        f"{prefix}.CDA.UNIQUEID": "uniqueId = ClinicalDocument/id (root^extension, root seul sans extension)",
        f"{prefix}.CDA.LANGUAGE": "languageCode = ClinicalDocument/languageCode",
        f"{prefix}.CDA.FACILITY": "healthcareFacilityTypeCode = encompassingEncounter/…/healthCareFacility/code",
        f"{prefix}.CDA.PRACTICE": "practiceSettingCode = serviceEvent/performer/…/standardIndustryClassCode",
        f"{prefix}.FORMAT-MODEL": "formatCode déduit du modèle CDA (templateId, correspondance NOS ASS_A11/A12)",
        f"{prefix}.HASH": "hash = SHA-1 du document",
        f"{prefix}.SIZE": "size = taille du document en octets",
    }


# --- Small parsers ----------------------------------------------------------------------------------

_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DTM = re.compile(r"[0-9]{4}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2})?)?)?)?)?")
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_LANG = re.compile(r"[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{2,8})*")


def is_oid(value: str | None) -> bool:
    return bool(value) and _OID.fullmatch(value or "") is not None and len(value or "") <= 64


def is_uuid(value: str | None) -> bool:
    return bool(value) and _UUID.fullmatch(value or "") is not None


def components(value: str) -> list[str]:
    """HL7 v2 ``^``-separated components (no escape handling: XDS values do not use escapes in practice)."""
    return value.split("^")


def parse_cx(value: str, location: str) -> PatientRef:
    """``matricule^^^&OID&ISO^NH`` → :class:`PatientRef` (problems left to :func:`patient_findings`)."""
    comps = components(value)
    matricule = comps[0] or None
    oid = id_type = None
    problem = None
    if len(comps) < 4 or not comps[3]:
        problem = "CX.4 (assigning authority &OID&ISO) is missing"
    else:
        sub = comps[3].split("&")
        if len(sub) != 3 or sub[0] or sub[2] != "ISO":
            problem = f"CX.4 {comps[3]!r} must be '&<OID>&ISO'"
        oid = sub[1] if len(sub) > 1 else None
    if len(comps) > 4:
        id_type = comps[4] or None
    return PatientRef(value, matricule, oid, id_type, location, problem)


def dtm_problem(value: str) -> str | None:
    """Why ``value`` is not an XDS DTM (``YYYY[MM[DD[hh[mm[ss]]]]]``, UTC, no zone), or ``None``."""
    if _DTM.fullmatch(value) is None:
        return f"{value!r} is not an HL7 DTM YYYY[MM[DD[hh[mm[ss]]]]] in UTC"
    try:
        _parse_ts(value)
    except ValueError:
        return f"{value!r} is not a calendar date/time"
    return None


def _parse_ts(digits: str) -> datetime:
    fmt = "%Y%m%d%H%M%S"[: {4: 2, 6: 4, 8: 6, 10: 8, 12: 10, 14: 12}[len(digits)]]
    return datetime.strptime(digits, fmt)


_CDA_TS = re.compile(r"([0-9]{4,14})(?:\.[0-9]+)?([+-][0-9]{4})?")


def cda_ts_utc(value: str | None) -> str | None:
    """CDA TS (``YYYYMMDDhhmmss[.f][±zzzz]``) → UTC DTM of the same precision; ``None`` if unreadable.

    Without a zone (or at day precision) no conversion is possible and the value is kept as is.
    """
    if not value:
        return None
    m = _CDA_TS.fullmatch(value.strip())
    if m is None or len(m.group(1)) not in (4, 6, 8, 10, 12, 14):
        return None
    digits, zone = m.group(1), m.group(2)
    try:
        when = _parse_ts(digits)
    except ValueError:
        return None
    if zone is None or len(digits) <= 8:
        return digits
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (1 if zone[0] == "+" else -1)
    utc = when.replace(tzinfo=timezone(offset)).astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S")[: len(digits)]


def fhir_datetime_utc(value: Any) -> str | None:
    """FHIR ``date``/``dateTime``/``instant`` → UTC DTM; ``None`` if unreadable."""
    if not isinstance(value, str):
        return None
    v = value.strip()
    if re.fullmatch(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?", v):
        return v.replace("-", "")
    try:
        when = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return when.strftime("%Y%m%d%H%M%S")
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def b64_sha1_to_hex(value: str) -> str | None:
    """MHD ``attachment.hash`` (base64 of the 20-byte SHA-1) → hex; ``None`` if it is not that."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 20 else None


def normalize_unique_id(value: str) -> str:
    """Compare-friendly uniqueId: ``urn:oid:`` dropped, UUIDs lower-cased without ``urn:uuid:``."""
    v = value.strip()
    if v.startswith("urn:oid:"):
        v = v[8:]
    if v.lower().startswith("urn:uuid:"):
        v = v[9:]
    root, sep, ext = v.partition("^")
    if is_uuid(root):
        root = root.lower()
    return root + sep + ext


def unique_id_problem(value: str) -> str | None:
    """Why ``value`` is not a DocumentEntry.uniqueId (``OID[^extension]`` or UUID), or ``None``."""
    v = normalize_unique_id(value)
    root, sep, ext = v.partition("^")
    if is_uuid(root) and not sep:
        return None
    if not is_oid(root):
        return f"uniqueId root {root!r} is not an OID of at most 64 characters"
    if sep and not ext:
        return "uniqueId has '^' without an extension"
    if len(ext) > 16:
        return f"uniqueId extension {ext!r} is longer than 16 characters"
    return None


# --- CDA header facts (what the metadata must agree with) ----------------------------------------------

V3 = "urn:hl7-org:v3"
_CD = f"{{{V3}}}ClinicalDocument"


@dataclass(slots=True)
class CdaFacts:
    """The CDA header values the XDS/MHD metadata is derived from (CI-SIS correspondence)."""

    id_root: str | None = None
    id_extension: str | None = None
    code: str | None = None
    code_system: str | None = None
    confidentiality: str | None = None
    effective_time: str | None = None
    language: str | None = None
    ins: list[tuple[str, str | None]] = field(default_factory=list)
    """(OID, matricule) of every recordTarget id under an INS OID."""
    authors: list[tuple[str | None, str | None]] = field(default_factory=list)
    """(root, extension) of every author/assignedAuthor/id."""
    services: list[tuple[str | None, str | None]] = field(default_factory=list)
    """(low, high) UTC of every documentationOf/serviceEvent/effectiveTime."""
    template_ids: list[str] = field(default_factory=list)
    media_type: str | None = None
    facility: tuple[str | None, str | None] | None = None
    practice: list[tuple[str | None, str | None]] = field(default_factory=list)
    title: str | None = None
    legal_authenticator: tuple[str | None, str | None] | None = None
    author_specialty: tuple[str | None, str | None, str | None] | None = None
    author_institution: tuple[str | None, str | None, str | None] | None = None
    """(name, id extension, id root) of the first author's representedOrganization."""

    @property
    def unique_id(self) -> str | None:
        """CI-SIS: uniqueId = ``root^extension``, or ``root`` alone when the id has no extension."""
        if not self.id_root:
            return None
        return f"{self.id_root}^{self.id_extension}" if self.id_extension else self.id_root


def find_clinical_document(root: Any) -> Any | None:
    """The ClinicalDocument itself, or the one embedded in an auto-presentable ``xsl:stylesheet``."""
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    if root is None:
        return None
    if root.tag == _CD:
        return root
    return next(root.iter(_CD), None)


def _v(el: Any, path: str) -> list[Any]:
    return list(el.iterfind(path, namespaces={"v": V3}))


def _first(el: Any, path: str) -> Any | None:
    return el.find(path, namespaces={"v": V3})


def cda_facts(root: Any) -> CdaFacts | None:
    """Read the header values the metadata derives from; ``None`` when there is no ClinicalDocument."""
    doc = find_clinical_document(root)
    if doc is None:
        return None
    f = CdaFacts()
    idel = _first(doc, "v:id")
    if idel is not None:
        f.id_root, f.id_extension = idel.get("root"), idel.get("extension")
    code = _first(doc, "v:code")
    if code is not None:
        f.code, f.code_system = code.get("code"), code.get("codeSystem")
    conf = _first(doc, "v:confidentialityCode")
    f.confidentiality = conf.get("code") if conf is not None else None
    eff = _first(doc, "v:effectiveTime")
    f.effective_time = eff.get("value") if eff is not None else None
    lang = _first(doc, "v:languageCode")
    f.language = lang.get("code") if lang is not None else None
    title = _first(doc, "v:title")
    f.title = "".join(title.itertext()).strip() if title is not None else None
    for rid in _v(doc, "v:recordTarget/v:patientRole/v:id"):
        if rid.get("root") in INS_OIDS:
            f.ins.append((rid.get("root"), rid.get("extension")))
    for aid in _v(doc, "v:author/v:assignedAuthor/v:id"):
        f.authors.append((aid.get("root"), aid.get("extension")))
    spec = _first(doc, "v:author/v:assignedAuthor/v:code")
    if spec is not None:
        f.author_specialty = (spec.get("code"), spec.get("displayName"), spec.get("codeSystem"))
    org = _first(doc, "v:author/v:assignedAuthor/v:representedOrganization")
    if org is not None:
        oid_el = _first(org, "v:id")
        name_el = _first(org, "v:name")
        f.author_institution = (
            "".join(name_el.itertext()).strip() if name_el is not None else None,
            oid_el.get("extension") if oid_el is not None else None,
            oid_el.get("root") if oid_el is not None else None,
        )
    for se in _v(doc, "v:documentationOf/v:serviceEvent"):
        low = _first(se, "v:effectiveTime/v:low")
        high = _first(se, "v:effectiveTime/v:high")
        f.services.append(
            (
                cda_ts_utc(low.get("value")) if low is not None else None,
                cda_ts_utc(high.get("value")) if high is not None else None,
            )
        )
        for sic in _v(se, "v:performer/v:assignedEntity/v:representedOrganization/v:standardIndustryClassCode"):
            f.practice.append((sic.get("code"), sic.get("codeSystem")))
    fac = _first(doc, "v:componentOf/v:encompassingEncounter/v:location/v:healthCareFacility/v:code")
    if fac is not None:
        f.facility = (fac.get("code"), fac.get("codeSystem"))
    la = _first(doc, "v:legalAuthenticator/v:assignedEntity/v:id")
    if la is not None:
        f.legal_authenticator = (la.get("root"), la.get("extension"))
    f.template_ids = [t.get("root") for t in _v(doc, "v:templateId") if t.get("root")]
    text = _first(doc, "v:component/v:nonXMLBody/v:text")
    if text is not None:
        f.media_type = text.get("mediaType")
    return f


def expected_formats(facts: CdaFacts, term: DmpTerminology) -> set[str]:
    """formatCodes the CDA model allows (ASS_A11, and ASS_A12 for an N1 document's media type)."""
    out: set[str] = set()
    for tid in facts.template_ids:
        if tid == N1_TEMPLATE and facts.media_type and facts.media_type in term.media_to_format:
            out.add(term.media_to_format[facts.media_type])
            continue
        out |= set(term.template_to_format.get(tid, ()))
    return out


# --- Shared semantic findings -----------------------------------------------------------------------------


def patient_findings(patient: PatientRef | None, what: str) -> Iterator[Finding]:
    """DMP.PATIENTID over one patientId: INS matricule with a valid key under a coherent INS OID."""
    if patient is None:
        return
    loc = patient.location
    if patient.problem:
        yield Finding(PATIENTID, "error", f"{what}: {patient.problem}", loc)
    value = patient.matricule
    if value is None and patient.problem:
        return
    if value is None:
        yield Finding(PATIENTID, "error", f"{what} carries no INS matricule", loc)
        return
    problem = matricule_problem(value)
    if problem:
        yield Finding(PATIENTID, "error", f"{what} {value!r}: {problem}", loc)
        return
    parsed = parse_matricule(value)
    assert parsed is not None
    body, key = parsed
    if nir_key(body) != key:
        yield Finding(
            PATIENTID, "error", f"{what}: INS key {key:02d} of {value} is wrong (expected {nir_key(body):02d})", loc
        )
    oid = patient.oid
    if oid is not None and not patient.problem:
        if oid not in INS_OIDS:
            yield Finding(PATIENTID, "error", f"{what}: assigning authority {oid} is not an INS OID", loc)
        elif is_nia(body) and oid not in NIA_OIDS:
            yield Finding(PATIENTID, "error", f"{what}: NIA {value} under {oid} (INS-NIA takes .9/.11)", loc)
        elif not is_nia(body) and oid not in NIR_OIDS:
            yield Finding(PATIENTID, "error", f"{what}: NIR {value} under {oid} (INS-NIR takes .8/.10/.11)", loc)
    if patient.id_type is not None and patient.id_type != "NH":
        yield Finding(PATIENTID, "error", f"{what}: identifier type {patient.id_type!r} (CX.5 must be NH)", loc)


def coded_findings(
    prefix: str, slot: Slot, coded: Coded | None, term: DmpTerminology, profile: str
) -> Iterator[Finding]:
    if coded is None or coded.code is None:
        return
    vs = term.valuesets.get(VALUE_SET_PROFILES[profile][slot])
    if vs is None:
        return
    why = vs.verdict(coded.code, coded.scheme, coded.system_name)
    if why:
        yield Finding(f"{prefix}.{VS_RULE_SUFFIX[slot]}", "error", why, coded.location)


def author_findings(prefix: str, author: AuthorRef, term: DmpTerminology, profile: str) -> Iterator[Finding]:
    """Author person id: 8+RPPS (11 digits, Luhn → warning) or a structure-scoped id under the RPPS OID."""
    rule = f"{prefix}.AUTHOR"
    for problem in author.problems:
        yield Finding(rule, "error", problem, author.location)
    pid = author.person_id
    if author.person is not None and not pid:
        yield Finding(rule, "error", "author person has no identifier", author.location)
    if pid:
        if author.person_system == RPPS_SYSTEM:
            if not (len(pid) == 11 and pid.isdigit()):
                yield Finding(rule, "error", f"RPPS {pid!r} must have 11 digits", author.location)
            elif not luhn_ok(pid):
                yield Finding(
                    rule, "warning", f"RPPS {pid} fails its Luhn check digit (fictitious id?)", author.location
                )
        elif author.person_oid == RPPS_OID:
            if pid[0] == "8":
                if not (len(pid) == 12 and pid.isdigit()):
                    yield Finding(rule, "error", f"national id {pid!r}: 8 + RPPS must be 12 digits", author.location)
                elif not luhn_ok(pid[1:]):
                    yield Finding(
                        rule, "warning", f"RPPS {pid[1:]} fails its Luhn check digit (fictitious id?)", author.location
                    )
            elif pid[0] == "0" or "/" in pid:
                pass  # ADELI (0 + ADELI) or an id scoped by a structure (devices, staff without RPPS)
            else:
                yield Finding(
                    rule,
                    "error",
                    f"national id {pid!r} under {RPPS_OID} is neither 8+RPPS, 0+ADELI nor structure/local",
                    author.location,
                )
        elif author.person_oid is None and author.person_system is None:
            yield Finding(rule, "error", f"author id {pid!r} has no assigning authority", author.location)
    for spec in author.specialties:
        yield from coded_findings(prefix, "specialty", spec, term, profile)


def semantic_findings(
    sub: Submission, term: DmpTerminology, *, profile: str = "dmp", replaces: str | None = None
) -> Iterator[Finding]:
    """Every rule that does not depend on the encoding: value sets, INS, authors, ASS_X04, RPLC."""
    p = sub.prefix
    ss = sub.submission_set
    if ss is not None:
        yield from patient_findings(ss.patient, "submission set patientId")
        yield from coded_findings(p, "contentType", ss.content_type, term, profile)
        for author in ss.authors:
            yield from author_findings(p, author, term, profile)
    for de in sub.documents:
        yield from patient_findings(de.patient, "document patientId")
        ssp, dep = ss.patient if ss is not None else None, de.patient
        # Compared only when both are valid INS: an invalid one is DMP.PATIENTID's finding.
        if (
            ssp
            and dep
            and key_is_valid(ssp.matricule)
            and key_is_valid(dep.matricule)
            and (ssp.matricule, ssp.oid) != (dep.matricule, dep.oid)
        ):
            yield Finding(
                f"{p}.PATIENT-MATCH",
                "error",
                f"document patientId {dep.raw!r} differs from the submission set's {ssp.raw!r}",
                dep.location,
            )
        yield from coded_findings(p, "class", de.class_code, term, profile)
        yield from coded_findings(p, "type", de.type_code, term, profile)
        for conf in de.confidentiality:
            yield from coded_findings(p, "confidentiality", conf, term, profile)
        yield from coded_findings(p, "format", de.format_code, term, profile)
        yield from coded_findings(p, "facility", de.facility, term, profile)
        yield from coded_findings(p, "practice", de.practice, term, profile)
        for author in de.authors:
            yield from author_findings(p, author, term, profile)
        if de.unique_id is not None:
            problem = unique_id_problem(de.unique_id)
            if problem:
                yield Finding(f"{p}.UNIQUEID", "error", problem, de.loc("uniqueId"))
        tc, cc = de.type_code, de.class_code
        class_vs = term.valuesets.get(VALUE_SET_PROFILES[profile]["class"])
        # A classCode outside its value set is VS.CLASS's business, not a second finding here.
        if tc and cc and tc.code and cc.code and (class_vs is None or cc.code in class_vs.codes):
            expected = term.type_to_class.get(tc.code)
            if expected is not None and cc.code not in expected:
                yield Finding(
                    f"{p}.CLASS-TYPE",
                    "error",
                    f"classCode {cc.code!r} does not follow from typeCode {tc.code!r} "
                    f"(ASS_X04: {'/'.join(sorted(expected))})",
                    cc.location,
                )
        if de.content is not None:
            yield from content_findings(p, de, de.content)
    yield from rplc_findings(sub, replaces)


def rplc_findings(sub: Submission, replaces: str | None) -> Iterator[Finding]:
    """DMP.RPLC: a replacement targets the previous version's entryUUID (a ``urn:uuid``), from a new entry."""
    ids = {d.id for d in sub.documents}
    for r in sub.replacements:
        if r.source not in ids:
            yield Finding(
                RPLC, "error", f"replacement source {r.source!r} is not a document of this submission", r.location
            )
        target = r.target
        if sub.encoding == "xds":
            if not (target.lower().startswith("urn:uuid:") and is_uuid(target[9:])):
                yield Finding(
                    RPLC,
                    "error",
                    f"RPLC target {target!r} must be the entryUUID (urn:uuid:…) of the replaced entry",
                    r.location,
                )
            elif target in ids:
                yield Finding(
                    RPLC, "error", f"RPLC target {target!r} is a document of this very submission", r.location
                )
    if replaces is not None:
        wanted = replaces.strip().lower()
        got = [r for r in sub.replacements if _same_ref(r.target, wanted)]
        if not got:
            where = sub.documents[0].location if sub.documents else None
            found = ", ".join(r.target for r in sub.replacements) or "none"
            yield Finding(RPLC, "error", f"expected a replacement of {replaces} (found: {found})", where)


def _same_ref(target: str, wanted: str) -> bool:
    t = target.strip().lower()
    if t == wanted:
        return True
    strip = lambda s: s.removeprefix("urn:uuid:").rsplit("/", 1)[-1]  # noqa: E731
    return strip(t) == strip(wanted)


def content_findings(prefix: str, de: DocumentEntry, document: bytes) -> Iterator[Finding]:
    """``hash``/``size`` of an entry against the document bytes (absent values are not judged here)."""
    if de.hash is not None and _HEX40.fullmatch(de.hash) and de.hash.lower() != sha1_hex(document):
        yield Finding(
            f"{prefix}.HASH",
            "error",
            f"hash {de.hash} is not the SHA-1 of the document ({sha1_hex(document)})",
            de.loc("hash"),
        )
    if de.size is not None and de.size != len(document):
        yield Finding(
            f"{prefix}.SIZE",
            "error",
            f"size {de.size} differs from the document's {len(document)} bytes",
            de.loc("size"),
        )


def _author_key(author: AuthorRef) -> tuple[str | None, str | None]:
    """(root, extension) the author would have as a CDA ``assignedAuthor/id``."""
    if author.person_system == RPPS_SYSTEM:
        return RPPS_OID, author.national_id
    return author.person_oid, author.person_id


def _ts_match(meta: str | None, cda: str | None) -> bool:
    """Equal on the common precision (metadata may be truncated, never different)."""
    if meta is None or cda is None:
        return True
    n = min(len(meta), len(cda))
    return meta[:n] == cda[:n]


def cda_consistency(
    sub: Submission,
    cda_root: Any,
    document: bytes | None,
    term: DmpTerminology,
    *,
    entry: str | None = None,
) -> Iterator[Finding]:
    """Metadata of one entry against the CDA header it describes (CI-SIS CDA → XDS correspondence)."""
    p = sub.prefix
    facts = cda_facts(cda_root)
    if facts is None:
        yield Finding("INPUT.CDA", "error", "no ClinicalDocument in the document given for comparison", None)
        return
    if not sub.documents:
        return
    de = next((d for d in sub.documents if d.id == entry), None) if entry else sub.documents[0]
    if de is None:
        yield Finding(f"{p}.CDA.UNIQUEID", "error", f"no document entry {entry!r} in the submission", None)
        return
    doc_bytes = document if document is not None else de.content

    # Patient
    if de.patient and de.patient.matricule and facts.ins:
        pairs = {(m, o) for o, m in facts.ins}
        if (de.patient.matricule, de.patient.oid) not in pairs:
            cda_ins = ", ".join(f"{m}@{o}" for o, m in facts.ins)
            yield Finding(
                f"{p}.CDA.PATIENT",
                "error",
                f"patientId {de.patient.matricule}@{de.patient.oid} differs from the CDA recordTarget INS ({cda_ins})",
                de.patient.location,
            )
    # Type
    tc = de.type_code
    if (
        tc
        and tc.code
        and facts.code
        and (tc.code != facts.code or (tc.scheme and facts.code_system and tc.scheme != facts.code_system))
    ):
        yield Finding(
            f"{p}.CDA.TYPE",
            "error",
            f"typeCode {tc.code}@{tc.scheme} differs from the CDA code {facts.code}@{facts.code_system}",
            tc.location,
        )
    # Confidentiality
    if facts.confidentiality and de.confidentiality:
        hl7 = [c for c in de.confidentiality if c.code in ("N", "R", "V")]
        if not any(c.code == facts.confidentiality for c in hl7) or len(hl7) != 1:
            shown = "/".join(str(c.code) for c in de.confidentiality)
            yield Finding(
                f"{p}.CDA.CONFIDENTIALITY",
                "error",
                f"confidentialityCode {shown} must carry exactly the CDA's {facts.confidentiality} "
                "(plus DMP visibility codes only)",
                de.confidentiality[0].location,
            )
    # Author
    if facts.authors and de.authors:
        cda_ids = {(root, ext) for root, ext in facts.authors if ext}
        ok = any(_author_key(a) in cda_ids for a in de.authors)
        if not ok:
            got = ", ".join(f"{a.national_id}@{a.person_oid or a.person_system}" for a in de.authors)
            want = ", ".join(f"{e}@{r}" for r, e in facts.authors)
            yield Finding(
                f"{p}.CDA.AUTHOR",
                "error",
                f"no metadata author ({got}) is an author of the CDA ({want})",
                de.authors[0].location,
            )
    # Dates
    eff = cda_ts_utc(facts.effective_time)
    if de.creation_time and eff and not _ts_match(de.creation_time, eff):
        yield Finding(
            f"{p}.CDA.DATES",
            "error",
            f"creationTime {de.creation_time} differs from the CDA effectiveTime {facts.effective_time} (UTC {eff})",
            de.loc("creationTime"),
        )
    if facts.services:
        lows = [lo for lo, _ in facts.services if lo]
        highs = [hi for _, hi in facts.services if hi]
        if de.service_start and lows and not any(_ts_match(de.service_start, lo) for lo in lows):
            yield Finding(
                f"{p}.CDA.DATES",
                "error",
                f"serviceStartTime {de.service_start} matches no serviceEvent low (UTC {', '.join(lows)})",
                de.loc("serviceStartTime"),
            )
        if de.service_stop and highs and not any(_ts_match(de.service_stop, hi) for hi in highs):
            yield Finding(
                f"{p}.CDA.DATES",
                "error",
                f"serviceStopTime {de.service_stop} matches no serviceEvent high (UTC {', '.join(highs)})",
                de.loc("serviceStopTime"),
            )
        if de.service_stop and not highs:
            yield Finding(
                f"{p}.CDA.DATES",
                "error",
                f"serviceStopTime {de.service_stop} but the CDA serviceEvent has no end",
                de.loc("serviceStopTime"),
            )
        if de.service_stop is None and highs and len(facts.services) == 1:
            yield Finding(
                f"{p}.CDA.DATES",
                "error",
                f"serviceStopTime missing although the CDA serviceEvent ends ({highs[0]} UTC)",
                de.loc("serviceStopTime"),
            )
    # uniqueId
    if (
        de.unique_id is not None
        and facts.unique_id is not None
        and normalize_unique_id(de.unique_id) != normalize_unique_id(facts.unique_id)
    ):
        yield Finding(
            f"{p}.CDA.UNIQUEID",
            "error",
            f"uniqueId {de.unique_id} differs from the CDA id ({facts.unique_id})",
            de.loc("uniqueId"),
        )
    # Language
    if de.language and facts.language and de.language.lower() != facts.language.lower():
        yield Finding(
            f"{p}.CDA.LANGUAGE",
            "error",
            f"languageCode {de.language} differs from the CDA's {facts.language}",
            de.loc("languageCode"),
        )
    # Facility / practice
    if (
        de.facility
        and de.facility.code
        and facts.facility
        and facts.facility[0]
        and de.facility.code != facts.facility[0]
    ):
        yield Finding(
            f"{p}.CDA.FACILITY",
            "error",
            f"healthcareFacilityTypeCode {de.facility.code} differs from the CDA healthCareFacility code "
            f"{facts.facility[0]}",
            de.facility.location,
        )
    if de.practice and de.practice.code and facts.practice and de.practice.code not in {c for c, _ in facts.practice}:
        want = "/".join(sorted({str(c) for c, _ in facts.practice}))
        yield Finding(
            f"{p}.CDA.PRACTICE",
            "error",
            f"practiceSettingCode {de.practice.code} differs from the CDA standardIndustryClassCode {want}",
            de.practice.location,
        )
    # Format from the model
    fc = de.format_code
    if fc and fc.code:
        allowed = expected_formats(facts, term)
        if allowed and fc.code not in allowed:
            yield Finding(
                f"{p}.FORMAT-MODEL",
                "error",
                f"formatCode {fc.code} does not follow from the CDA model (ASS_A11/A12: {', '.join(sorted(allowed))})",
                fc.location,
            )
        elif not allowed:
            yield Finding(
                f"{p}.FORMAT-MODEL",
                "info",
                f"no ASS_A11 correspondence for the CDA templateIds ({', '.join(facts.template_ids) or 'none'}): "
                f"formatCode {fc.code} not judged",
                fc.location,
            )
    # Hash / size (when the content was not already judged from the message itself)
    if doc_bytes is not None and (document is not None or de.content is None):
        yield from content_findings(p, de, doc_bytes)


__all__ = [
    "CONFIDENTIALITY_OID",
    "RPPS_OID",
    "STRUCTURE_OID",
    "AuthorRef",
    "CdaFacts",
    "Coded",
    "DmpTerminology",
    "DocumentEntry",
    "PatientRef",
    "Replacement",
    "Submission",
    "SubmissionSet",
    "ValueSet",
    "cda_consistency",
    "cda_facts",
    "cda_rules",
    "cda_ts_utc",
    "dtm_problem",
    "expected_formats",
    "export_subsets",
    "fhir_datetime_utc",
    "find_clinical_document",
    "load_terminology",
    "luhn_ok",
    "semantic_findings",
    "semantic_rules",
    "sha1_hex",
    "shipped_terminology",
    "system_oid",
]
