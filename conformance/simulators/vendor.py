"""Reference vendor: a small, conformant DPI/LGC exposing the bench-facing endpoints of DESIGN.md.

It serves two purposes:

* ``segur-bench demo`` and the test-suite run the whole bench against it, with or without injected
  faults (``conformance/simulators/faults.py``), to prove that every check passes a conformant product
  and fails exactly the requirements a fault breaks;
* it is the executable documentation of what a real vendor exposes in its test environment.

Endpoints (``base`` is wherever the app is mounted; nothing is configured, URLs come from the request):

``GET  /.well-known/segur-bench``   map of the vendor's endpoints: ``{"fhir", "driver", "product", ...}``
``GET  /fhir/metadata``             CapabilityStatement (FHIR R4)
``GET  /fhir/Patient/{id}``         FR Core Patient, ``404`` OperationOutcome if unknown
``GET  /fhir/Patient?identifier=system|value`` (also ``family``, ``given``, ``birthdate``, ``gender``,
                                     ``_id``) → searchset Bundle
``GET  /driver/capabilities``       ``{"product", "version", "software_type", "actions"}``
``POST /driver/actions``            run one action synchronously → ``200 {"id", "status": "done",
                                     "result"}`` or ``200 {"id", "status": "failed", "error"}``;
                                     ``400`` malformed request, ``422`` unsupported action
``GET  /driver/actions/{id}``       the stored outcome of an action, ``404`` if the id is unknown

Driver actions:

``ins.fetch``   params = strict traits (``birth_name``, ``given_names``, ``first_given_name``, ``sex``,
                ``birth_date``, ``birth_place``, optional ``used_name``) → INSi
                ``rechercherInsAvecTraitsIdentite``; or ``carte_vitale: true`` with the card data INSi's
                ``RECVITALE`` carries (``nir``: 13 characters or 15 with the key, ``birth_date``,
                optional ``od_nir``, ``birth_rank``, ``birth_name``) → ``rechercherInsAvecCarteVitale``.
                The call goes to ``services.insi`` over SOAP 1.2 with the ContexteLPS/ContexteBAM
                headers and the ``X-Segur-Bench-Action`` header.  On CR ``00`` the identity INSi
                returned is stored verbatim with status RECUP ("récupérée").  Result: ``{"insi_cr",
                "patient": {"id", "fhir", "identity_status"}}`` (no ``patient`` on CR 01/02).
``ins.qualify`` params ``patient_id`` (optional ``validation_mode``, a FR Core identity-document code,
                default ``CN``): the identity documents were checked, so a RECUP identity becomes QUAL
                (a local PROV identity without INS becomes VALI) → ``{"patient": {...}}``.
``dmp.publish`` params ``patient`` (``{"patient_id"}`` or ``{"ins"}``, a qualified identity) and
                ``document`` (``kind``: ``CR-CONS`` | ``CR-BIO`` | ``VSM``, ``confidentiality`` N/R/V,
                ``transport``: ``xds`` (default) | ``mhd``): CDA R2 N1 + XDS metadata + signed VIHF,
                ITI-41 (SOAP 1.2, MTOM) to ``services.dmp``; with ``mhd``, the same metadata as a PDSm
                provide-document Bundle, ITI-65 (``application/fhir+json``) to ``services.mhd``
                → ``{"document": {"unique_id", "entry_uuid", "set_id", "version"}}``.
``dmp.replace`` the same plus ``replaces`` (entry_uuid or unique_id returned by ``dmp.publish``): new
                version (same setId, versionNumber + 1, RPLC or MHD ``relatesTo replaces``)
                → ``{"document", "replaced"}``.
``dmp.query``   params ``patient``: ITI-18 FindDocuments by INS, then ITI-43 for what was found
                → ``{"documents": [...], "retrieved": [...]}``.  See ``vendor_dmp.py``.

Identity vigilance rules the reference follows (RNIV / DSR): the INS identifier is exposed only for a
qualified identity (rule 28), the given name is the first birth given name, the birth list is kept in
``fr-core-patient-birth-list-given-name``, and the identity status is always exposed.

Faults are applied at the layer a real product would get wrong: the SOAP call (envelope version,
context headers, operation), storage (key, OID, traits), FHIR rendering (status, INS exposure) and search.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import threading
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conformance import __version__
from conformance.parsing import InputError, parse_json
from conformance.simulators.faults import parse_faults
from conformance.simulators.insi import ACTION_ID_HEADER, SoapVersion
from conformance.simulators.insi_client import (
    build_carte_vitale_request,
    build_traits_request,
    parse_response,
)
from conformance.simulators.vendor_dmp import DmpSide

PRODUCT = "segur-bench reference vendor"
VERSION = __version__
SOFTWARE_TYPE = "DPI"
ACTIONS: tuple[str, ...] = ("ins.fetch", "ins.qualify", *DmpSide.ACTIONS)

INSI_TIMEOUT = 10.0
MAX_DRIVER_BODY = 1024 * 1024
MAX_KEPT_ACTIONS = 10_000

FHIR_JSON = "application/fhir+json; charset=utf-8"

# FHIR canonical URLs (FR Core 2.2.0 and its successor identity-status code system).
FR_CORE = "https://hl7.fr/ig/fhir/core"
PROFILE_PATIENT = f"{FR_CORE}/StructureDefinition/fr-core-patient"
PROFILE_PATIENT_INS = f"{FR_CORE}/StructureDefinition/fr-core-patient-ins"
EXT_BIRTH_LIST = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
EXT_IDENTITY_RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
EXT_INSEE_CODE = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
EXT_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
CS_IDENTIFIER_TYPE_FR = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
CS_IDENTIFIER_TYPE_HL7 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CS_IDENTITY_STATUS = f"{FR_CORE}/CodeSystem/fr-core-cs-identity-status"
CS_METHOD_COLLECTION = f"{FR_CORE}/CodeSystem/fr-core-cs-method-collection"
CS_VALIDATION_MODE = f"{FR_CORE}/CodeSystem/fr-core-cs-mode-validation-identity"
CS_COMMUNE = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
CS_COUNTRY = "https://mos.esante.gouv.fr/NOS/TRE_R20-Pays/FHIR/TRE-R20-Pays"
IPP_SYSTEM = "urn:segur-bench:reference-vendor:ipp"

OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_C = "1.2.250.1.213.1.4.2"  # the obsolete INS-C (computed INS): a real-world confusion
# Identifier type code per INS OID (FR Core Patient INS slices).
INS_TYPE_BY_OID = {
    OID_INS_NIR: "INS-NIR",
    OID_INS_NIA: "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR-TEST",
    "1.2.250.1.213.1.4.11": "INS-NIR-DEMO",
}
# Documents that may qualify an INS identity: FR Core 2.2.0 value set fr-core-vs-mode-validation-identity-ins.
VALIDATION_MODES = {
    "CN": "Carte nationale d'identité",
    "PA": "Passeport",
    "AN": "Extrait d'acte de naissance",
    "LE": "Livret de famille",
}

IdentityStatus = Literal["PROV", "RECUP", "VALI", "QUAL"]
STATUS_DISPLAY: dict[str, str] = {
    "PROV": "Identité provisoire",
    "RECUP": "Identité récupérée",
    "VALI": "Identité validée",
    "QUAL": "Identité qualifiée",
}

DEFAULT_LPS: dict[str, str] = {
    "idam": "SEGURBENCH01",
    "idam_r": "4",
    "name": f"urn:lps:segur-bench-reference:{VERSION}",
    "version": VERSION,
    "emitter": "reference-vendor@segur-bench.invalid",
}


# ---------------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------------


@dataclass
class StoredPatient:
    """A patient as the DPI stores it: strict traits, INS (if any), identity status and provenance."""

    id: str
    ipp: str
    status: IdentityStatus
    birth_name: str
    given_names: list[str]
    first_given_name: str
    sex: str
    birth_date: str
    birth_place: str | None
    matricule: str | None = None
    oid: str | None = None
    used_name: str | None = None
    method_collection: str | None = None
    date_collection: str | None = None
    validation_date: str | None = None
    validation_mode: str | None = None
    # The INS INSi returned, unaltered: a second ins.fetch of the same person updates this record
    # instead of creating a duplicate (identity vigilance), even when a fault altered the stored INS.
    insi_matricule: str | None = None


class PatientStore:
    """Thread-safe in-memory patient base; driver actions run in worker threads.

    Records are replaced, never mutated, so a reader always sees a consistent patient; a
    read-modify-write sequence (find then update) holds ``lock`` so that two concurrent fetches of
    the same person cannot create a duplicate.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._patients: dict[str, StoredPatient] = {}
        self._ipp_seq = 0

    def create(self, **fields: Any) -> StoredPatient:
        """Store a new patient under a fresh id and IPP."""
        with self.lock:
            self._ipp_seq += 1
            patient = StoredPatient(id=str(uuid.uuid4()), ipp=f"IPP-{self._ipp_seq:06d}", **fields)
            self._patients[patient.id] = patient
            return patient

    def put(self, patient: StoredPatient) -> StoredPatient:
        with self.lock:
            self._patients[patient.id] = patient
        return patient

    def get(self, patient_id: str) -> StoredPatient | None:
        with self.lock:
            return self._patients.get(patient_id)

    def by_insi_matricule(self, matricule: str) -> StoredPatient | None:
        with self.lock:
            return next((p for p in self._patients.values() if p.insi_matricule == matricule), None)

    def all(self) -> list[StoredPatient]:
        with self.lock:
            return list(self._patients.values())


@dataclass
class ActionRecord:
    """Outcome of one driver action, kept by id for ``GET /driver/actions/{id}``."""

    id: str
    action: str
    status: Literal["accepted", "done", "failed"] = "accepted"
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "action": self.action, "status": self.status}
        if self.status == "done":
            out["result"] = self.result or {}
        elif self.status == "failed":
            out["error"] = self.error or {}
        return out


class ActionStore:
    """Bounded, thread-safe map of action id → record (oldest forgotten first on long-running sims)."""

    def __init__(self, limit: int = MAX_KEPT_ACTIONS) -> None:
        self._lock = threading.Lock()
        self._records: OrderedDict[str, ActionRecord] = OrderedDict()
        self._limit = limit

    def reserve(self, action_id: str, action: str) -> tuple[ActionRecord, bool]:
        """Return (record, created); an existing id is not run twice (a retried POST is idempotent)."""
        with self._lock:
            existing = self._records.get(action_id)
            if existing is not None:
                return existing, False
            record = ActionRecord(action_id, action)
            self._records[action_id] = record
            while len(self._records) > self._limit:
                self._records.popitem(last=False)
            return record, True

    def get(self, action_id: str) -> ActionRecord | None:
        with self._lock:
            return self._records.get(action_id)


# ---------------------------------------------------------------------------------------------------
# Driver errors
# ---------------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """The driver request is malformed (HTTP 400): the action is not run."""


class ActionFailed(Exception):
    """The action ran but could not complete (HTTP 200, ``status: failed``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({**extra, "error": {"code": code, "message": message}}, status_code=status)


# ---------------------------------------------------------------------------------------------------
# Parameter validation (action parameters are shared by all actions, see DESIGN.md)
# ---------------------------------------------------------------------------------------------------


def _str_param(params: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise BadRequest(f"params.{name} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"params.{name} must be a non-empty string")
    return value.strip()


def _date_param(params: Mapping[str, Any], name: str) -> str:
    value = _str_param(params, name)
    assert value is not None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        # INSi accepts "lunar" dates (day or month 00) for people with an incomplete civil status.
        if not (len(value) == 10 and value[4] == "-" and value[7] == "-" and value.replace("-", "").isdigit()):
            raise BadRequest(f"params.{name} must be a date YYYY-MM-DD") from None
    return value


def _traits_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Strict traits of an INSi traits query, normalised as DESIGN.md names them."""
    birth_name = _str_param(params, "birth_name")
    given = params.get("given_names")
    if given is None:
        first = _str_param(params, "first_given_name")
        given = [first]
    if not isinstance(given, list) or not given or not all(isinstance(g, str) and g.strip() for g in given):
        raise BadRequest("params.given_names must be a non-empty list of strings (birth order)")
    given_names = [g.strip() for g in given]
    first_given = _str_param(params, "first_given_name", required=False) or given_names[0]
    sex = _str_param(params, "sex")
    if sex not in ("M", "F"):
        raise BadRequest("params.sex must be 'M' or 'F'")
    traits: dict[str, Any] = {
        "birth_name": birth_name,
        "given_names": given_names,
        "first_given_name": first_given,
        "sex": sex,
        "birth_date": _date_param(params, "birth_date"),
    }
    birth_place = _str_param(params, "birth_place", required=False)
    if birth_place is not None:
        if len(birth_place) != 5:
            raise BadRequest("params.birth_place must be a 5-character COG code")
        traits["birth_place"] = birth_place
    return traits


def _carte_vitale_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What INSi's RECVITALE carries, read from the card: the individual's matricule (``nir``, 13
    characters or 15 with the key), the ouvrant droit's (``od_nir``), birth date, rank and name."""
    card: dict[str, Any] = {}
    for name in ("nir", "od_nir"):
        nir = _str_param(params, name, required=name == "nir")
        if nir is not None:
            if len(nir) not in (13, 15):
                raise BadRequest(f"params.{name} must hold 13 characters (or 15 with the key)")
            card[name] = nir
    card["birth_date"] = _date_param(params, "birth_date")
    rank = params.get("birth_rank", 1)
    if isinstance(rank, bool) or not isinstance(rank, int | str) or not str(rank).isdigit():
        raise BadRequest("params.birth_rank must be a positive integer")
    card["rang"] = str(rank)
    birth_name = _str_param(params, "birth_name", required=False)
    if birth_name is not None:
        card["birth_name"] = birth_name
    return card


def _sex_from_nir(nir: str) -> str | None:
    return {"1": "M", "7": "M", "2": "F", "8": "F"}.get(nir[:1])


# ---------------------------------------------------------------------------------------------------
# TLS material given by the bench (services.ca_pem, services.pki)
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tls_options(services: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``requests`` keyword arguments for the bench's test CA and client certificate, if any.

    ``requests`` wants file paths, so PEM strings are written to a private temporary directory that
    disappears with the call.
    """
    raw_pki = services.get("pki")
    pki: dict[str, Any] = raw_pki if isinstance(raw_pki, dict) else {}
    ca_pem = services.get("ca_pem") or pki.get("ca_pem")
    cert_pem, key_pem = pki.get("cert_pem"), pki.get("key_pem")
    if not ca_pem and not (cert_pem and key_pem):
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="segur-vendor-") as tmp:

        def write(name: str, text: str) -> str:
            path = os.path.join(tmp, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as fh:
                fh.write(text)
            return path

        opts: dict[str, Any] = {}
        if isinstance(ca_pem, str) and ca_pem:
            opts["verify"] = write("ca.pem", ca_pem)
        if isinstance(cert_pem, str) and isinstance(key_pem, str) and cert_pem and key_pem:
            opts["cert"] = (write("cert.pem", cert_pem), write("key.pem", key_pem))
        yield opts


# ---------------------------------------------------------------------------------------------------
# FHIR rendering (FR Core Patient, R4)
# ---------------------------------------------------------------------------------------------------


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _birth_place_extension(cog: str) -> dict[str, Any]:
    system = CS_COUNTRY if cog.startswith("99") else CS_COMMUNE
    return {
        "url": EXT_BIRTH_PLACE,
        "valueAddress": {"extension": [{"url": EXT_INSEE_CODE, "valueCoding": _coding(system, cog)}]},
    }


def _reliability_extension(p: StoredPatient) -> dict[str, Any]:
    subs: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": _coding(CS_IDENTITY_STATUS, p.status, STATUS_DISPLAY.get(p.status)),
        }
    ]
    if p.method_collection:
        subs.append({"url": "methodCollection", "valueCoding": _coding(CS_METHOD_COLLECTION, p.method_collection)})
    if p.date_collection:
        subs.append({"url": "dateCollection", "valueDate": p.date_collection})
    if p.validation_date:
        subs.append({"url": "validationDate", "valueDate": p.validation_date})
    if p.validation_mode:
        subs.append(
            {
                "url": "validationMode",
                "valueCoding": _coding(CS_VALIDATION_MODE, p.validation_mode, VALIDATION_MODES.get(p.validation_mode)),
            }
        )
    return {"url": EXT_IDENTITY_RELIABILITY, "extension": subs}


def _ins_identifier(p: StoredPatient) -> dict[str, Any]:
    assert p.matricule is not None and p.oid is not None
    type_code = INS_TYPE_BY_OID.get(p.oid, "INS-NIR")
    return {
        "use": "official",
        "type": {"coding": [_coding(CS_IDENTIFIER_TYPE_FR, type_code)]},
        "system": f"urn:oid:{p.oid}",
        "value": p.matricule,
    }


def render_patient(p: StoredPatient, faults: frozenset[str] = frozenset()) -> dict[str, Any]:
    """FR Core Patient for ``p``; the INS identifier appears only once the identity is qualified."""
    expose_ins = p.matricule is not None and (p.status == "QUAL" or "ins.unqualified-ins" in faults)
    extensions: list[dict[str, Any]] = []
    if p.birth_place:
        extensions.append(_birth_place_extension(p.birth_place))
    if "ins.no-status" not in faults:
        extensions.append(_reliability_extension(p))
    identifiers: list[dict[str, Any]] = [
        {
            "use": "usual",
            "type": {"coding": [_coding(CS_IDENTIFIER_TYPE_HL7, "PI", "Patient internal identifier")]},
            "system": IPP_SYSTEM,
            "value": p.ipp,
        }
    ]
    if expose_ins:
        identifiers.insert(0, _ins_identifier(p))
    names: list[dict[str, Any]] = [
        {
            "extension": [{"url": EXT_BIRTH_LIST, "valueString": " ".join(p.given_names)}],
            "use": "official",
            "family": p.birth_name,
            "given": [p.first_given_name],
        }
    ]
    if p.used_name and p.used_name != p.birth_name:
        names.append({"use": "usual", "family": p.used_name})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": p.id,
        "meta": {"profile": [PROFILE_PATIENT_INS if expose_ins else PROFILE_PATIENT]},
    }
    if extensions:
        resource["extension"] = extensions
    resource.update(
        {
            "identifier": identifiers,
            "active": True,
            "name": names,
            "gender": {"M": "male", "F": "female"}.get(p.sex, "unknown"),
            "birthDate": p.birth_date,
        }
    )
    return resource


def _operation_outcome(code: str, message: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": message}],
    }


def _fhir(content: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(dict(content), status_code=status, media_type=FHIR_JSON)


def _fold(text: str) -> str:
    """Case- and accent-insensitive form for FHIR string search (``family=dur`` finds ``Durand``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _match_token(resource: dict[str, Any], token: str) -> bool:
    """FHIR token search on ``identifier``: ``system|value``, ``|value`` (no system) or ``value``."""
    if "|" in token:
        system, value = token.split("|", 1)
        for ident in resource.get("identifier", []):
            if value and ident.get("value") != value:
                continue
            if system == "" and "system" not in ident:
                return True
            if system and ident.get("system") == system:
                return True
        return False
    return any(ident.get("value") == token for ident in resource.get("identifier", []))


def _match_param(resource: dict[str, Any], name: str, value: str) -> bool:
    if name == "identifier":
        return _match_token(resource, value)
    if name == "_id":
        return resource["id"] == value
    if name == "family":
        return any(_fold(n.get("family", "")).startswith(_fold(value)) for n in resource["name"])
    if name == "given":
        given = [g for n in resource["name"] for g in n.get("given", [])]
        given += [
            g
            for n in resource["name"]
            for ext in n.get("extension", [])
            if ext.get("url") == EXT_BIRTH_LIST
            for g in ext.get("valueString", "").split()
        ]
        return any(_fold(g).startswith(_fold(value)) for g in given)
    if name == "birthdate":
        wanted = value[2:] if value.startswith("eq") else value
        return bool(wanted) and resource.get("birthDate", "").startswith(wanted)
    if name == "gender":
        return resource.get("gender") == value
    return True  # FHIR servers may ignore parameters they do not support (lenient handling)


SEARCH_PARAMS = ("identifier", "_id", "family", "given", "birthdate", "gender")


# ---------------------------------------------------------------------------------------------------
# The vendor
# ---------------------------------------------------------------------------------------------------


class ReferenceVendor:
    """State and behaviour of the reference vendor; ``create_vendor_app`` exposes it over HTTP."""

    def __init__(
        self,
        *,
        faults: frozenset[str] = frozenset(),
        lps: Mapping[str, str] | None = None,
        seed: bool = True,
    ) -> None:
        self.faults = parse_faults(faults)
        self.lps: dict[str, str] = {**DEFAULT_LPS, "instance": str(uuid.uuid4()), **(lps or {})}
        self.patients = PatientStore()
        self.actions = ActionStore()
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, Any], str, str], dict[str, Any]]] = {
            "ins.fetch": self._ins_fetch,
            "ins.qualify": self._ins_qualify,
        }
        # DMP client side (vendor_dmp.py): dmp.publish, dmp.replace, dmp.query.
        self.dmp = DmpSide(self)
        self._handlers.update(self.dmp.handlers())
        if seed:
            self._seed()

    def _seed(self) -> None:
        """A DPI is never empty: one local, provisional identity (no INS, never sent to INSi).

        It also makes a search that ignores its parameters visible, since it then returns this patient.
        """
        self.patients.create(
            status="PROV",
            birth_name="LOCALE",
            given_names=["CLAIRE", "ANNE"],
            first_given_name="CLAIRE",
            sex="F",
            birth_date="1985-04-12",
            birth_place="75056",
            method_collection="SM",
        )

    def has(self, fault: str) -> bool:
        return fault in self.faults

    # -- driver actions ----------------------------------------------------------------------------

    def validate(self, action: str, params: dict[str, Any], services: dict[str, Any]) -> None:
        """Reject malformed parameters before anything runs (answered 400, nothing stored).

        A dry run of the same parsers the action uses in its worker thread: they are cheap, and the
        action code then reads like what a vendor writes, with no pre-parsed state to thread through.
        """
        if action == "ins.fetch":
            insi = services.get("insi")
            if not isinstance(insi, str) or not insi.startswith(("http://", "https://")):
                raise BadRequest("services.insi must be the http(s) URL of the INSi service")
            if not isinstance(params.get("carte_vitale", False), bool):
                raise BadRequest("params.carte_vitale must be true or false")
            if params.get("carte_vitale") is True:
                _carte_vitale_params(params)
            else:
                _traits_params(params)
        elif action == "ins.qualify":
            _str_param(params, "patient_id")
            mode = params.get("validation_mode", "CN")
            if not isinstance(mode, str) or mode not in VALIDATION_MODES:
                raise BadRequest(f"params.validation_mode must be one of {', '.join(VALIDATION_MODES)}")
        elif action in DmpSide.ACTIONS:
            why = DmpSide.validate(action, params, services)
            if why:
                raise BadRequest(why)

    def run(self, record: ActionRecord, params: dict[str, Any], services: dict[str, Any], base: str) -> None:
        """Run one validated action and store its outcome in ``record`` (called in a worker thread)."""
        try:
            record.result = self._handlers[record.action](params, services, record.id, base)
            record.status = "done"
        except ActionFailed as exc:
            record.error = {"code": exc.code, "message": exc.message}
            record.status = "failed"
        except Exception as exc:  # a bug must still leave a readable, stored outcome
            record.error = {
                "code": "internal-error",
                "message": f"{type(exc).__name__} while running the action",
            }
            record.status = "failed"

    def _patient_ref(self, p: StoredPatient, base: str) -> dict[str, Any]:
        return {"id": p.id, "fhir": f"{base}/fhir/Patient/{p.id}", "identity_status": p.status}

    def _ins_fetch(self, params: dict[str, Any], services: dict[str, Any], action_id: str, base: str) -> dict[str, Any]:
        body, headers = self._insi_request(params, action_id)
        # The builder already sets it; stated here because it is how the bench correlates the call.
        headers[ACTION_ID_HEADER] = action_id
        try:
            with _tls_options(services) as tls:
                resp = requests.post(services["insi"], data=body, headers=headers, timeout=INSI_TIMEOUT, **tls)
        except requests.Timeout:
            raise ActionFailed("insi-timeout", f"INSi did not answer within {INSI_TIMEOUT:g} s") from None
        except requests.RequestException as exc:
            raise ActionFailed("insi-unreachable", f"INSi could not be reached: {type(exc).__name__}") from None
        try:
            answer = parse_response(resp.content)
        except InputError as exc:
            raise ActionFailed(
                "insi-error", f"INSi answered HTTP {resp.status_code} and no readable result: {exc.message}"
            ) from None
        if answer.get("fault"):
            fault = answer["fault"]
            reason = fault.get("detail") or fault.get("reason") or "no reason given"
            code = fault.get("detail_code") or fault.get("subcode") or fault.get("code")
            raise ActionFailed("insi-fault", f"INSi answered a SOAP fault {code}: {reason}"[:300])
        if resp.status_code != 200:
            raise ActionFailed("insi-error", f"INSi answered HTTP {resp.status_code}")
        cr = str(answer.get("cr"))
        result: dict[str, Any] = {"insi_cr": cr}
        if cr != "00":
            return result
        identity = answer.get("identity")
        if not identity:
            raise ActionFailed("insi-bad-response", "INSi answered CR 00 without an identity")
        patient = self._store_insi_identity(identity, params)
        result["patient"] = self._patient_ref(patient, base)
        return result

    def _insi_request(self, params: dict[str, Any], action_id: str) -> tuple[bytes, dict[str, str]]:
        """The SOAP request a DPI sends for ``params``: this is where the INSi-call faults apply."""
        soap_version: SoapVersion = "1.1" if self.has("ins.insi-soap11") else "1.2"
        contexts = not self.has("ins.insi-no-context")
        if params.get("carte_vitale") is True:
            card = _carte_vitale_params(params)
            if not self.has("ins.no-carte-vitale"):
                return build_carte_vitale_request(
                    card,
                    lps=self.lps,
                    soap_version=soap_version,
                    include_contexts=contexts,
                    action_id=action_id,
                )
            # The fault: a product that only knows the traits operation queries with whatever traits
            # the front desk typed in (the sex can be read from the NIR on the card).
            fallback = dict(params)
            fallback.setdefault("sex", _sex_from_nir(card["nir"]))
            try:
                traits = _traits_params(fallback)
            except BadRequest as exc:
                raise ActionFailed("missing-traits", f"traits query impossible: {exc}") from None
        else:
            traits = _traits_params(params)
        return build_traits_request(
            traits, lps=self.lps, soap_version=soap_version, include_contexts=contexts, action_id=action_id
        )

    def _store_insi_identity(self, identity: Mapping[str, Any], params: Mapping[str, Any]) -> StoredPatient:
        """Store the INSi identity verbatim (status RECUP), except where a storage fault alters it."""
        matricule = str(identity["matricule"])
        oid = str(identity["oid"])
        given_names = [str(g) for g in identity.get("given_names") or []]
        birth_name = str(identity["birth_name"])
        sex = str(identity["sex"])
        birth_place = identity.get("birth_place")
        used_name = params.get("used_name") if isinstance(params.get("used_name"), str) else None
        first_given = str(identity.get("first_given_name") or (given_names[0] if given_names else ""))

        if self.has("ins.bad-key"):
            key = int(matricule[13:]) if matricule[13:].isdigit() else 0
            matricule = f"{matricule[:13]}{key % 97 + 1:02d}"
        if self.has("ins.bad-oid"):
            oid = OID_INS_C
        if self.has("ins.missing-birth-place"):
            birth_place = None
        if self.has("ins.sex-mismatch"):
            sex = {"M": "F", "F": "M"}.get(sex, sex)
        if self.has("ins.first-given-mismatch"):
            # The last birth given name; with a single one, a used first name the list does not hold.
            first_given = given_names[-1] if len(given_names) > 1 else ("MARIE" if first_given != "MARIE" else "ANNE")
        if self.has("ins.used-name-as-birth-name"):
            if not used_name or used_name == birth_name:
                used_name = "MARTIN" if birth_name != "MARTIN" else "DUPONT"
            birth_name = used_name

        fields: dict[str, Any] = {
            "birth_name": birth_name,
            "given_names": given_names,
            "first_given_name": first_given,
            "sex": sex,
            "birth_date": str(identity["birth_date"]),
            "birth_place": str(birth_place) if birth_place else None,
            "matricule": matricule,
            "oid": oid,
            "used_name": used_name,
            "method_collection": "INSI",
            "date_collection": dt.date.today().isoformat(),
            "insi_matricule": str(identity["matricule"]),
        }
        with self.patients.lock:
            existing = self.patients.by_insi_matricule(fields["insi_matricule"])
            if existing is None:
                return self.patients.create(status="RECUP", **fields)
            # A new INSi call for a known person is a verification: a qualified identity stays qualified.
            status: IdentityStatus = "QUAL" if existing.status == "QUAL" else "RECUP"
            return self.patients.put(replace(existing, status=status, **fields))

    def _ins_qualify(
        self, params: dict[str, Any], services: dict[str, Any], action_id: str, base: str
    ) -> dict[str, Any]:
        patient_id = _str_param(params, "patient_id")
        assert patient_id is not None
        with self.patients.lock:
            patient = self.patients.get(patient_id)
            if patient is None:
                raise ActionFailed("unknown-patient", f"no patient with id {patient_id}")
            # RNIV: checking an identity document qualifies an INSi-returned identity; without INS the
            # identity is only validated.
            status: IdentityStatus = "QUAL" if patient.matricule else "VALI"
            patient = self.patients.put(
                replace(
                    patient,
                    status=status,
                    validation_date=dt.date.today().isoformat(),
                    validation_mode=str(params.get("validation_mode", "CN")),
                )
            )
        return {"patient": self._patient_ref(patient, base)}

    # -- FHIR --------------------------------------------------------------------------------------

    def search(self, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Patients matching every parameter (AND), each value a comma-separated OR list."""
        resources = [render_patient(p, self.faults) for p in self.patients.all()]
        for name, raw in query:
            if name == "identifier" and self.has("ins.search-ignores-identifier"):
                continue
            values = [v for v in raw.split(",") if v]
            resources = [r for r in resources if any(_match_param(r, name, v) for v in values)]
        return resources


# ---------------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None beyond ``limit`` bytes (memory stays bounded on hostile input)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_vendor_app(
    *,
    faults: frozenset[str] = frozenset(),
    lps: dict[str, str] | None = None,
    seed: bool = True,
) -> Starlette:
    """The reference vendor as an ASGI app (run it with ``BackgroundServer`` or uvicorn)."""
    vendor = ReferenceVendor(faults=faults, lps=lps, seed=seed)

    async def well_known(request: Request) -> JSONResponse:
        base = _base(request)
        return JSONResponse(
            {
                "fhir": f"{base}/fhir",
                "driver": f"{base}/driver",
                "product": PRODUCT,
                "version": VERSION,
                "software_type": SOFTWARE_TYPE,
            }
        )

    async def capabilities(request: Request) -> JSONResponse:
        return JSONResponse(
            {"product": PRODUCT, "version": VERSION, "software_type": SOFTWARE_TYPE, "actions": list(ACTIONS)}
        )

    async def post_action(request: Request) -> JSONResponse:
        body = await _read_capped(request, MAX_DRIVER_BODY)
        if body is None:
            return _error(413, "too-large", f"driver requests are limited to {MAX_DRIVER_BODY} bytes")
        try:
            payload = parse_json(body)
        except InputError as exc:
            return _error(400, "bad-request", exc.message)
        if not isinstance(payload, dict):
            return _error(400, "bad-request", "the request body must be a JSON object")
        action_id, action = payload.get("id"), payload.get("action")
        params, services = payload.get("params", {}), payload.get("services", {})
        if not isinstance(action_id, str) or not action_id.strip():
            return _error(400, "bad-request", "id must be a non-empty string")
        if not isinstance(action, str) or not action:
            return _error(400, "bad-request", "action must be a non-empty string", id=action_id)
        if not isinstance(params, dict) or not isinstance(services, dict):
            return _error(400, "bad-request", "params and services must be JSON objects", id=action_id)
        if action not in ACTIONS:
            return _error(422, "unsupported-action", f"action {action!r} is not supported", id=action_id)
        try:
            vendor.validate(action, params, services)
        except BadRequest as exc:
            return _error(400, "bad-request", str(exc), id=action_id)
        record, created = vendor.actions.reserve(action_id, action)
        if not created:
            if record.action != action:
                return _error(400, "bad-request", f"id {action_id} already used for {record.action}", id=action_id)
            # Idempotent retry: answer what the first call did (202 while it is still running).
            return JSONResponse(record.as_json(), status_code=202 if record.status == "accepted" else 200)
        await run_in_threadpool(vendor.run, record, params, services, _base(request))
        return JSONResponse(record.as_json())

    async def get_action(request: Request) -> JSONResponse:
        action_id = request.path_params["action_id"]
        record = vendor.actions.get(action_id)
        if record is None:
            return _error(404, "unknown-action", f"no action with id {action_id}", id=action_id)
        return JSONResponse(record.as_json())

    async def read_patient(request: Request) -> JSONResponse:
        patient = vendor.patients.get(request.path_params["patient_id"])
        if patient is None:
            return _fhir(_operation_outcome("not-found", "Patient not found"), 404)
        return _fhir(render_patient(patient, vendor.faults))

    async def search_patient(request: Request) -> JSONResponse:
        base = _base(request)
        query = [(k, v) for k, v in request.query_params.multi_items() if k in SEARCH_PARAMS]
        matches = vendor.search(query)
        return _fhir(
            {
                "resourceType": "Bundle",
                "id": str(uuid.uuid4()),
                "meta": {"lastUpdated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                "type": "searchset",
                "total": len(matches),
                "link": [{"relation": "self", "url": str(request.url)}],
                "entry": [
                    {"fullUrl": f"{base}/fhir/Patient/{r['id']}", "resource": r, "search": {"mode": "match"}}
                    for r in matches
                ],
            }
        )

    async def metadata(request: Request) -> JSONResponse:
        return _fhir(_capability_statement(_base(request)))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/fhir"):
            code = "not-found" if exc.status_code == 404 else "not-supported"
            return _fhir(_operation_outcome(code, str(exc.detail)), exc.status_code)
        return _error(exc.status_code, "http-error", str(exc.detail))

    async def on_crash(request: Request, exc: Exception) -> Response:
        # Never a traceback to the client: the bench treats the vendor as untrusted and so do we.
        if request.url.path.startswith("/fhir"):
            return _fhir(_operation_outcome("exception", "internal server error"), 500)
        return _error(500, "internal-error", "internal server error")

    routes = [
        Route("/.well-known/segur-bench", well_known, methods=["GET"]),
        Route("/fhir/metadata", metadata, methods=["GET"]),
        Route("/fhir/Patient", search_patient, methods=["GET"]),
        Route("/fhir/Patient/{patient_id}", read_patient, methods=["GET"]),
        Route("/driver/capabilities", capabilities, methods=["GET"]),
        Route("/driver/actions", post_action, methods=["POST"]),
        Route("/driver/actions/{action_id}", get_action, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: on_http_error, Exception: on_crash})
    app.state.vendor = vendor
    return app


def _capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": PRODUCT, "version": VERSION},
        "implementation": {"description": PRODUCT, "url": f"{base}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Patient",
                        "profile": PROFILE_PATIENT,
                        "supportedProfile": [PROFILE_PATIENT_INS],
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "identifier", "type": "token"},
                            {"name": "_id", "type": "token"},
                            {"name": "family", "type": "string"},
                            {"name": "given", "type": "string"},
                            {"name": "birthdate", "type": "date"},
                            {"name": "gender", "type": "token"},
                        ],
                    }
                ],
            }
        ],
    }


__all__ = [
    "ACTIONS",
    "DEFAULT_LPS",
    "PRODUCT",
    "SOFTWARE_TYPE",
    "VERSION",
    "ReferenceVendor",
    "StoredPatient",
    "create_vendor_app",
    "render_patient",
]
