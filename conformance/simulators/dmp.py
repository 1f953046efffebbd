"""Double of the DMP (Dossier Médical Partagé), for vendors' software to publish, query and retrieve.

The vendor's software is the client: it sends IHE XDS.b transactions in SOAP 1.2 — ITI-41
ProvideAndRegisterDocumentSet-b (MTOM/XOP ``multipart/related``, or a plain ``application/soap+xml``
envelope with base64 documents), ITI-18 RegistryStoredQuery (FindDocuments by patientId, GetDocuments
by entryUUID/uniqueId) and ITI-43 RetrieveDocumentSet — or their MHD equivalents in FHIR R4: ITI-65
(``POST /fhir`` transaction Bundle), ITI-67 (``GET /fhir/DocumentReference?patient.identifier=…``) and
ITI-68 (``GET /fhir/Binary/{id}``).

Like the INSi double, this one is *lenient*: it stores whatever it can read (a wrong hash, a bad code
or a missing VIHF do not make it refuse the submission) because a strict double would turn one defect
into a cascade of unrelated failures later in the run (the replace and query steps need the first
document to be stored).  Conformance is judged separately, by the checks the scenarios run on what
this double recorded: every request — hostile ones included — becomes a ``Received(service="dmp")``
whose ``facts`` hold the parts the checks need (SOAP version, ``wsse:Security`` header, the
``lcm:SubmitObjectsRequest``, the documents resolved from their ``xop:Include``, the patient's INS…).

Only bytes that are not safe, well-formed XML/JSON/MIME are refused, with a SOAP fault (or a FHIR
OperationOutcome) naming the ``INPUT.*`` rule; nothing a client sends can make the double raise.
Multipart bodies are split in memory by our own boundary scanner (no temporary files) under size and
part-count caps.

Pure helpers (``parse_multipart``, ``parse_soap``, ``DmpStore``, the ``build_*`` answers) carry the
logic so that tests exercise them without sockets; ``create_dmp_app`` only wires them to HTTP.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import json
import quopri
import re
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.parsing import InputError, parse_json, parse_xml
from conformance.simulators.bodies import read_body
from conformance.simulators.traffic import Received, TrafficLog
from conformance.simulators.xmltree import child as _child
from conformance.simulators.xmltree import children as _children
from conformance.simulators.xmltree import local as _local
from conformance.simulators.xmltree import text as _text

# ------------------------------------------------------------------------------------------ namespaces
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_XDSB = "urn:ihe:iti:xds-b:2007"
NS_LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS_QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
NS_RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
NS_XOP = "http://www.w3.org/2004/08/xop/include"

# WS-Addressing actions of the three XDS.b transactions (IHE ITI TF-2b/2x).
ACTION_ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
RESPONSE_ACTIONS = {
    "iti-41": f"{ACTION_ITI41}Response",
    "iti-18": f"{ACTION_ITI18}Response",
    "iti-43": f"{ACTION_ITI43}Response",
}

# ebRIM identification schemes and stored queries (IHE ITI TF-3 4.2.3 / 4.2.5).
SCHEME_DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
SCHEME_DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SCHEME_SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SCHEME_SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
QUERY_FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
QUERY_GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
STATUS_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
RESPONSE_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
ERROR_SEVERITY = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
ASSOCIATION_RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"

# The repository the double plays (an OID of the bench's own arc would be better; this one is
# fictitious and says so in its last arcs).
REPOSITORY_UNIQUE_ID = "1.2.250.1.213.4.1.1.9999.1"
ACTION_ID_HEADER = "X-Segur-Bench-Action"

# An ITI-41 with a large PDF stays well below this; the cap bounds memory on hostile sizes.
MAX_BODY = 30 * 1024 * 1024
MAX_XML = 10 * 1024 * 1024
MAX_PARTS = 64
MAX_PART_HEADERS = 16 * 1024
_DRAIN_LIMIT = 64 * 1024 * 1024
# What the double keeps in memory across a long-running `sim services`: oldest entries go first.
MAX_STORED_ENTRIES = 5_000
MAX_STORED_BYTES = 256 * 1024 * 1024

Operation = Literal["iti-41", "iti-18", "iti-43", "iti-65", "iti-67", "iti-68"]
SoapVersion = Literal["1.2", "1.1"]

_SOAP_CT = {"1.2": "application/soap+xml; charset=utf-8", "1.1": "text/xml; charset=utf-8"}
_ENV_NS = {"1.2": NS_SOAP12, "1.1": NS_SOAP11}
FHIR_JSON = "application/fhir+json; charset=utf-8"
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# ------------------------------------------------------------------------------------------ helpers


def _iter_local(el: etree._Element, local: str) -> list[etree._Element]:
    """Descendants named ``local`` in any namespace: the double reads leniently, checks judge namespaces."""
    return [e for e in el.iter() if isinstance(e.tag, str) and _local(e) == local]


def content_type_parts(value: str | None) -> tuple[str | None, dict[str, str]]:
    """Media type (lower case) and parameters of a Content-Type value; quoted values may hold ``;``."""
    if not value:
        return None, {}
    msg = email.message.Message()
    msg["content-type"] = value
    media = msg.get_content_type() if "/" in value.split(";", 1)[0] else None
    params: dict[str, str] = {}
    for key, val in msg.get_params(failobj=[])[1:]:
        if isinstance(val, tuple):  # RFC 2231 encoded value
            val = email.utils.collapse_rfc2231_value(val)
        params[str(key).lower()] = str(val)
    return media, params


def _strip_cid(value: str | None) -> str:
    value = (value or "").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()


def split_cx(value: str | None) -> tuple[str | None, str | None]:
    """``ID^^^&OID&ISO`` (HL7 v2 CX, the XDS patientId) → (ID, assigning authority OID)."""
    if not value:
        return None, None
    ident, _, rest = value.partition("^^^")
    oid = None
    if rest:
        parts = rest.split("&")
        if len(parts) >= 2 and parts[1]:
            oid = parts[1]
    return (ident.strip() or None), oid


# ------------------------------------------------------------------------------------------ MIME
@dataclass
class MimePart:
    headers: dict[str, str]
    content: bytes

    @property
    def content_id(self) -> str:
        return _strip_cid(self.headers.get("content-id"))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _decode_transfer(content: bytes, encoding: str) -> bytes:
    enc = encoding.strip().lower()
    if enc == "base64":
        try:
            return base64.b64decode(b"".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputError("INPUT.MIME", "a MIME part declared base64 is not valid base64") from None
    if enc == "quoted-printable":
        return quopri.decodestring(content)
    return content


def _segments(body: bytes, delim: bytes) -> Iterator[bytes]:
    """What lies between successive delimiters, lazily: a body made of nothing but delimiters must
    not become millions of objects before the part-count cap is reached."""
    start = body.find(delim)
    if start < 0:
        raise InputError("INPUT.MIME", "the multipart boundary does not occur in the body")
    pos = start + len(delim)
    while True:
        nxt = body.find(delim, pos)
        if nxt < 0:
            yield body[pos:]
            return
        yield body[pos:nxt]
        pos = nxt + len(delim)


def parse_multipart(body: bytes, content_type: str | None) -> tuple[MimePart, dict[str, MimePart], dict[str, str]]:
    """Split a ``multipart/related`` body: (root part, parts by Content-ID, content-type parameters).

    The root is the part named by the ``start`` parameter, else the first (RFC 2387).  Raises
    ``InputError`` (``INPUT.MIME``) on a missing boundary, no part, too many parts or oversized headers.
    """
    _media, params = content_type_parts(content_type)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise InputError("INPUT.MIME", "multipart body without a usable boundary parameter")
    delim = b"--" + boundary.encode("latin-1", "replace")
    parts: list[MimePart] = []
    closed = False
    for count, seg in enumerate(_segments(body, delim)):
        if seg.startswith(b"--"):
            closed = True
            break
        if count >= MAX_PARTS:
            raise InputError("INPUT.MIME", f"more than {MAX_PARTS} MIME parts")
        # Each part starts after the delimiter's line break and ends before the CRLF preceding the next.
        seg = seg[2:] if seg.startswith(b"\r\n") else seg[1:] if seg.startswith(b"\n") else seg
        if seg.endswith(b"\r\n"):
            seg = seg[:-2]
        elif seg.endswith(b"\n"):
            seg = seg[:-1]
        head, sep, content = seg.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = seg.partition(b"\n\n")
        if not sep:
            if seg.strip():
                raise InputError("INPUT.MIME", "a MIME part has no blank line after its headers")
            continue
        if len(head) > MAX_PART_HEADERS:
            raise InputError("INPUT.MIME", "MIME part headers too large")
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
        headers = {k.lower(): str(v).strip() for k, v in msg.items()}
        content = _decode_transfer(content, headers.get("content-transfer-encoding", ""))
        parts.append(MimePart(headers, content))
    if not parts:
        raise InputError("INPUT.MIME", "multipart body without any part")
    if not closed:
        # Lenient: a missing close delimiter is noted by the facts, not refused (truncation shows elsewhere).
        params = {**params, "_unclosed": "1"}
    by_cid = {p.content_id: p for p in parts if p.content_id}
    start = _strip_cid(params.get("start"))
    root = by_cid.get(start) if start else None
    return root or parts[0], by_cid, params


def build_multipart(
    root_xml: bytes, attachments: list[tuple[str, str, bytes]], *, soap_version: SoapVersion = "1.2"
) -> tuple[bytes, str]:
    """An MTOM/XOP package: (body, Content-Type).  ``attachments`` are (content id, media type, bytes)."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_cid = f"root.{uuid.uuid4().hex}@segur-bench"
    start_info = "application/soap+xml" if soap_version == "1.2" else "text/xml"
    out = [
        f"--{boundary}\r\n".encode(),
        f'Content-Type: application/xop+xml; charset=UTF-8; type="{start_info}"\r\n'.encode(),
        b"Content-Transfer-Encoding: binary\r\n",
        f"Content-ID: <{root_cid}>\r\n\r\n".encode(),
        root_xml,
        b"\r\n",
    ]
    for cid, media, data in attachments:
        out += [
            f"--{boundary}\r\n".encode(),
            f"Content-Type: {media}\r\n".encode(),
            b"Content-Transfer-Encoding: binary\r\n",
            f"Content-ID: <{cid}>\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    out.append(f"--{boundary}--\r\n".encode())
    ctype = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        f'start="<{root_cid}>"; start-info="{start_info}"'
    )
    return b"".join(out), ctype


# ------------------------------------------------------------------------------------------ SOAP
@dataclass
class SoapRequest:
    """What the double understood of one SOAP request; ``None`` fields were absent or unreadable."""

    soap_version: SoapVersion | None = None
    mtom: bool = False
    operation: Operation | None = None
    action: str | None = None
    message_id: str | None = None
    body_element: str | None = None
    security_xml: bytes | None = None
    metadata_xml: bytes | None = None
    metadata: etree._Element | None = None
    documents: dict[str, bytes] = field(default_factory=dict)
    document_errors: list[str] = field(default_factory=list)
    body_child: etree._Element | None = None
    envelope_xml: bytes | None = None  # the SOAP envelope (MTOM root part), attachments left out


def _xop_content(el: etree._Element, parts: Mapping[str, MimePart]) -> bytes:
    """Bytes of an XOP-optimised element (``xop:Include href="cid:…"``) or of its inline base64 text."""
    include = next((c for c in _children(el) if _local(c) == "Include"), None)
    if include is not None:
        href = (include.get("href") or "").strip()
        cid = urllib.parse.unquote(href[4:] if href.lower().startswith("cid:") else href)
        part = parts.get(cid) or parts.get(_strip_cid(cid))
        if part is None:
            raise InputError("INPUT.MIME", f"xop:Include {href!r} names no MIME part")
        return part.content
    text = "".join(t for t in el.itertext() if isinstance(t, str))
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("INPUT.BASE64", "Document content is neither an xop:Include nor valid base64") from None


def parse_soap(body: bytes, content_type: str | None) -> SoapRequest:
    """Read an XDS.b SOAP request (plain or MTOM), leniently: elements are found by local name.

    Raises ``InputError`` only when the MIME package or the envelope is not safe, readable XML.
    """
    media, _ = content_type_parts(content_type)
    parts: dict[str, MimePart] = {}
    req = SoapRequest()
    if media and media.startswith("multipart/"):
        root_part, parts, _params = parse_multipart(body, content_type)
        req.mtom = True
        xml = root_part.content
    else:
        xml = body
    root = parse_xml(xml, max_bytes=MAX_XML)
    req.envelope_xml = xml
    if _local(root) != "Envelope":
        raise InputError("INPUT.SOAP", f"not a SOAP envelope (root element {root.tag})")
    ns = etree.QName(root).namespace
    req.soap_version = "1.2" if ns == NS_SOAP12 else "1.1" if ns == NS_SOAP11 else None
    header = _child(root, "Header")
    req.action = _text(_child(header, "Action"))
    req.message_id = _text(_child(header, "MessageID"))
    security = _child(header, "Security")
    if security is not None:
        req.security_xml = etree.tostring(security)
    body_el = _child(root, "Body")
    op_el = next(iter(_children(body_el)), None)
    if op_el is None:
        return req
    req.body_child = op_el
    req.body_element = op_el.tag
    name = _local(op_el)
    if name == "ProvideAndRegisterDocumentSetRequest":
        req.operation = "iti-41"
        sor = _child(op_el, "SubmitObjectsRequest")
        if sor is not None:
            req.metadata = sor
            req.metadata_xml = etree.tostring(sor)
        for doc in _children(op_el):
            if _local(doc) != "Document":
                continue
            doc_id = doc.get("id") or f"#{len(req.documents) + 1}"
            try:
                req.documents[doc_id] = _xop_content(doc, parts)
            except InputError as exc:
                req.document_errors.append(f"{doc_id}: {exc.message}")
    elif name == "AdhocQueryRequest":
        req.operation = "iti-18"
    elif name == "RetrieveDocumentSetRequest":
        req.operation = "iti-43"
    return req


# ------------------------------------------------------------------------------------------ metadata
def _slot_values(el: etree._Element, name: str) -> list[str]:
    for slot in _children(el):
        if _local(slot) == "Slot" and slot.get("name") == name:
            return [v for v in (_text(x) for x in _iter_local(slot, "Value")) if v]
    return []


def _external_id(el: etree._Element, scheme: str) -> str | None:
    for ext in _children(el):
        if _local(ext) == "ExternalIdentifier" and ext.get("identificationScheme") == scheme:
            return (ext.get("value") or "").strip() or None
    return None


def read_submission(sor: etree._Element) -> dict[str, Any]:
    """Entries, submission set and associations of a SubmitObjectsRequest (nothing validated here)."""
    entries: list[dict[str, Any]] = []
    associations: list[dict[str, Any]] = []
    submission_set: dict[str, Any] | None = None
    for el in sor.iter():
        if not isinstance(el.tag, str):
            continue
        name = _local(el)
        if name == "ExtrinsicObject":
            entries.append(
                {
                    "id": el.get("id"),
                    "mime_type": el.get("mimeType"),
                    "unique_id": _external_id(el, SCHEME_DE_UNIQUE_ID),
                    "patient_id": _external_id(el, SCHEME_DE_PATIENT_ID),
                    "hash": next(iter(_slot_values(el, "hash")), None),
                    "size": next(iter(_slot_values(el, "size")), None),
                    "element": el,
                }
            )
        elif name == "RegistryPackage" and submission_set is None:
            submission_set = {
                "id": el.get("id"),
                "unique_id": _external_id(el, SCHEME_SS_UNIQUE_ID),
                "patient_id": _external_id(el, SCHEME_SS_PATIENT_ID),
            }
        elif name == "Association":
            associations.append(
                {
                    "type": el.get("associationType"),
                    "source": el.get("sourceObject"),
                    "target": el.get("targetObject"),
                }
            )
    return {"entries": entries, "submission_set": submission_set, "associations": associations}


def _is_rplc(assoc_type: str | None) -> bool:
    return bool(assoc_type) and (assoc_type == ASSOCIATION_RPLC or str(assoc_type).endswith(":RPLC"))


# ------------------------------------------------------------------------------------------ store
@dataclass
class StoredEntry:
    """One document entry as the DMP keeps it: metadata (XDS or FHIR), status and the document."""

    entry_uuid: str
    unique_id: str | None
    patient_id: str | None  # the CX patientId (XDS) or "system|value" (MHD)
    ins: str | None
    mime_type: str
    document: bytes
    status: str = STATUS_APPROVED
    extrinsic_xml: bytes | None = None
    docref: dict[str, Any] | None = None
    binary_id: str | None = None
    stored_at: float = field(default_factory=time.time)


class DmpStore:
    """Thread-safe, bounded in-memory registry + repository (oldest entries forgotten first)."""

    def __init__(self, *, max_entries: int = MAX_STORED_ENTRIES, max_bytes: int = MAX_STORED_BYTES) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, StoredEntry] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def add(self, entry: StoredEntry) -> None:
        with self._lock:
            old = self._entries.pop(entry.entry_uuid, None)
            if old is not None:
                self._bytes -= len(old.document)
            self._entries[entry.entry_uuid] = entry
            self._bytes += len(entry.document)
            while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.document)

    def get(self, entry_uuid: str) -> StoredEntry | None:
        with self._lock:
            return self._entries.get(entry_uuid)

    def by_unique_id(self, unique_id: str) -> StoredEntry | None:
        with self._lock:
            return next((e for e in reversed(self._entries.values()) if e.unique_id == unique_id), None)

    def by_binary(self, binary_id: str) -> StoredEntry | None:
        with self._lock:
            return next((e for e in self._entries.values() if e.binary_id == binary_id), None)

    def deprecate(self, entry_uuid: str) -> bool:
        with self._lock:
            entry = self._entries.get(entry_uuid)
            if entry is None:
                return False
            entry.status = STATUS_DEPRECATED
            return True

    def for_patient(self, ins: str | None, *, statuses: set[str] | None = None) -> list[StoredEntry]:
        with self._lock:
            return [
                e for e in self._entries.values() if ins and e.ins == ins and (statuses is None or e.status in statuses)
            ]


# ------------------------------------------------------------------------------------------ answers
def _envelope(body_xml: str, *, operation: str | None, relates_to: str | None, soap_version: SoapVersion) -> bytes:
    env = _ENV_NS[soap_version]
    action = RESPONSE_ACTIONS.get(operation or "", "urn:ihe:iti:2007:Response")
    relates = f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>" if relates_to else ""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{env}" xmlns:wsa="{NS_WSA}"><soap:Header>'
        f'<wsa:Action soap:mustUnderstand="true">{escape(action)}</wsa:Action>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>{relates}"
        f"</soap:Header><soap:Body>{body_xml}</soap:Body></soap:Envelope>"
    )
    return xml.encode("utf-8")


def _registry_errors(errors: list[tuple[str, str]]) -> str:
    if not errors:
        return ""
    items = "".join(
        f"<rs:RegistryError errorCode={quoteattr(code)} codeContext={quoteattr(text)}"
        f' severity="{ERROR_SEVERITY}" location="segur-bench DMP double"/>'
        for code, text in errors
    )
    return f"<rs:RegistryErrorList>{items}</rs:RegistryErrorList>"


def build_registry_response(
    errors: list[tuple[str, str]] | None = None, *, relates_to: str | None = None, soap_version: SoapVersion = "1.2"
) -> bytes:
    """ITI-41 answer: ``rs:RegistryResponse`` Success, or Failure with a RegistryErrorList."""
    status = RESPONSE_FAILURE if errors else RESPONSE_SUCCESS
    body = (
        f'<rs:RegistryResponse xmlns:rs="{NS_RS}" status="{status}">'
        f"{_registry_errors(errors or [])}</rs:RegistryResponse>"
    )
    return _envelope(body, operation="iti-41", relates_to=relates_to, soap_version=soap_version)


def build_fault(code: str, text: str, *, soap_version: SoapVersion = "1.2", receiver: bool = False) -> bytes:
    """A SOAP fault whose subcode is the bench's rule id, so the vendor sees which rule it broke."""
    who = "Receiver" if receiver else "Sender"
    if soap_version == "1.1":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<soap:Envelope xmlns:soap="{NS_SOAP11}"><soap:Body><soap:Fault>'
            f"<faultcode>soap:{'Server' if receiver else 'Client'}</faultcode>"
            f"<faultstring>{escape(text)}</faultstring><detail>{escape(code)}</detail>"
            "</soap:Fault></soap:Body></soap:Envelope>"
        )
    else:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<soap:Envelope xmlns:soap="{NS_SOAP12}"><soap:Body><soap:Fault>'
            f"<soap:Code><soap:Value>soap:{who}</soap:Value>"
            f"<soap:Subcode><soap:Value>{escape(code)}</soap:Value></soap:Subcode></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="fr">{escape(text)}</soap:Text></soap:Reason>'
            "</soap:Fault></soap:Body></soap:Envelope>"
        )
    return xml.encode("utf-8")


def _query_params(op_el: etree._Element) -> tuple[str | None, str | None, dict[str, list[str]]]:
    """(stored query id, returnType, slot name → values with ebXML quoting and list brackets removed)."""
    response_option = _child(op_el, "ResponseOption")
    return_type = response_option.get("returnType") if response_option is not None else None
    query = _child(op_el, "AdhocQuery")
    slots: dict[str, list[str]] = {}
    if query is None:
        return None, return_type, slots
    for slot in _children(query):
        if _local(slot) != "Slot":
            continue
        values: list[str] = []
        for raw in (_text(v) for v in _iter_local(slot, "Value")):
            if not raw:
                continue
            raw = raw.strip()
            if raw.startswith("(") and raw.endswith(")"):
                raw = raw[1:-1]
            for item in raw.split(","):
                item = item.strip().strip("'").strip()
                if item:
                    values.append(item)
        slots[slot.get("name") or ""] = values
    return query.get("id"), return_type, slots


def _entry_element(entry: StoredEntry) -> etree._Element | None:
    """The stored ExtrinsicObject as a registry returns it: its id, status and repository slots."""
    if entry.extrinsic_xml is None:
        return None
    el = parse_xml(entry.extrinsic_xml, max_bytes=MAX_XML)
    el.set("id", entry.entry_uuid)
    el.set("status", entry.status)
    el.set("lid", el.get("lid") or entry.entry_uuid)
    present = {s.get("name") for s in _children(el) if _local(s) == "Slot"}
    extra = {"repositoryUniqueId": REPOSITORY_UNIQUE_ID}
    if "hash" not in present:
        extra["hash"] = hashlib.sha1(entry.document, usedforsecurity=False).hexdigest()
    if "size" not in present:
        extra["size"] = str(len(entry.document))
    for name, value in extra.items():
        if name in present and name != "repositoryUniqueId":
            continue
        for old in [s for s in _children(el) if _local(s) == "Slot" and s.get("name") == name]:
            el.remove(old)
        slot = etree.Element(f"{{{NS_RIM}}}Slot", name=name)
        vl = etree.SubElement(slot, f"{{{NS_RIM}}}ValueList")
        etree.SubElement(vl, f"{{{NS_RIM}}}Value").text = value
        # Slots come first in an ebRIM RegistryObject.
        el.insert(0, slot)
    return el


def build_query_response(
    entries: list[StoredEntry],
    *,
    return_type: str | None,
    relates_to: str | None,
    soap_version: SoapVersion,
    errors: list[tuple[str, str]] | None = None,
) -> bytes:
    """ITI-18 answer: ``query:AdhocQueryResponse`` with LeafClass ExtrinsicObjects or ObjectRefs."""
    objects: list[str] = []
    for entry in entries:
        if (return_type or "LeafClass") == "ObjectRef":
            objects.append(f"<rim:ObjectRef id={quoteattr(entry.entry_uuid)}/>")
            continue
        el = _entry_element(entry)
        if el is not None:
            objects.append(etree.tostring(el).decode("utf-8"))
    status = RESPONSE_FAILURE if errors else RESPONSE_SUCCESS
    body = (
        f'<query:AdhocQueryResponse xmlns:query="{NS_QUERY}" xmlns:rim="{NS_RIM}" xmlns:rs="{NS_RS}"'
        f' status="{status}">{_registry_errors(errors or [])}'
        f"<rim:RegistryObjectList>{''.join(objects)}</rim:RegistryObjectList></query:AdhocQueryResponse>"
    )
    return _envelope(body, operation="iti-18", relates_to=relates_to, soap_version=soap_version)


def build_retrieve_response(
    found: list[StoredEntry], missing: list[str], *, relates_to: str | None, soap_version: SoapVersion
) -> tuple[bytes, str]:
    """ITI-43 answer as MTOM: one DocumentResponse per found document, errors for the others."""
    attachments: list[tuple[str, str, bytes]] = []
    responses: list[str] = []
    for entry in found:
        cid = f"doc{len(attachments) + 1}.{uuid.uuid4().hex[:8]}@segur-bench"
        attachments.append((cid, entry.mime_type, entry.document))
        responses.append(
            "<xdsb:DocumentResponse>"
            f"<xdsb:RepositoryUniqueId>{REPOSITORY_UNIQUE_ID}</xdsb:RepositoryUniqueId>"
            f"<xdsb:DocumentUniqueId>{escape(entry.unique_id or '')}</xdsb:DocumentUniqueId>"
            f"<xdsb:mimeType>{escape(entry.mime_type)}</xdsb:mimeType>"
            f'<xdsb:Document><xop:Include xmlns:xop="{NS_XOP}" href="cid:{urllib.parse.quote(cid)}"/></xdsb:Document>'
            "</xdsb:DocumentResponse>"
        )
    errors = [("XDSDocumentUniqueIdError", f"document {uid} is unknown") for uid in missing]
    if errors and found:
        status = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
    else:
        status = RESPONSE_FAILURE if errors else RESPONSE_SUCCESS
    body = (
        f'<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="{NS_XDSB}" xmlns:rs="{NS_RS}">'
        f'<rs:RegistryResponse status="{status}">{_registry_errors(errors)}</rs:RegistryResponse>'
        f"{''.join(responses)}</xdsb:RetrieveDocumentSetResponse>"
    )
    envelope = _envelope(body, operation="iti-43", relates_to=relates_to, soap_version=soap_version)
    return build_multipart(envelope, attachments, soap_version=soap_version)


# ------------------------------------------------------------------------------------------ handlers
_Answer = tuple[int, bytes, str, dict[str, Any]]  # status, body, content type, facts


def _base_facts() -> dict[str, Any]:
    return {
        "operation": None,
        "soap_version": None,
        "mtom": False,
        "action": None,
        "message_id": None,
        "metadata_xml": None,
        "documents": {},
        "security_xml": None,
        "envelope_xml": None,
        "patient_ins": None,
        "patient_id": None,
        "entry_uuids": [],
        "unique_ids": [],
        "associations": [],
        "submission_set": None,
        "bundle": None,
        "query": None,
        "error": None,
    }


def _error_facts(rule: str, message: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    return (facts or _base_facts()) | {"error": {"rule": rule, "message": message}}


def _soap_facts(req: SoapRequest) -> dict[str, Any]:
    return _base_facts() | {
        "operation": req.operation,
        "soap_version": req.soap_version,
        "mtom": req.mtom,
        "action": req.action,
        "message_id": req.message_id,
        "security_xml": req.security_xml,
        "envelope_xml": req.envelope_xml,
        "metadata_xml": req.metadata_xml,
        "documents": dict(req.documents),
    }


def _handle_iti41(req: SoapRequest, store: DmpStore, facts: dict[str, Any], version: SoapVersion) -> _Answer:
    errors: list[tuple[str, str]] = [("XDSMissingDocument", e) for e in req.document_errors]
    if req.metadata is None:
        errors.append(("XDSRegistryMetadataError", "no lcm:SubmitObjectsRequest in the request"))
        facts["error"] = {"rule": "INPUT.XDS", "message": errors[-1][1]}
        return (
            200,
            build_registry_response(errors, relates_to=req.message_id, soap_version=version),
            _SOAP_CT[version],
            facts,
        )
    sub = read_submission(req.metadata)
    facts["associations"] = sub["associations"]
    facts["submission_set"] = sub["submission_set"]
    facts["entry_uuids"] = [e["id"] for e in sub["entries"] if e["id"]]
    facts["unique_ids"] = [e["unique_id"] for e in sub["entries"] if e["unique_id"]]
    patient_cx = next((e["patient_id"] for e in sub["entries"] if e["patient_id"]), None)
    if patient_cx is None and sub["submission_set"]:
        patient_cx = sub["submission_set"].get("patient_id")
    facts["patient_id"] = patient_cx
    facts["patient_ins"] = split_cx(patient_cx)[0]
    if not sub["entries"]:
        errors.append(("XDSRegistryMetadataError", "no ExtrinsicObject (DocumentEntry) in the submission"))
    # Symbolic ids (not urn:uuid) are given UUIDs by the registry, and references follow them.
    assigned: dict[str, str] = {}
    for e in sub["entries"]:
        eid = e["id"] or ""
        if not eid.startswith("urn:uuid:"):
            assigned[eid] = f"urn:uuid:{uuid.uuid4()}"
    stored: list[StoredEntry] = []
    for e in sub["entries"]:
        doc_id = e["id"] or ""
        document = req.documents.get(doc_id)
        if document is None:
            errors.append(("XDSMissingDocument", f"no Document element for DocumentEntry {doc_id}"))
            continue
        cx = e["patient_id"] or patient_cx
        stored.append(
            StoredEntry(
                entry_uuid=assigned.get(doc_id, doc_id),
                unique_id=e["unique_id"],
                patient_id=cx,
                ins=split_cx(cx)[0],
                mime_type=e["mime_type"] or "application/octet-stream",
                document=document,
                extrinsic_xml=etree.tostring(copy.deepcopy(e["element"])),
            )
        )
    for doc_id in req.documents:
        if doc_id not in {e["id"] for e in sub["entries"]}:
            errors.append(("XDSMissingDocumentMetadata", f"Document {doc_id} has no DocumentEntry"))
    unknown_targets: list[str] = []
    for assoc in sub["associations"]:
        if _is_rplc(assoc["type"]):
            target = assigned.get(assoc["target"] or "", assoc["target"] or "")
            if store.get(target) is None:
                unknown_targets.append(target)
    for entry in stored:
        store.add(entry)
    # Deprecate after storing, so a replace of an entry in the same submission still resolves.
    for assoc in sub["associations"]:
        if _is_rplc(assoc["type"]):
            target = assigned.get(assoc["target"] or "", assoc["target"] or "")
            store.deprecate(target)
    facts["stored"] = [e.entry_uuid for e in stored]
    if unknown_targets:
        facts["error"] = {"rule": "INPUT.XDS", "message": f"RPLC of unknown entries {unknown_targets}"}
    # Lenient: what could be stored is stored and answered Success; only an empty result is a Failure.
    answer_errors = errors if not stored else []
    if errors and facts["error"] is None:
        facts["error"] = {"rule": "INPUT.XDS", "message": "; ".join(t for _, t in errors)}
    body = build_registry_response(answer_errors, relates_to=req.message_id, soap_version=version)
    return 200, body, _SOAP_CT[version], facts


def _handle_iti18(req: SoapRequest, store: DmpStore, facts: dict[str, Any], version: SoapVersion) -> _Answer:
    assert req.body_child is not None
    query_id, return_type, slots = _query_params(req.body_child)
    facts["query"] = {"id": query_id, "return_type": return_type, "slots": slots}
    entries: list[StoredEntry] = []
    errors: list[tuple[str, str]] = []
    if query_id == QUERY_FIND_DOCUMENTS:
        cx = next(iter(slots.get("$XDSDocumentEntryPatientId", [])), None)
        facts["patient_id"] = cx
        facts["patient_ins"] = split_cx(cx)[0]
        statuses = set(slots.get("$XDSDocumentEntryStatus", [])) or {STATUS_APPROVED}
        entries = store.for_patient(split_cx(cx)[0], statuses=statuses)
    elif query_id == QUERY_GET_DOCUMENTS:
        for uid in slots.get("$XDSDocumentEntryEntryUUID", []):
            if (e := store.get(uid)) is not None:
                entries.append(e)
        for uid in slots.get("$XDSDocumentEntryUniqueId", []):
            if (e := store.by_unique_id(uid)) is not None:
                entries.append(e)
        facts["patient_ins"] = next((e.ins for e in entries if e.ins), None)
    else:
        errors.append(("XDSUnknownStoredQuery", f"stored query {query_id!r} is not supported by the double"))
        facts["error"] = {"rule": "INPUT.XDS", "message": errors[-1][1]}
    facts["entry_uuids"] = [e.entry_uuid for e in entries]
    facts["unique_ids"] = [e.unique_id for e in entries if e.unique_id]
    body = build_query_response(
        entries, return_type=return_type, relates_to=req.message_id, soap_version=version, errors=errors
    )
    return 200, body, _SOAP_CT[version], facts


def _handle_iti43(req: SoapRequest, store: DmpStore, facts: dict[str, Any], version: SoapVersion) -> _Answer:
    assert req.body_child is not None
    found: list[StoredEntry] = []
    missing: list[str] = []
    unknown_repos: list[str] = []
    for dr in _children(req.body_child):
        if _local(dr) != "DocumentRequest":
            continue
        uid = _text(_child(dr, "DocumentUniqueId"))
        repo = _text(_child(dr, "RepositoryUniqueId"))
        if repo != REPOSITORY_UNIQUE_ID:
            unknown_repos.append(repo or "")
        entry = store.by_unique_id(uid) if uid else None
        if entry is None:
            missing.append(uid or "")
        else:
            found.append(entry)
    facts["unique_ids"] = [e.unique_id for e in found if e.unique_id] + [m for m in missing if m]
    facts["entry_uuids"] = [e.entry_uuid for e in found]
    facts["patient_ins"] = next((e.ins for e in found if e.ins), None)
    facts["retrieved"] = [e.unique_id for e in found]
    facts["missing_documents"] = missing
    # Lenient: the document is answered whatever repository was named; the check judges the request.
    facts["unknown_repositories"] = unknown_repos
    if missing:
        facts["error"] = {"rule": "INPUT.XDS", "message": f"unknown documents {missing}"}
    body, ctype = build_retrieve_response(found, missing, relates_to=req.message_id, soap_version=version)
    return 200, body, ctype, facts


def handle_soap(body: bytes, headers: Mapping[str, str], store: DmpStore) -> _Answer:
    """Answer one POSTed SOAP body. Never raises on any input (hostile bytes become a fault)."""
    low = {k.lower(): v for k, v in headers.items()}
    try:
        req = parse_soap(body, low.get("content-type"))
    except InputError as exc:
        fault = build_fault(exc.rule, f"Requête illisible : {exc.message}")
        return 400, fault, _SOAP_CT["1.2"], _error_facts(exc.rule, exc.message)
    facts = _soap_facts(req)
    version: SoapVersion = req.soap_version or "1.2"
    if req.operation == "iti-41":
        return _handle_iti41(req, store, facts, version)
    if req.operation == "iti-18":
        return _handle_iti18(req, store, facts, version)
    if req.operation == "iti-43":
        return _handle_iti43(req, store, facts, version)
    message = "Aucune transaction XDS.b reconnue (ITI-41, ITI-18 ou ITI-43) dans le corps SOAP."
    return (
        400,
        build_fault("INPUT.SOAP", message, soap_version=version),
        _SOAP_CT[version],
        _error_facts("INPUT.SOAP", message, facts),
    )


# ------------------------------------------------------------------------------------------ MHD
def _outcome(code: str, message: str) -> bytes:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}],
        },
        ensure_ascii=False,
    ).encode("utf-8")


def _subject_ins(docref: Mapping[str, Any], resources: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(INS value, system) of a DocumentReference's subject: logical identifier or a Patient in the Bundle."""
    subject = docref.get("subject")
    if not isinstance(subject, dict):
        return None, None
    ident = subject.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        return ident["value"], ident.get("system") if isinstance(ident.get("system"), str) else None
    ref = subject.get("reference")
    patient = resources.get(ref) if isinstance(ref, str) else None
    if isinstance(patient, dict):
        for pid in patient.get("identifier") or []:
            if isinstance(pid, dict) and str(pid.get("system", "")).startswith("urn:oid:1.2.250.1.213.1.4."):
                return pid.get("value"), pid.get("system")
    return None, None


def _entry_uuid_of(docref: Mapping[str, Any]) -> str | None:
    """The entryUUID a DocumentReference carries (an ``identifier`` whose value is a ``urn:uuid:``)."""
    for ident in docref.get("identifier") or []:
        value = str(ident.get("value", "")) if isinstance(ident, dict) else ""
        if value.lower().startswith("urn:uuid:") and _UUID_RE.fullmatch(value[9:]):
            return value
    return None


def handle_mhd_post(body: bytes, store: DmpStore) -> _Answer:
    """ITI-65: store the DocumentReferences of a transaction Bundle with their Binary (or inline data)."""
    facts = _base_facts() | {"operation": "iti-65"}
    try:
        bundle = parse_json(body, max_bytes=MAX_XML * 2)
    except InputError as exc:
        return 400, _outcome("invalid", exc.message), FHIR_JSON, _error_facts(exc.rule, exc.message, facts)
    facts["bundle"] = bundle
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or not isinstance(bundle.get("entry"), list)
    ):
        message = "ITI-65 expects a Bundle of type transaction with entries"
        return 400, _outcome("invalid", message), FHIR_JSON, _error_facts("INPUT.FHIR", message, facts)
    by_url: dict[str, Any] = {}
    for entry in bundle["entry"]:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            if isinstance(entry.get("fullUrl"), str):
                by_url[entry["fullUrl"]] = entry["resource"]
            res = entry["resource"]
            if isinstance(res.get("id"), str) and isinstance(res.get("resourceType"), str):
                by_url.setdefault(f"{res['resourceType']}/{res['id']}", res)
    documents: dict[str, bytes] = {}
    responses: list[dict[str, Any]] = []
    problems: list[str] = []
    for entry in bundle["entry"]:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            problems.append("an entry without a resource")
            continue
        rtype = res.get("resourceType")
        # An XDS-backed DMP names a DocumentReference after its entryUUID (``identifier`` urn:uuid):
        # ``relatesTo`` to ``DocumentReference/<id>`` and an RPLC to the entryUUID then name the same entry.
        given = _entry_uuid_of(res) if rtype == "DocumentReference" else None
        new_id = given.removeprefix("urn:uuid:").lower() if given else str(uuid.uuid4())
        responses.append({"response": {"status": "201 Created", "location": f"{rtype}/{new_id}/_history/1"}})
        if rtype != "DocumentReference":
            continue
        content = res.get("content") if isinstance(res.get("content"), list) else []
        attachment = content[0].get("attachment") if content and isinstance(content[0], dict) else None
        data: bytes | None = None
        mime = "application/octet-stream"
        binary_id = str(uuid.uuid4())
        if isinstance(attachment, dict):
            mime = str(attachment.get("contentType") or mime)
            source: Any = attachment
            url = attachment.get("url")
            if isinstance(url, str) and isinstance(by_url.get(url), dict):
                source = by_url[url]
                mime = str(source.get("contentType") or mime)
            raw = source.get("data")
            if isinstance(raw, str):
                try:
                    data = base64.b64decode("".join(raw.split()), validate=True)
                except (binascii.Error, ValueError):
                    problems.append("attachment data is not valid base64")
            if isinstance(url, str):
                documents[url] = data or b""
        if data is None:
            problems.append("a DocumentReference without document content")
            continue
        ins, system = _subject_ins(res, by_url)
        master = res.get("masterIdentifier")
        unique_id = master.get("value") if isinstance(master, dict) else None
        entry_uuid = given or f"urn:uuid:{new_id}"
        stored_ref = copy.deepcopy(res)
        stored_ref["id"] = new_id
        stored_ref["status"] = "current"
        if isinstance(attachment, dict):
            stored_ref["content"][0]["attachment"] = {k: v for k, v in attachment.items() if k != "data"} | {
                "url": f"Binary/{binary_id}"
            }
        store.add(
            StoredEntry(
                entry_uuid=entry_uuid,
                unique_id=str(unique_id) if unique_id else None,
                patient_id=f"{system}|{ins}" if ins else None,
                ins=ins,
                mime_type=mime,
                document=data,
                docref=stored_ref,
                binary_id=binary_id,
            )
        )
        facts["entry_uuids"].append(entry_uuid)
        if unique_id:
            facts["unique_ids"].append(str(unique_id))
        facts["patient_ins"] = facts["patient_ins"] or ins
        for rel in res.get("relatesTo") or []:
            target = rel.get("target") if isinstance(rel, dict) else None
            ref = target.get("reference") if isinstance(target, dict) else None
            if isinstance(rel, dict) and rel.get("code") == "replaces" and isinstance(ref, str):
                old_id = ref.rsplit("/", 1)[-1]
                for e in store.for_patient(ins):
                    if e.docref and e.docref.get("id") == old_id:
                        e.status = STATUS_DEPRECATED
                        e.docref["status"] = "superseded"
                facts["associations"].append({"type": "replaces", "source": entry_uuid, "target": ref})
    facts["documents"] = documents
    if problems:
        facts["error"] = {"rule": "INPUT.FHIR", "message": "; ".join(problems)}
    answer = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response", "entry": responses}
    return 200, json.dumps(answer).encode("utf-8"), FHIR_JSON, facts


def _searchset(resources: list[dict[str, Any]], base: str) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
            "type": "searchset",
            "total": len(resources),
            "entry": [
                {"fullUrl": f"{base}/fhir/DocumentReference/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in resources
            ],
        },
        ensure_ascii=False,
    ).encode("utf-8")


def handle_mhd_get(path: str, query: list[tuple[str, str]], accept: str, store: DmpStore, base: str) -> _Answer:
    """ITI-67 DocumentReference search by patient identifier, ITI-68 Binary read."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[1] == "DocumentReference":
        facts = _base_facts() | {"operation": "iti-67", "query": dict(query)}
        ident = next((v for k, v in query if k in ("patient.identifier", "patient:identifier")), None)
        if ident is None:
            message = "ITI-67 needs patient.identifier=system|value"
            return 400, _outcome("required", message), FHIR_JSON, _error_facts("INPUT.FHIR", message, facts)
        ins = ident.split("|", 1)[-1]
        wanted = {s.strip() for v in (v for k, v in query if k == "status") for s in v.split(",")}
        found = []
        for e in store.for_patient(ins):
            if e.docref is None:
                continue
            if wanted and e.docref.get("status") not in wanted:
                continue
            found.append(e.docref)
        facts["patient_ins"] = ins
        facts["entry_uuids"] = [str(r.get("id")) for r in found]
        return 200, _searchset(found, base), FHIR_JSON, facts
    if len(parts) == 3 and parts[1] == "Binary":
        facts = _base_facts() | {"operation": "iti-68"}
        entry = store.by_binary(parts[2])
        if entry is None:
            return (
                404,
                _outcome("not-found", "Binary not found"),
                FHIR_JSON,
                _error_facts("INPUT.FHIR", "unknown Binary", facts),
            )
        facts["patient_ins"] = entry.ins
        facts["unique_ids"] = [entry.unique_id] if entry.unique_id else []
        if "fhir+json" in accept or "application/json" in accept:
            binary = {
                "resourceType": "Binary",
                "id": parts[2],
                "contentType": entry.mime_type,
                "data": base64.b64encode(entry.document).decode("ascii"),
            }
            return 200, json.dumps(binary).encode("utf-8"), FHIR_JSON, facts
        return 200, entry.document, entry.mime_type, facts
    message = f"MHD double: no route for {path}"
    return 404, _outcome("not-supported", message), FHIR_JSON, _error_facts("HTTP.ROUTE", message)


# ------------------------------------------------------------------------------------------ HTTP app
def create_dmp_app(traffic: TrafficLog, *, store: DmpStore | None = None, max_body: int = MAX_BODY) -> Starlette:
    """ASGI app of the DMP double.

    ``POST`` anywhere outside ``/fhir`` is an XDS.b SOAP request (the bench gives ``…/dmp``);
    ``POST /fhir`` is ITI-65, ``GET /fhir/DocumentReference`` ITI-67, ``GET /fhir/Binary/{id}`` ITI-68.
    Every request is recorded in ``traffic`` as ``service="dmp"`` with the answer given and its facts
    (see the module docstring), ``action_id`` being the ``X-Segur-Bench-Action`` header.
    """
    registry = store or DmpStore()

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        received_at = time.time()
        headers = dict(request.headers)
        path = request.url.path
        is_fhir = path == "/fhir" or path.startswith("/fhir/")
        body = b""
        extra: dict[str, str] = {}
        status: int
        content: bytes
        ctype: str
        facts: dict[str, Any]
        if request.method == "POST":
            body, too_large, disconnected = await read_body(request, max_body, _DRAIN_LIMIT)
            if disconnected:
                status, content, ctype = 400, b"", "text/plain; charset=utf-8"
                facts = _error_facts("INPUT.TRUNCATED", "the client went away before the end of the body")
            elif too_large:
                message = f"Requête de plus de {max_body} octets refusée."
                if is_fhir:
                    status, content, ctype = 413, _outcome("too-costly", message), FHIR_JSON
                else:
                    status, content, ctype = 413, build_fault("INPUT.TOO-LARGE", message), _SOAP_CT["1.2"]
                facts = _error_facts("INPUT.TOO-LARGE", message)
            else:
                status, content, ctype, facts = _safely(
                    (lambda: handle_mhd_post(body, registry))
                    if is_fhir
                    else (lambda: handle_soap(body, headers, registry)),
                    fhir=is_fhir,
                )
        elif request.method in ("GET", "HEAD") and is_fhir:
            query = list(request.query_params.multi_items())
            accept = request.headers.get("accept", "")
            base = str(request.base_url).rstrip("/")
            status, content, ctype, facts = _safely(
                lambda: handle_mhd_get(path, query, accept, registry, base), fhir=True
            )
        else:
            message = f"DMP double: {request.method} {path} is not supported (POST SOAP, or the /fhir MHD endpoints).\n"
            status, content, ctype = 405, message.encode(), "text/plain; charset=utf-8"
            facts = _error_facts("HTTP.METHOD", message.strip())
            extra["Allow"] = "GET, POST" if is_fhir else "POST"
        facts["action_id"] = request.headers.get(ACTION_ID_HEADER)
        response_headers = {"Content-Type": ctype, **extra}
        traffic.add(
            Received(
                service="dmp",
                method=request.method,
                path=path,
                headers=headers,
                body=body,
                received_at=received_at,
                client=f"{request.client.host}:{request.client.port}" if request.client else None,
                query=request.url.query,
                response_status=status,
                response_headers=dict(response_headers),
                response_body=content,
                duration_ms=(time.monotonic() - started) * 1000,
                facts=facts,
            )
        )
        return Response(content if request.method != "HEAD" else b"", status_code=status, headers=response_headers)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
    app.state.store = registry
    return app


def _safely(handler: Callable[[], _Answer], *, fhir: bool) -> _Answer:
    """A bug in the double must neither kill the server nor lose the record, nor show a traceback."""
    try:
        return handler()
    except InputError as exc:
        if fhir:
            return 400, _outcome("invalid", exc.message), FHIR_JSON, _error_facts(exc.rule, exc.message)
        return 400, build_fault(exc.rule, exc.message), _SOAP_CT["1.2"], _error_facts(exc.rule, exc.message)
    except Exception as exc:
        message = f"Erreur interne du simulateur DMP : {type(exc).__name__}"
        if fhir:
            return 500, _outcome("exception", message), FHIR_JSON, _error_facts("SIMULATOR", message)
        return (
            500,
            build_fault("SIMULATOR", message, receiver=True),
            _SOAP_CT["1.2"],
            _error_facts("SIMULATOR", message),
        )


__all__ = [
    "ACTION_ITI18",
    "ACTION_ITI41",
    "ACTION_ITI43",
    "ASSOCIATION_RPLC",
    "QUERY_FIND_DOCUMENTS",
    "QUERY_GET_DOCUMENTS",
    "REPOSITORY_UNIQUE_ID",
    "DmpStore",
    "build_multipart",
    "create_dmp_app",
    "handle_soap",
    "parse_multipart",
    "parse_soap",
    "read_submission",
    "split_cx",
]
