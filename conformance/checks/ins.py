"""INS (Identité Nationale de Santé) domain helpers and checks over FHIR Patient resources.

The rules live in one place, :func:`identity_findings`, over a normalised :class:`Identity`; each
encoding (FHIR Patient here, CDA ``recordTarget`` in :mod:`conformance.checks.cda_ins`) only
*extracts* an ``Identity`` with the location of every trait.  That way the FHIR API of a vendor and
the CDA documents it publishes are judged by exactly the same logic and the same rule ids.

One defect maps to one rule family where possible (a wrong key does not also trigger ``INS.NIR.*``, a
missing birth place does not also trigger ``INS.TRAITS.BIRTHPLACE``, a missing status does not also
trigger ``INS.QUALIFIED``) so that the bench's "one injected fault fails exactly one requirement"
quality bar holds.

Everything here is pure and allocation-light: offline validation runs it on thousands of patients
per second.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from conformance.checks.registry import check
from conformance.model import Finding, Severity

# --- OIDs, code systems and extension URLs ---------------------------------------------------------

INS_NIR_OID = "1.2.250.1.213.1.4.8"
"""INS-NIR: the NIR used as INS."""
INS_NIA_OID = "1.2.250.1.213.1.4.9"
"""INS-NIA: temporary number (numéro d'identification d'attente)."""
INS_TEST_OID = "1.2.250.1.213.1.4.10"
"""INS-NIR-TEST: test identities."""
INS_DEMO_OID = "1.2.250.1.213.1.4.11"
"""INS-NIR-DEMO: demonstration identities."""

INS_OIDS: frozenset[str] = frozenset({INS_NIR_OID, INS_NIA_OID, INS_TEST_OID, INS_DEMO_OID})
INS_SYSTEMS: frozenset[str] = frozenset(f"urn:oid:{oid}" for oid in INS_OIDS)

# Which OIDs each kind of number may take.  NIR numbers (first digit 1/2) go under .8, .10 or .11;
# NIA numbers (7/8) under .9 or .11.  INSi's *test* service answers .8 for test identities, so .8
# is not an error in a test run.
NIR_OIDS: frozenset[str] = frozenset({INS_NIR_OID, INS_TEST_OID, INS_DEMO_OID})
NIA_OIDS: frozenset[str] = frozenset({INS_NIA_OID, INS_DEMO_OID})

CS_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
LEGACY_CS_V2_0203: frozenset[str] = frozenset(
    {
        "http://interopsante.org/fhir/CodeSystem/fr-v2-0203",
        "https://interopsante.org/fhir/CodeSystem/fr-v2-0203",
    }
)
"""Identifier-type code systems of FR Core 1.x / Interop'Santé, still met in deployed servers."""
OID_TYPE_CODE: dict[str, str] = {
    INS_NIR_OID: "INS-NIR",
    INS_NIA_OID: "INS-NIA",
    INS_TEST_OID: "INS-NIR-TEST",
    INS_DEMO_OID: "INS-NIR-DEMO",
}
TYPE_CODE_OID: dict[str, str] = {code: oid for oid, code in OID_TYPE_CODE.items()}

# FR Core 2.2.0 identity reliability (HL7 v2 table 0445, French use) and its active twin.
CS_V2_0445 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
CS_FIABILITE_IDENTITE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-fiabilite-identite"
# fmt: off
V2_0445_CODES: frozenset[str] = frozenset((
    "VIDE", "PROV", "VALI", "DOUB", "DESA", "DPOT", "DOUA", "COLP", "COLV", "FILI", "CACH", "ANOM",
    "IDVER", "RECD", "IDRA", "USUR", "HOMD", "HOMA", "INVA", "FICT", "DOUT",
))
# fmt: on
# Later FR Core: the four RNIV statuses, only QUAL is qualified.
CS_IDENTITY_STATUS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
IDENTITY_STATUS_CODES: frozenset[str] = frozenset({"PROV", "RECUP", "VALI", "QUAL"})
STATUS_CODE_SYSTEMS: dict[str, frozenset[str]] = {
    CS_V2_0445: V2_0445_CODES,
    CS_FIABILITE_IDENTITE: V2_0445_CODES,
    CS_IDENTITY_STATUS: IDENTITY_STATUS_CODES,
}

FR_CORE_SD = "https://hl7.fr/ig/fhir/core/StructureDefinition/"
EXT_IDENTITY_RELIABILITY = FR_CORE_SD + "fr-core-identity-reliability"
EXT_BIRTH_LIST_GIVEN_NAME = FR_CORE_SD + "fr-core-patient-birth-list-given-name"
EXT_ADDRESS_INSEE_CODE = FR_CORE_SD + "fr-core-address-insee-code"
EXT_BIRTH_PLACE_FR = FR_CORE_SD + "fr-core-patient-birth-place"  # draft 2.0.0-ballot: COG in district
EXT_LUNAR_DATE = FR_CORE_SD + "fr-core-lunar-date"
EXT_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

# --- Rule ids --------------------------------------------------------------------------------------

MATRICULE_FORMAT = "INS.MATRICULE.FORMAT"
MATRICULE_KEY = "INS.MATRICULE.KEY"
OID_RULE = "INS.OID"
FHIR_IDENTIFIER = "INS.FHIR.IDENTIFIER"
TRAITS_MISSING = "INS.TRAITS.MISSING"
TRAITS_FORMAT = "INS.TRAITS.FORMAT"
TRAITS_BIRTHPLACE = "INS.TRAITS.BIRTHPLACE"
TRAITS_FIRST_GIVEN = "INS.TRAITS.FIRST-GIVEN"
NIR_SEX = "INS.NIR.SEX"
NIR_BIRTHDATE = "INS.NIR.BIRTHDATE"
STATUS_MISSING = "INS.STATUS.MISSING"
STATUS_CODE = "INS.STATUS.CODE"
QUALIFIED = "INS.QUALIFIED"
INSI_COHERENCE = "INS.INSI.COHERENCE"

IDENTIFIER_RULES: dict[str, str] = {
    MATRICULE_FORMAT: "Matricule INS sur 15 caractères (13 + clé), 2A/2B admis pour la Corse",
    MATRICULE_KEY: "Clé du matricule INS = 97 − (NIR mod 97)",
    OID_RULE: "OID INS connu et cohérent avec la nature du numéro (NIR/NIA)",
}
TRAIT_RULES: dict[str, str] = {
    TRAITS_MISSING: "Traits stricts présents (nom et premier prénom de naissance, liste des prénoms, "
    "date et lieu de naissance, sexe)",
    TRAITS_FORMAT: "Traits stricts bien formés (date complète, sexe M/F pour une INS, noms non vides)",
    TRAITS_BIRTHPLACE: "Lieu de naissance : code officiel géographique INSEE (COG) valide",
    TRAITS_FIRST_GIVEN: "Premier prénom de naissance = premier prénom de la liste des prénoms de naissance",
    NIR_SEX: "Sexe cohérent avec le premier chiffre du NIR/NIA",
    NIR_BIRTHDATE: "Année et mois de naissance cohérents avec le NIR/NIA",
}
STATUS_RULES: dict[str, str] = {
    STATUS_MISSING: "Statut de l'identité présent",
    STATUS_CODE: "Statut de l'identité issu du système de codes utilisé",
    QUALIFIED: "INS exposée uniquement pour une identité qualifiée",
}
PATIENT_RULES: dict[str, str] = {
    **IDENTIFIER_RULES,
    FHIR_IDENTIFIER: "Identifiant INS FHIR : system urn:oid, type cohérent avec l'OID, use official",
    **TRAIT_RULES,
    **STATUS_RULES,
}

# --- Matricule ----------------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")


def _all_digits(text: str) -> bool:
    return bool(text) and all(c in _DIGITS for c in text)


def _body_problem(body: str) -> str | None:
    """Why a 13-character NIR/NIA body is malformed, or ``None``; the first digit is not judged here."""
    if len(body) != 13:
        return f"body has {len(body)} characters instead of 13"
    dept = body[5:7]
    if not (_all_digits(body[:5]) and _all_digits(body[7:]) and (_all_digits(dept) or dept in ("2A", "2B"))):
        return "only digits are allowed, except 2A/2B (Corsica) at positions 6-7"
    return None


def nir_key(body13: str) -> int:
    """Check key of a 13-character NIR/NIA body: ``97 − (n mod 97)``, Corsica 2A→19 and 2B→18.

    Raises ``ValueError`` on a malformed body so that callers cannot silently key garbage.
    """
    problem = _body_problem(body13)
    if problem:
        raise ValueError(f"invalid NIR body {body13!r}: {problem}")
    dept = body13[5:7]
    if dept == "2A":
        body13 = body13[:5] + "19" + body13[7:]
    elif dept == "2B":
        body13 = body13[:5] + "18" + body13[7:]
    return 97 - int(body13) % 97


def matricule_problem(value: object) -> str | None:
    """Why ``value`` is not a well-formed INS matricule (shape only, not the key), or ``None``.

    Well-formed = 15 characters: a 13-character NIR/NIA body whose first digit is 1/2 (NIR) or 7/8
    (NIA), digits except ``2A``/``2B`` at positions 6-7, then a 2-digit key.  No spaces: the INS
    must be stored and restituted without alteration.
    """
    if not isinstance(value, str):
        return "the matricule must be a string"
    if len(value) != 15:
        return f"the matricule must have 15 characters (13 + 2-digit key), found {len(value)}"
    problem = _body_problem(value[:13])
    if problem:
        return problem
    if not _all_digits(value[13:]):
        return "the key (last 2 characters) must be digits"
    if value[0] not in "1278":
        return f"first digit {value[0]!r} is neither a NIR sex digit (1/2) nor an NIA one (7/8)"
    return None


def parse_matricule(value: object) -> tuple[str, int] | None:
    """Split a well-formed 15-character matricule into ``(body13, key)``; ``None`` if malformed."""
    if not isinstance(value, str) or len(value) != 15:
        return None
    body, key = value[:13], value[13:]
    if _body_problem(body) or not _all_digits(key):
        return None
    return body, int(key)


def key_is_valid(value: object) -> bool:
    """True when ``value`` is a well-formed matricule whose key matches its body."""
    parsed = parse_matricule(value)
    return parsed is not None and nir_key(parsed[0]) == parsed[1]


def is_nia(body13: str) -> bool:
    """NIA (temporary numbers) start with 7 or 8; NIR with 1 or 2."""
    return body13[:1] in ("7", "8")


def normalize_oid(value: object) -> str | None:
    """``urn:oid:1.2.3`` or ``1.2.3`` → ``1.2.3``; anything else → ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value.startswith("urn:oid:"):
        value = value[8:]
    return value or None


# --- Birth place, dates, names -------------------------------------------------------------------------

_COG = re.compile(
    # metropolitan departments (no 20: Corsica is 2A/2B since 1976)
    r"(?:0[1-9]|1[0-9]|2[1-9]|[3-8][0-9]|9[0-5])[0-9]{3}"
    r"|2[AB][0-9]{3}"  # Corsica
    r"|97[1-8][0-9]{2}|98[4-9][0-9]{2}"  # overseas departments and collectivities
    r"|99[0-9]{3}"  # country of birth abroad (99999: unknown)
)


def cog_problem(code: str) -> str | None:
    """Why ``code`` is not an INSEE COG code of a commune or a country (``99xxx``), or ``None``."""
    if len(code) != 5:
        return f"COG code {code!r} must have 5 characters"
    if _COG.fullmatch(code) is None:
        return (
            f"{code!r} is not an INSEE COG code (department digits or 2A/2B + commune number, "
            "97x/98x overseas, 99xxx for a country)"
        )
    return None


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def birth_date_problem(value: str) -> str | None:
    """Why ``value`` is not a full, real calendar date ``YYYY-MM-DD``, or ``None``."""
    if _DATE.fullmatch(value) is None:
        return f"birth date {value!r} must be a full date YYYY-MM-DD"
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"birth date {value!r} is not a calendar date"
    return None


def normalize_name(value: str) -> str:
    """Case-insensitive, space-collapsed form used to compare names; hyphens and apostrophes stay."""
    return " ".join(value.split()).casefold()


# --- Normalised identity ---------------------------------------------------------------------------

GenderKind = Literal["sex", "undetermined", "invalid"]


@dataclass(frozen=True, slots=True)
class InsIdentifier:
    """One INS identifier as carried by the artefact, with where each part sits."""

    value: str | None
    oid: str | None
    current: bool
    location: str
    value_location: str
    oid_location: str


@dataclass(slots=True)
class Identity:
    """A patient identity normalised from FHIR or CDA, with the location of every trait.

    The first block is the identity itself (what ``ins.coherence`` compares to INSi's answer); the
    second is provenance that the rules need (raw codes, whether a trait was declared, locations).
    ``status`` is on the RNIV 4-level scale where the encoding allows it: FR Core 2.2.0 ``VALI``
    together with an INS identifier is ``QUAL`` (invariant fr-core-1); ``status_code`` keeps the code
    as sent.
    """

    matricule: str | None = None
    oid: str | None = None
    birth_name: str | None = None
    given_names: list[str] = field(default_factory=list)
    first_given_name: str | None = None
    used_name: str | None = None
    used_given_name: str | None = None
    sex: Literal["M", "F"] | None = None
    birth_date: str | None = None
    birth_place: str | None = None
    status: str | None = None
    status_system: str | None = None
    qualified: bool = False

    status_code: str | None = None
    status_applicable: bool = True
    status_declared: bool = False
    gender: str | None = None
    gender_kind: GenderKind | None = None
    given_names_list: str | None = None
    lunar_birth_date: str | None = None
    ins: list[InsIdentifier] = field(default_factory=list)
    shape: list[Finding] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)
    root: str = "Patient"

    @property
    def current_ins(self) -> InsIdentifier | None:
        """The INS the identity is exchanged under (first one not marked as history)."""
        return next((i for i in self.ins if i.current), None)

    @property
    def has_ins(self) -> bool:
        return any(i.current for i in self.ins)

    def loc(self, key: str) -> str:
        return self.locations.get(key) or self.root


def _finish_status(ident: Identity) -> None:
    """Derive ``status`` and ``qualified`` once the INS identifiers are known."""
    code, system = ident.status_code, ident.status_system
    if code is None:
        return
    ident.status = code
    if system in (CS_V2_0445, CS_FIABILITE_IDENTITE):
        if code == "VALI" and ident.has_ins:
            ident.status, ident.qualified = "QUAL", True
    elif system == CS_IDENTITY_STATUS:
        ident.qualified = code == "QUAL"


# --- FHIR extraction -------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """A string as is; ``None`` when absent; ``""`` for a wrongly typed value (reported as malformed)."""
    if value is None:
        return None
    return value if isinstance(value, str) else ""


def _read_status(ident: Identity, ext: Mapping[str, Any], loc: str) -> None:
    for j, sub in enumerate(_list(ext.get("extension"))):
        if not isinstance(sub, dict) or sub.get("url") != "identityStatus":
            continue
        sloc = f"{loc}.extension[{j}]"
        ident.status_declared = True
        ident.locations["status"] = sloc
        system: Any = None
        code: Any = None
        if isinstance(sub.get("valueCoding"), dict):
            coding = sub["valueCoding"]
            system, code = coding.get("system"), coding.get("code")
            ident.locations["status"] = f"{sloc}.valueCoding"
        elif isinstance(sub.get("valueCodeableConcept"), dict):
            # Not allowed by FR Core 2.2.0 (Coding only) but seen in the wild; read it rather than
            # report "no status" for an identity that does state one.
            codings = [c for c in _list(sub["valueCodeableConcept"].get("coding")) if isinstance(c, dict)]
            chosen = next((c for c in codings if _text(c.get("system")) in STATUS_CODE_SYSTEMS), None)
            chosen = chosen or (codings[0] if codings else {})
            system, code = chosen.get("system"), chosen.get("code")
            ident.locations["status"] = f"{sloc}.valueCodeableConcept"
        elif "valueCode" in sub:
            code = sub.get("valueCode")
            ident.locations["status"] = f"{sloc}.valueCode"
        if isinstance(code, str) and code.strip():
            ident.status_code = code
            ident.status_system = system if isinstance(system, str) else None
        return


def _read_birth_place(ident: Identity, ext: Mapping[str, Any], loc: str, *, draft: bool) -> None:
    """Core ``patient-birthPlace`` (COG in the address's insee-code extension) or the 2.0.0-ballot
    draft ``fr-core-patient-birth-place`` (COG in ``district``); the first one carrying a code wins."""
    if ident.birth_place is not None:
        return
    if ident.locations.get("birth_place") == f"{ident.root}.extension":
        ident.locations["birth_place"] = loc  # first birth place extension, even without a code
    address = _dict(ext.get("valueAddress"))
    for j, sub in enumerate(_list(address.get("extension"))):
        if isinstance(sub, dict) and sub.get("url") == EXT_ADDRESS_INSEE_CODE:
            code = _text(_dict(sub.get("valueCoding")).get("code"))
            if code is not None:
                ident.birth_place = code
                ident.locations["birth_place"] = f"{loc}.valueAddress.extension[{j}].valueCoding.code"
                return
    if draft:
        district = _text(address.get("district"))
        if district is not None:
            ident.birth_place = district
            ident.locations["birth_place"] = f"{loc}.valueAddress.district"


def _read_identifiers(ident: Identity, identifiers: list[Any], root: str) -> None:
    for i, idf in enumerate(identifiers):
        if not isinstance(idf, dict):
            continue
        loc = f"{root}.identifier[{i}]"
        system = idf.get("system")
        oid: str | None = None
        urn = False
        if isinstance(system, str):
            if system.startswith("urn:oid:"):
                oid, urn = system[8:], True
            elif system in INS_OIDS:
                oid = system
        codings = [c for c in _list(_dict(idf.get("type")).get("coding")) if isinstance(c, dict)]
        typed = [
            (j, c["code"])
            for j, c in enumerate(codings)
            if isinstance(c.get("code"), str) and c["code"] in TYPE_CODE_OID and c.get("system") in (CS_V2_0203, None)
        ]
        if oid not in INS_OIDS and not typed:
            continue  # not an INS identifier (IPP, NSS, INS-C...)
        use = idf.get("use")
        value = idf.get("value")
        ident.ins.append(
            InsIdentifier(
                value=value if isinstance(value, str) else None,
                oid=oid,
                current=use != "old",
                location=loc,
                value_location=f"{loc}.value",
                oid_location=f"{loc}.system",
            )
        )
        shape = ident.shape
        if not isinstance(system, str) or not system:
            expected = f"urn:oid:{TYPE_CODE_OID[typed[0][1]]}" if typed else "urn:oid:<INS OID>"
            shape.append(Finding(FHIR_IDENTIFIER, "error", f"INS identifier without system (expected {expected})", loc))
        elif not urn:
            hint = f"urn:oid:{oid}" if oid else f"urn:oid:{TYPE_CODE_OID[typed[0][1]]}"
            shape.append(
                Finding(
                    FHIR_IDENTIFIER,
                    "error",
                    f"INS identifier system {system!r} must be {hint}",
                    f"{loc}.system",
                )
            )
        if oid in INS_OIDS:
            if not codings:
                shape.append(
                    Finding(
                        FHIR_IDENTIFIER,
                        "warning",
                        f"INS identifier without type (expected {OID_TYPE_CODE[oid]}, fr-core-cs-v2-0203)",
                        loc,
                    )
                )
            else:
                expected_code = OID_TYPE_CODE[oid]
                if not any(code == expected_code for _, code in typed):
                    j = typed[0][0] if typed else 0
                    found = typed[0][1] if typed else codings[0].get("code")
                    severity: Severity = "error"
                    if found == expected_code:  # right code, wrong (or no) code system
                        message = f"identifier type {found} must come from {CS_V2_0203}"
                        where = f"{loc}.type.coding[{j}].system"
                        if codings[j].get("system") in LEGACY_CS_V2_0203:
                            # FR Core 1.x / Interop'Santé: the same code under the older system URL.
                            severity = "warning"
                            message += f" (legacy system {codings[j].get('system')})"
                    else:
                        message = (
                            f"identifier type {found!r} does not match system urn:oid:{oid} (expected {expected_code})"
                        )
                        where = f"{loc}.type.coding[{j}].code"
                    shape.append(Finding(FHIR_IDENTIFIER, severity, message, where))
        if use is None:
            shape.append(Finding(FHIR_IDENTIFIER, "warning", "INS identifier without use ('official' expected)", loc))
        elif use not in ("official", "old"):
            shape.append(
                Finding(FHIR_IDENTIFIER, "error", f"INS identifier use {use!r} must be 'official'", f"{loc}.use")
            )
    current = {(i.value, i.oid) for i in ident.ins if i.current}
    if len({v for v, _ in current}) > 1:
        shape.append(
            Finding(
                FHIR_IDENTIFIER,
                "error",
                f"{len(current)} different current INS identifiers; history must use 'old'",
                f"{root}.identifier",
            )
        )


def identity_from_patient(resource: Mapping[str, Any], *, location: str = "Patient") -> Identity:
    """Normalise a FHIR Patient (FR Core 2.2.0 and the later identity-status encoding) into an Identity.

    Tolerant of wrongly typed JSON (the artefact is untrusted): a misplaced value reads as absent or,
    for a trait, as malformed, never as an exception.
    """
    ident = Identity(root=location)
    locs = ident.locations
    locs["root"] = location
    locs["status"] = f"{location}.extension"
    locs["birth_place"] = f"{location}.extension"

    for i, ext in enumerate(_list(resource.get("extension"))):
        if not isinstance(ext, dict):
            continue
        url = ext.get("url")
        eloc = f"{location}.extension[{i}]"
        if url == EXT_IDENTITY_RELIABILITY:
            if ident.status_code is None:
                _read_status(ident, ext, eloc)
        elif url == EXT_BIRTH_PLACE:
            _read_birth_place(ident, ext, eloc, draft=False)
        elif url == EXT_BIRTH_PLACE_FR:
            _read_birth_place(ident, ext, eloc, draft=True)
        elif url == EXT_LUNAR_DATE and isinstance(ext.get("valueString"), str):
            ident.lunar_birth_date = ext["valueString"]

    _read_identifiers(ident, _list(resource.get("identifier")), location)
    if ident.ins:
        primary = ident.current_ins or ident.ins[0]
        if primary.current:
            ident.matricule, ident.oid = primary.value, primary.oid

    names = _list(resource.get("name"))
    locs["birth_name"] = locs["first_given_name"] = locs["given_names"] = f"{location}.name"
    official_i = next((i for i, n in enumerate(names) if isinstance(n, dict) and n.get("use") == "official"), None)
    if official_i is not None:
        official = names[official_i]
        nloc = f"{location}.name[{official_i}]"
        locs["birth_name"] = f"{nloc}.family"
        locs["first_given_name"] = f"{nloc}.given[0]"
        locs["given_names"] = nloc
        ident.birth_name = _text(official.get("family"))
        given = _list(official.get("given"))
        if given:
            ident.first_given_name = _text(given[0])
        for j, ext in enumerate(_list(official.get("extension"))):
            if isinstance(ext, dict) and ext.get("url") == EXT_BIRTH_LIST_GIVEN_NAME:
                ident.given_names_list = _text(ext.get("valueString"))
                if ident.given_names_list is None:
                    ident.given_names_list = ""  # declared without a value: malformed, not missing
                locs["given_names"] = f"{nloc}.extension[{j}].valueString"
                break
        if ident.given_names_list is not None:
            ident.given_names = ident.given_names_list.split()
        else:
            ident.given_names = [g for g in given if isinstance(g, str)]
    usual = next((n for n in names if isinstance(n, dict) and n.get("use") == "usual"), None)
    if usual is not None:
        ident.used_name = _text(usual.get("family"))
        ugiven = _list(usual.get("given"))
        ident.used_given_name = _text(ugiven[0]) if ugiven else None

    gender = resource.get("gender")
    locs["sex"] = f"{location}.gender"
    if gender is not None:
        ident.gender = gender if isinstance(gender, str) else repr(gender)
        if gender == "male":
            ident.sex, ident.gender_kind = "M", "sex"
        elif gender == "female":
            ident.sex, ident.gender_kind = "F", "sex"
        elif gender in ("other", "unknown"):
            ident.gender_kind = "undetermined"
        else:
            ident.gender_kind = "invalid"

    ident.birth_date = _text(resource.get("birthDate"))
    locs["birth_date"] = f"{location}.birthDate"
    _finish_status(ident)
    return ident


# --- The rules, shared by every encoding -------------------------------------------------------------


def _identifier_findings(ins: InsIdentifier) -> Iterator[Finding]:
    """FORMAT, KEY and OID of one INS identifier; a malformed value stops the checks that need it."""
    if ins.oid is not None and ins.oid not in INS_OIDS:
        yield Finding(
            OID_RULE,
            "error",
            f"unknown INS OID {ins.oid} (expected one of .8, .9, .10, .11)",
            ins.oid_location,
        )
    if ins.value is None:
        yield Finding(MATRICULE_FORMAT, "error", "INS identifier without a matricule value", ins.location)
        return
    problem = matricule_problem(ins.value)
    if problem:
        yield Finding(
            MATRICULE_FORMAT, "error", f"malformed INS matricule {ins.value!r}: {problem}", ins.value_location
        )
        return
    body, key = ins.value[:13], int(ins.value[13:])
    expected = nir_key(body)
    if key != expected:
        yield Finding(
            MATRICULE_KEY,
            "error",
            f"wrong INS key {key:02d} for {body} (97 − n mod 97 gives {expected:02d})",
            ins.value_location,
        )
    if ins.oid in INS_OIDS:
        if is_nia(body) and ins.oid not in NIA_OIDS:
            yield Finding(
                OID_RULE,
                "error",
                f"NIA {ins.value} (first digit {body[0]}) under OID {ins.oid}; "
                "an NIA takes 1.2.250.1.213.1.4.9 (or .11 demo)",
                ins.oid_location,
            )
        elif not is_nia(body) and ins.oid not in NIR_OIDS:
            # INSi itself returns NIA numbers starting with 1/2 under the NIA OID (CNDA test 2.05,
            # PROVISOIRE MATRICULE 109076322088835): the OID then says what the number is, so this
            # is unusual but not wrong.
            yield Finding(
                OID_RULE,
                "warning",
                f"number {ins.value} (first digit {body[0]}) under the INS-NIA OID {ins.oid}: an NIA "
                "usually starts with 7 or 8; accepted because INSi returns such NIA",
                ins.oid_location,
            )


def _nir_findings(ident: Identity, ins: InsIdentifier) -> Iterator[Finding]:
    """Sex and birth year/month encoded in a well-formed, correctly keyed NIR/NIA against the traits."""
    value = ins.value
    if value is None or matricule_problem(value) or not key_is_valid(value):
        return  # INS.MATRICULE.* owns it; a corrupt number says nothing reliable about the traits
    digit = value[0]
    nir_sex = "M" if digit in "17" else "F"
    if ident.sex is not None and ident.sex != nir_sex:
        yield Finding(
            NIR_SEX,
            "error",
            f"sex {ident.sex} contradicts the INS first digit {digit} ({nir_sex})",
            ins.value_location,
        )
    bd = ident.birth_date
    if bd is None or birth_date_problem(bd):
        return
    month = int(value[3:5])
    if 20 <= month <= 42 or 50 <= month <= 99:
        return  # fictitious month: birth month unknown when the number was assigned
    if bd[2:4] != value[1:3] or bd[5:7] != value[3:5]:
        yield Finding(
            NIR_BIRTHDATE,
            "error",
            f"birth date {bd} contradicts the INS (year {value[1:3]}, month {value[3:5]})",
            ins.value_location,
        )


def _trait_findings(ident: Identity, *, traits_required: bool) -> Iterator[Finding]:
    has_ins = ident.has_ins
    loc = ident.loc

    def missing(what: str, key: str) -> Finding:
        return Finding(TRAITS_MISSING, "error", f"strict trait missing: {what}", loc(key))

    def blank(value: str | None) -> bool:
        return value is not None and not value.strip()

    if ident.birth_name is None:
        if traits_required:
            yield missing("birth name (official family name)", "birth_name")
    elif blank(ident.birth_name):
        yield Finding(TRAITS_FORMAT, "error", "birth name is empty", loc("birth_name"))

    if ident.first_given_name is None:
        if traits_required:
            yield missing("first birth given name", "first_given_name")
    elif blank(ident.first_given_name):
        yield Finding(TRAITS_FORMAT, "error", "first birth given name is empty", loc("first_given_name"))

    if ident.given_names_list is None:
        if traits_required and has_ins:
            yield missing("list of birth given names", "given_names")
    elif blank(ident.given_names_list):
        yield Finding(TRAITS_FORMAT, "error", "list of birth given names is empty", loc("given_names"))
    elif ident.first_given_name and ident.first_given_name.strip():
        first = normalize_name(ident.first_given_name)
        names = normalize_name(ident.given_names_list)
        # A composed first name may itself contain a space: accept it on a word boundary.
        if names != first and not names.startswith(first + " "):
            yield Finding(
                TRAITS_FIRST_GIVEN,
                "error",
                f"first birth given name {ident.first_given_name!r} is not the first of the birth given "
                f"names {ident.given_names_list!r}",
                loc("first_given_name"),
            )

    if ident.birth_date is None:
        if traits_required:
            yield missing("birth date", "birth_date")
    else:
        problem = birth_date_problem(ident.birth_date)
        if problem:
            yield Finding(TRAITS_FORMAT, "error", problem, loc("birth_date"))

    if ident.gender is None:
        if traits_required:
            yield missing("sex", "sex")
    elif ident.gender_kind == "invalid":
        yield Finding(TRAITS_FORMAT, "error", f"invalid sex code {ident.gender!r}", loc("sex"))
    elif ident.gender_kind == "undetermined" and has_ins:
        yield Finding(TRAITS_FORMAT, "error", f"sex {ident.gender!r} for an INS identity (M or F expected)", loc("sex"))

    if ident.birth_place is None:
        if traits_required:
            yield missing("birth place (INSEE COG code)", "birth_place")
    else:
        problem = cog_problem(ident.birth_place)
        if problem:
            yield Finding(TRAITS_BIRTHPLACE, "error", problem, loc("birth_place"))


def _status_findings(ident: Identity) -> Iterator[Finding]:
    code, system = ident.status_code, ident.status_system
    if code is None:
        what = "identityStatus without a code" if ident.status_declared else "no identity status"
        yield Finding(STATUS_MISSING, "error", f"{what} (fr-core-identity-reliability)", ident.loc("status"))
        return
    codes = STATUS_CODE_SYSTEMS.get(system) if system else None
    if codes is None:
        shown = system or "no system"
        yield Finding(
            STATUS_CODE,
            "error",
            f"identity status {code!r} from unknown code system ({shown})",
            ident.loc("status"),
        )
        return
    if code not in codes:
        yield Finding(STATUS_CODE, "error", f"identity status {code!r} is not a code of {system}", ident.loc("status"))
        return
    primary = ident.current_ins
    if primary is not None and not ident.qualified:
        yield Finding(
            QUALIFIED,
            "error",
            f"INS exposed for an identity with status {code} (only a qualified identity may carry it)",
            primary.location,
        )


def identity_findings(ident: Identity, *, traits_required: bool = True) -> Iterator[Finding]:
    """Every INS rule over a normalised identity: identifiers, strict traits, NIR coherence, status.

    ``traits_required=False`` keeps format checks but drops ``INS.TRAITS.MISSING`` (CDA documents
    without an INS, whose header content is the CDA checks' business).
    """
    yield from ident.shape
    for ins in ident.ins:
        yield from _identifier_findings(ins)
    primary = ident.current_ins
    if primary is not None:
        yield from _nir_findings(ident, primary)
    yield from _trait_findings(ident, traits_required=traits_required)
    if ident.status_applicable:
        yield from _status_findings(ident)


# --- Coherence with INSi --------------------------------------------------------------------------------


def _as_names(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return None


def coherence_findings(ident: Identity, expected: Mapping[str, Any]) -> Iterator[Finding]:
    """Compare the identity with the one INSi returned; absent traits are ``INS.TRAITS.*``'s job.

    The first given name is not compared (``INS.TRAITS.FIRST-GIVEN`` covers it), nor is a birth given
    names list the patient does not declare (``INS.TRAITS.MISSING`` covers it).
    """

    def differ(what: str, got: str, want: str, key: str) -> Finding:
        return Finding(INSI_COHERENCE, "error", f"{what} {got!r} differs from INSi's {want!r}", ident.loc(key))

    primary = ident.current_ins
    want = expected.get("matricule") or expected.get("ins")
    if primary is not None and primary.value is not None and isinstance(want, str) and primary.value != want.strip():
        yield Finding(
            INSI_COHERENCE,
            "error",
            f"matricule {primary.value!r} differs from INSi's {want!r}",
            primary.value_location,
        )
    want_oid = normalize_oid(expected.get("oid"))
    if primary is not None and primary.oid is not None and want_oid and primary.oid != want_oid:
        yield Finding(
            INSI_COHERENCE, "error", f"OID {primary.oid} differs from INSi's {want_oid}", primary.oid_location
        )

    for what, got, raw, key in (
        ("birth name", ident.birth_name, expected.get("birth_name"), "birth_name"),
        ("birth given names", ident.given_names_list, _as_names(expected.get("given_names")), "given_names"),
    ):
        if got and got.strip() and isinstance(raw, str) and normalize_name(got) != normalize_name(raw):
            yield differ(what, got, raw, key)

    want_sex = expected.get("sex")
    if ident.sex is not None and isinstance(want_sex, str) and ident.sex != want_sex.strip().upper():
        yield differ("sex", ident.sex, want_sex, "sex")

    want_date = expected.get("birth_date")
    if ident.birth_date and isinstance(want_date, str):
        want_date = want_date.strip()
        got_date = ident.birth_date.strip()
        # INSi may answer a lunar date (day/month 00): FR Core carries it in fr-core-lunar-date.
        if ident.lunar_birth_date and birth_date_problem(want_date):
            got_date = ident.lunar_birth_date.strip()
        if got_date != want_date:
            yield differ("birth date", got_date, want_date, "birth_date")

    want_place = expected.get("birth_place")
    if ident.birth_place and isinstance(want_place, str) and ident.birth_place.strip() != want_place.strip():
        yield differ("birth place", ident.birth_place, want_place, "birth_place")


# --- Registered checks --------------------------------------------------------------------------------


def _not_a_patient(resource: Any, location: str) -> Finding | None:
    if not isinstance(resource, Mapping):
        return Finding("INPUT.JSON", "error", "expected a FHIR Patient JSON object", location)
    if resource.get("resourceType") != "Patient":
        return Finding("INPUT.JSON", "error", f"expected a Patient, got {resource.get('resourceType')!r}", location)
    return None


@check("ins.patient", kind="fhir-patient", service="INS", rules=PATIENT_RULES)
def ins_patient(resource: Mapping[str, Any], *, location: str = "Patient") -> Iterator[Finding]:
    """INS rules on a FHIR Patient: matricule, OID, identifier slice, strict traits, NIR coherence, status."""
    bad = _not_a_patient(resource, location)
    if bad is not None:
        yield bad
        return
    yield from identity_findings(identity_from_patient(resource, location=location))


@check(
    "ins.coherence",
    kind="fhir-patient",
    service="INS",
    rules={INSI_COHERENCE: "Matricule, OID et traits identiques à ceux retournés par INSi"},
)
def ins_coherence(
    resource: Mapping[str, Any], *, expected: Mapping[str, Any], location: str = "Patient"
) -> Iterator[Finding]:
    """The Patient carries the INS and strict traits INSi returned (case and spacing aside)."""
    bad = _not_a_patient(resource, location)
    if bad is not None:
        yield bad
        return
    yield from coherence_findings(identity_from_patient(resource, location=location), expected)


__all__ = [
    "INS_DEMO_OID",
    "INS_NIA_OID",
    "INS_NIR_OID",
    "INS_OIDS",
    "INS_SYSTEMS",
    "INS_TEST_OID",
    "Identity",
    "InsIdentifier",
    "birth_date_problem",
    "cog_problem",
    "coherence_findings",
    "identity_findings",
    "identity_from_patient",
    "ins_coherence",
    "ins_patient",
    "is_nia",
    "key_is_valid",
    "matricule_problem",
    "nir_key",
    "normalize_name",
    "normalize_oid",
    "parse_matricule",
]
