"""Faults the reference vendor can inject, each breaking named requirements and nothing else.

The quality bar of the bench is that "a conformant reference vendor passes, the same vendor with one
injected fault fails exactly the requirement that fault breaks".  This registry is the single place
that states which requirement ids each fault is expected to break: tests of the checks, ``segur-bench
sim --list-faults`` and the reference vendor itself all read it, so a fault and its expectation
cannot drift apart.  Requirement ids are those of the profile of the fault's service:
``profiles/segur-v2-ins.yaml`` for ``ins.*``, ``profiles/segur-v2-dmp.yaml`` for ``dmp.*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fault:
    """One deliberate deviation of the reference vendor.

    ``name`` starts with its ``service`` (``ins.bad-key``) so that faults group per service socle on
    the command line; ``requirements`` lists the requirement ids the fault makes fail.
    """

    name: str
    service: str
    description: str
    requirements: tuple[str, ...]


def _faults(*faults: Fault) -> dict[str, Fault]:
    out: dict[str, Fault] = {}
    for fault in faults:
        if not fault.name.startswith(f"{fault.service}."):
            raise ValueError(f"fault {fault.name!r} must start with its service {fault.service!r}")
        if fault.name in out:
            raise ValueError(f"fault {fault.name!r} defined twice")
        out[fault.name] = fault
    return out


FAULTS: dict[str, Fault] = _faults(
    Fault(
        "ins.bad-key",
        "ins",
        "Stores and exposes the INS matricule with a wrong 2-digit check key.",
        ("SC.INS/va1.01", "SC.INS/va1.52"),
    ),
    Fault(
        "ins.bad-oid",
        "ins",
        "Exposes the INS under the obsolete INS-C OID 1.2.250.1.213.1.4.2 instead of the INS-NIR/NIA OID.",
        ("SC.INS/va1.01", "SC.INS/va1.52"),
    ),
    Fault(
        "ins.missing-birth-place",
        "ins",
        "Does not store the birth place returned by INSi, so the Patient has no birth place.",
        ("SC.INS/va1.21",),
    ),
    Fault(
        "ins.sex-mismatch",
        "ins",
        "Stores the sex opposite to the one INSi returned (and to the NIR's sex digit).",
        ("SB.INS.02", "SC.INS/va1.52"),
    ),
    Fault(
        "ins.first-given-mismatch",
        "ins",
        "Takes the last birth given name (or one outside a one-name list) as first given name; list intact.",
        ("SC.INS/va1.51",),
    ),
    Fault(
        "ins.used-name-as-birth-name",
        "ins",
        "Stores a used name (the used_name parameter, else MARTIN) as birth name.",
        ("SC.INS/va1.52",),
    ),
    Fault(
        "ins.no-status",
        "ins",
        "Omits the fr-core-identity-reliability extension (no identity status) from Patients.",
        ("SC.INS/va1.54",),
    ),
    Fault(
        "ins.unqualified-ins",
        "ins",
        "Exposes the INS identifier of a RECUP identity, before it is qualified.",
        ("SC.INS/va1.59",),
    ),
    Fault(
        "ins.insi-soap11",
        "ins",
        "Calls INSi with a SOAP 1.1 envelope (text/xml) instead of SOAP 1.2.",
        ("SC.INS/va1.34",),
    ),
    Fault(
        "ins.insi-no-context",
        "ins",
        "Calls INSi without the ContexteLPS and ContexteBAM SOAP headers.",
        ("SB.INS.01",),
    ),
    Fault(
        "ins.no-carte-vitale",
        "ins",
        "Calls the INSi traits operation when asked to use the carte Vitale operation.",
        ("SC.INS/va1.34",),
    ),
    Fault(
        "ins.search-ignores-identifier",
        "ins",
        "FHIR Patient search ignores the identifier parameter and returns every stored patient.",
        ("SB.FHIR.01",),
    ),
    # DMP client side (vendor_dmp.py); requirement ids of profiles/segur-v2-dmp.yaml.  Metadata, CDA and
    # replacement faults act on the metadata model shared by XDS.b and MHD, so the vendor carries them
    # over both transports and they fail the same requirements either way.  VIHF and SOAP faults concern
    # XDS.b only: PDSm (MHD) carries no VIHF token and no SOAP envelope.
    Fault(
        "dmp.vihf-missing-attribute",
        "dmp",
        "Signs a VIHF token without the LPS_ID_HOMOLOGATION_DMP attribute (DMP homologation number); XDS.b only.",
        ("SB.DMP.04",),
    ),
    Fault(
        "dmp.vihf-unsigned",
        "dmp",
        "Sends the VIHF assertion without its XML signature (XDS.b only).",
        ("SC.DMP/CONF.10",),
    ),
    Fault(
        "dmp.vihf-expired",
        "dmp",
        "Sends a validly signed VIHF token whose validity window ended two hours ago (XDS.b only).",
        ("SC.DMP/CONF.10",),
    ),
    Fault(
        "dmp.metadata-type-mismatch",
        "dmp",
        "typeCode 11506-3 (same class) while the CDA's code is 11488-4 (XDS typeCode, MHD DocumentReference.type).",
        ("SB.DMP.02",),
    ),
    Fault(
        "dmp.wrong-class-code",
        "dmp",
        "classCode 11 (Synthèse), which ASS_X04 does not give for the typeCode 11488-4 (class 10); XDS classCode, "
        "MHD category.",
        ("LGC.DMP.02",),
    ),
    Fault(
        "dmp.bad-confidentiality",
        "dmp",
        "Adds the confidentialityCode MASQUE, not in JDV J58 (the DMP's code is MASQUE_PS); MHD securityLabel too.",
        ("LGC.DMP.02",),
    ),
    Fault(
        "dmp.missing-ins",
        "dmp",
        "Keys the DMP by the local IPP instead of the patient's INS (ITI-41 patientId, ITI-18 query, MHD subject).",
        ("SB.DMP.01", "SC.DMP/UX.27"),
    ),
    Fault(
        "dmp.wrong-hash",
        "dmp",
        "Declares a hash that is not the SHA-1 of the document sent (XDS hash slot, MHD attachment.hash).",
        ("SB.DMP.02",),
    ),
    Fault(
        "dmp.cda-missing-custodian",
        "dmp",
        "Produces CDA documents without custodian (the structure keeping the document).",
        ("SC.CDA/DD.08",),
    ),
    Fault(
        "dmp.cda-bad-language",
        "dmp",
        "Produces CDA documents with languageCode en-US instead of fr-FR.",
        ("SC.CDA/DD.08",),
    ),
    Fault(
        "dmp.replace-without-rplc",
        "dmp",
        "Sends a new version (same setId, version + 1) without the RPLC association (MHD: relatesTo replaces) to "
        "the previous one.",
        ("SC.DMP/va1.23",),
    ),
    Fault(
        "dmp.soap11",
        "dmp",
        "Sends the XDS.b transactions in SOAP 1.1 envelopes instead of SOAP 1.2 (XDS.b only).",
        ("SB.DMP.03",),
    ),
    Fault(
        "dmp.retrieve-wrong-repository",
        "dmp",
        "Retrieves documents (ITI-43) from a repository id other than the one the registry returned.",
        ("SB.DMP.05",),
    ),
)


def parse_faults(names: Iterable[str]) -> frozenset[str]:
    """Validate fault names given on the command line or by a test; unknown names are usage errors.

    Comma-separated values are accepted too (``--fault ins.bad-key,ins.no-status``) because that is
    how CI variables usually carry lists.
    """
    out: set[str] = set()
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name not in FAULTS:
                raise ValueError(f"unknown fault: {name}; see --list-faults")
            out.add(name)
    return frozenset(out)


def faults_breaking(requirement_id: str) -> list[Fault]:
    """Faults expected to make ``requirement_id`` fail (used to prove each check has a failing case)."""
    return [f for f in FAULTS.values() if requirement_id in f.requirements]
