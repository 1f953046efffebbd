"""DMP transport rules: how an XDS.b request reached the bench's DMP double (SOAP 1.2, MTOM, query, retrieve).

The VIHF token, the metadata and the CDA document have checks of their own (``vihf.token``,
``xds.metadata``/``xds.cda``, ``cda.header``); what is left is the envelope of each transaction, which
only the receiving side sees.  The artefact is what the DMP double understood of one request (its
``facts``: operation, SOAP version, MTOM, WS-Addressing action, stored-query slots, repositories
asked for), so the check stays pure: the double reads the bytes, the check judges the facts.

Facts (IHE ITI TF-2b 3.41/3.18/3.43, ITI TF-2x V.3): XDS.b transactions use SOAP 1.2 with
WS-Addressing; ITI-41 carries its documents with MTOM/XOP; a FindDocuments query names the patient by
its CX patientId — for the DMP, the INS — and asks for a status; ITI-43 names the repository the
registry gave for each document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from conformance.checks.registry import check
from conformance.model import Finding

ACTIONS = {
    "iti-41": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
    "iti-18": "urn:ihe:iti:2007:RegistryStoredQuery",
    "iti-43": "urn:ihe:iti:2007:RetrieveDocumentSet",
}
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"

RULES: dict[str, str] = {
    "DMP.TRANSACTION": "La transaction attendue (ITI-41, ITI-18 ou ITI-43) est reçue et lisible",
    "DMP.SOAP.VERSION": "Enveloppe SOAP 1.2 (http://www.w3.org/2003/05/soap-envelope)",
    "DMP.SOAP.ACTION": "En-tête WS-Addressing wsa:Action égal à l'action de la transaction",
    "DMP.SOAP.MTOM": "ITI-41 transmis en MTOM/XOP (multipart/related, racine application/xop+xml)",
    "DMP.QUERY.PATIENT": "Requête FindDocuments : $XDSDocumentEntryPatientId = INS du patient (CX)",
    "DMP.QUERY.STORED-QUERY": "Requête stockée connue (FindDocuments / GetDocuments), statut demandé",
    "DMP.RETRIEVE.REPOSITORY": "ITI-43 : RepositoryUniqueId = celui que le registre a donné pour le document",
    "DMP.RETRIEVE.DOCUMENT": "ITI-43 : chaque DocumentUniqueId demandé est un document du DMP",
}


def _facts(artefact: Any) -> Mapping[str, Any]:
    facts = getattr(artefact, "facts", artefact)
    return facts if isinstance(facts, Mapping) else {}


def _cx_id(value: str | None) -> str:
    return (value or "").strip().strip("'").split("^", 1)[0]


@check("dmp.transaction", kind="dmp-request", service="DMP", rules=RULES)
def dmp_transaction(
    artefact: Any, *, operation: str | None = None, expected_ins: str | None = None
) -> Iterator[Finding]:
    """One request received by the DMP double: transaction, SOAP 1.2 + WS-Addressing, MTOM, query, retrieve.

    ``artefact`` is the double's ``Received`` (or its ``facts`` mapping); ``operation`` the expected
    transaction (``iti-41``…); ``expected_ins`` the patient's INS (matricule or CX) a query must name.
    """
    facts = _facts(artefact)
    op = facts.get("operation")
    error = facts.get("error") if isinstance(facts.get("error"), Mapping) else None
    if op is None:
        why = error.get("message") if error else "no XDS.b transaction recognised"
        rule = (
            str(error.get("rule")) if error and str(error.get("rule", "")).startswith("INPUT.") else "DMP.TRANSACTION"
        )
        yield Finding(rule, "error", f"request not understood as an XDS.b transaction: {why}", "/")
        return
    if operation and op != operation:
        yield Finding("DMP.TRANSACTION", "error", f"expected {operation}, received {op}", "/")
        return
    if op not in ACTIONS:
        # MHD: no SOAP envelope to judge, but an unreadable request is still the vendor's.
        if error and str(error.get("rule", "")).startswith("INPUT."):
            yield Finding(str(error["rule"]), "error", str(error.get("message", "unreadable request")), "/")
        return
    if facts.get("soap_version") != "1.2":
        got = facts.get("soap_version") or "an unknown envelope namespace"
        yield Finding("DMP.SOAP.VERSION", "error", f"XDS.b requires SOAP 1.2, received SOAP {got}", "/Envelope")
    action = facts.get("action")
    if action != ACTIONS[op]:
        shown = repr(action) if action else "no wsa:Action header"
        yield Finding(
            "DMP.SOAP.ACTION", "error", f"wsa:Action must be {ACTIONS[op]}, got {shown}", "/Envelope/Header/Action"
        )
    if op == "iti-41" and not facts.get("mtom"):
        yield Finding("DMP.SOAP.MTOM", "error", "ITI-41 must be sent as MTOM/XOP (multipart/related)", "Content-Type")
    if op == "iti-18":
        yield from _query(facts, expected_ins)
    if op == "iti-43":
        unknown_repos = facts.get("unknown_repositories") or []
        if unknown_repos:
            yield Finding(
                "DMP.RETRIEVE.REPOSITORY",
                "error",
                f"RepositoryUniqueId {', '.join(map(str, unknown_repos))} is not the repository the registry gave",
                "//xdsb:DocumentRequest/xdsb:RepositoryUniqueId",
            )
        missing = facts.get("missing_documents") or []
        if missing:
            yield Finding(
                "DMP.RETRIEVE.DOCUMENT",
                "error",
                f"DocumentUniqueId {', '.join(map(str, missing))} is not a document of the DMP",
                "//xdsb:DocumentRequest/xdsb:DocumentUniqueId",
            )
        if not facts.get("retrieved") and not missing:
            yield Finding(
                "DMP.RETRIEVE.DOCUMENT", "error", "ITI-43 without any DocumentRequest", "//xdsb:DocumentRequest"
            )


def _query(facts: Mapping[str, Any], expected_ins: str | None) -> Iterator[Finding]:
    query = facts.get("query") if isinstance(facts.get("query"), Mapping) else {}
    qid = (query or {}).get("id")
    slots = (query or {}).get("slots") or {}
    if qid not in (FIND_DOCUMENTS, GET_DOCUMENTS):
        yield Finding("DMP.QUERY.STORED-QUERY", "error", f"unknown stored query {qid!r}", "//rim:AdhocQuery/@id")
        return
    if qid != FIND_DOCUMENTS:
        return
    if not slots.get("$XDSDocumentEntryStatus"):
        yield Finding(
            "DMP.QUERY.STORED-QUERY",
            "error",
            "FindDocuments without $XDSDocumentEntryStatus (required by ITI-18)",
            "//rim:AdhocQuery/rim:Slot",
        )
    values = slots.get("$XDSDocumentEntryPatientId") or []
    if len(values) != 1:
        yield Finding(
            "DMP.QUERY.PATIENT",
            "error",
            "FindDocuments must name exactly one $XDSDocumentEntryPatientId",
            "//rim:Slot[@name='$XDSDocumentEntryPatientId']",
        )
        return
    if expected_ins and _cx_id(values[0]) != _cx_id(expected_ins):
        yield Finding(
            "DMP.QUERY.PATIENT",
            "error",
            f"$XDSDocumentEntryPatientId {values[0]!r} is not the patient's INS {_cx_id(expected_ins)}",
            "//rim:Slot[@name='$XDSDocumentEntryPatientId']",
        )


__all__ = ["RULES", "dmp_transaction"]
