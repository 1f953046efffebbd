"""Enveloped XML-DSig (the profile SAML tokens use), signing and verification, with lxml + cryptography.

Why our own and not a library: the only profile the bench needs is the one of SAML assertions —
one enveloped ``ds:Signature``, one same-document ``Reference`` to the signed element's ``ID``,
transforms *enveloped-signature* then *exclusive c14n*, X.509 certificate in ``KeyInfo`` — and a
verifier that accepts nothing else is the best defence against signature wrapping and transform
tricks (XPath/XSLT transforms, references to other elements, duplicated IDs).  Both signer and
verifier share :func:`reference_digest` so that what the bench signs is what it verifies.

Verification reports *problems* (with a location relative to the signed element) instead of raising:
the VIHF check turns each into a finding.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

NS_DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"

DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
DIGEST_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
DIGEST_SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

# URI -> (key kind, hash)
SIGNATURE_METHODS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    RSA_SHA1: ("rsa", hashes.SHA1),
    RSA_SHA256: ("rsa", hashes.SHA256),
    RSA_SHA384: ("rsa", hashes.SHA384),
    RSA_SHA512: ("rsa", hashes.SHA512),
    ECDSA_SHA256: ("ec", hashes.SHA256),
    ECDSA_SHA384: ("ec", hashes.SHA384),
    ECDSA_SHA512: ("ec", hashes.SHA512),
}
DIGEST_METHODS: dict[str, Callable[[bytes], bytes]] = {
    DIGEST_SHA1: lambda b: hashlib.sha1(b).digest(),
    DIGEST_SHA256: lambda b: hashlib.sha256(b).digest(),
    DIGEST_SHA384: lambda b: hashlib.sha384(b).digest(),
    DIGEST_SHA512: lambda b: hashlib.sha512(b).digest(),
}
WEAK = frozenset({RSA_SHA1, DIGEST_SHA1})

MAX_CERTIFICATES = 8
MAX_CERT_CHARS = 64 * 1024
_ID_ATTRS = ("ID", "Id", "id", "{http://www.w3.org/XML/1998/namespace}id")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _ds(local: str) -> str:
    return f"{{{NS_DS}}}{local}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a signature; ``where`` is an XPath relative to the signed element."""

    message: str
    where: str = "ds:Signature"


@dataclass
class Verification:
    """Outcome of :func:`verify_enveloped`: errors, warnings (weak algorithms) and the certificates."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    signature: etree._Element | None = None
    signer: x509.Certificate | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.signer is not None


# ---------------------------------------------------------------- canonicalisation
def exc_c14n(el: etree._Element, *, prefixes: Sequence[str] = (), with_comments: bool = False) -> bytes:
    """Exclusive XML canonicalisation of ``el``'s subtree (ancestor namespaces only if visibly used)."""
    return etree.tostring(
        el,
        method="c14n",
        exclusive=True,
        with_comments=with_comments,
        inclusive_ns_prefixes=list(prefixes) or None,
    )


def _remove_keeping_tail(el: etree._Element) -> None:
    """``parent.remove`` also drops the element's tail text; the enveloped transform must not."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _child_path(root: etree._Element, node: etree._Element) -> list[int]:
    path: list[int] = []
    cur: etree._Element | None = node
    while cur is not None and cur is not root:
        parent = cur.getparent()
        if parent is None:
            raise ValueError("node is not inside root")
        path.append(parent.index(cur))
        cur = parent
    if cur is None:
        raise ValueError("node is not inside root")
    return path[::-1]


def reference_digest(
    element: etree._Element,
    signature: etree._Element | None,
    *,
    digest: str = DIGEST_SHA256,
    prefixes: Sequence[str] = (),
    with_comments: bool = False,
) -> bytes:
    """Digest of ``element`` after the enveloped-signature transform (drop ``signature``) and
    exclusive c14n — the one reference profile the bench signs and accepts."""
    work = copy.deepcopy(element)
    if signature is not None:
        target: etree._Element = work
        for i in _child_path(element, signature):
            target = target[i]
        _remove_keeping_tail(target)
    return DIGEST_METHODS[digest](exc_c14n(work, prefixes=prefixes, with_comments=with_comments))


# ---------------------------------------------------------------- signing
def load_private_key(key_pem: bytes | str) -> PrivateKey:
    data = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported private key type (RSA or EC expected)")
    return key


def sign_enveloped(
    element: etree._Element,
    *,
    key_pem: bytes | str,
    cert_pem: bytes | str,
    id_attr: str = "ID",
    position: int = 0,
    digest: str = DIGEST_SHA256,
) -> etree._Element:
    """Sign ``element`` (which must carry ``id_attr``) with an enveloped signature inserted as its
    child at ``position`` (SAML wants it right after ``Issuer``); returns the ``ds:Signature``.

    RSA keys sign with RSA-SHA256, EC keys with ECDSA-SHA256 (``r||s`` as XML-DSig requires)."""
    ref_id = element.get(id_attr)
    if not ref_id:
        raise ValueError(f"element to sign has no {id_attr} attribute")
    key = load_private_key(key_pem)
    cert_data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(cert_data)
    method = RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else ECDSA_SHA256

    sig = etree.Element(_ds("Signature"), nsmap={"ds": NS_DS})
    signed_info = etree.SubElement(sig, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    ref = etree.SubElement(signed_info, _ds("Reference"), URI=f"#{ref_id}")
    transforms = etree.SubElement(ref, _ds("Transforms"))
    etree.SubElement(transforms, _ds("Transform"), Algorithm=ENVELOPED)
    etree.SubElement(transforms, _ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(ref, _ds("DigestMethod"), Algorithm=digest)
    digest_value = etree.SubElement(ref, _ds("DigestValue"))
    sig_value = etree.SubElement(sig, _ds("SignatureValue"))
    key_info = etree.SubElement(sig, _ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, _ds("X509Data"))
    etree.SubElement(x509_data, _ds("X509Certificate")).text = base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)
    ).decode("ascii")

    element.insert(position, sig)
    digest_value.text = base64.b64encode(reference_digest(element, sig, digest=digest)).decode("ascii")
    data = exc_c14n(signed_info)
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    sig_value.text = base64.b64encode(raw).decode("ascii")
    return sig


# ---------------------------------------------------------------- verification
def _b64(text: str | None) -> bytes:
    return base64.b64decode("".join((text or "").split()), validate=True)


def _children(el: etree._Element, local: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and c.tag == _ds(local)]


def _prefix_list(method: etree._Element) -> list[str]:
    for child in method:
        if isinstance(child.tag, str) and etree.QName(child).localname == "InclusiveNamespaces":
            return [p for p in (child.get("PrefixList") or "").split() if p != "#default"]
    return []


def _verify_raw(cert: x509.Certificate, method: str, signed: bytes, raw: bytes) -> bool:
    kind, hash_cls = SIGNATURE_METHODS[method]
    public = cert.public_key()
    try:
        if kind == "rsa" and isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, signed, padding.PKCS1v15(), hash_cls())
            return True
        if kind == "ec" and isinstance(public, ec.EllipticCurvePublicKey):
            size = (public.curve.key_size + 7) // 8
            if len(raw) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))
            public.verify(der, signed, ec.ECDSA(hash_cls()))
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return False


def _duplicates(element: etree._Element, ref_id: str) -> int:
    """How many *other* elements of the whole document carry ``ref_id`` as an ID-like attribute."""
    count = 0
    for node in element.getroottree().iter():
        if node is element or not isinstance(node.tag, str):
            continue
        if any(node.get(a) == ref_id for a in _ID_ATTRS):
            count += 1
    return count


def verify_enveloped(element: etree._Element, *, id_attr: str = "ID") -> Verification:
    """Verify the enveloped signature of ``element`` itself.

    Accepted profile (anything else is a problem, because anything else is how wrapping attacks and
    transform abuse work): exactly one ``ds:Signature`` child; exclusive c14n for ``SignedInfo``;
    exactly one ``Reference`` whose ``URI`` is ``#`` + this element's ID, that ID being unique in the
    document; transforms = enveloped-signature then exclusive c14n; digest recomputed over *this*
    element (never over whatever element an ID lookup would find); signature value checked with a
    certificate of ``KeyInfo/X509Data``.
    """
    out = Verification()
    sigs = _children(element, "Signature")
    if not sigs:
        out.problems.append(Problem("no enveloped ds:Signature in the signed element", "."))
        return out
    if len(sigs) > 1:
        out.problems.append(Problem(f"{len(sigs)} ds:Signature children: exactly one is expected", "ds:Signature[2]"))
        return out
    sig = out.signature = sigs[0]
    signed_infos = _children(sig, "SignedInfo")
    if len(signed_infos) != 1 or sig[0] is not signed_infos[0]:
        out.problems.append(Problem("ds:SignedInfo missing, repeated or not first", "ds:Signature/ds:SignedInfo"))
        return out
    si = signed_infos[0]
    where_si = "ds:Signature/ds:SignedInfo"

    c14n_methods = _children(si, "CanonicalizationMethod")
    c14n_alg = c14n_methods[0].get("Algorithm") if c14n_methods else None
    if c14n_alg not in (EXC_C14N, EXC_C14N_COMMENTS):
        out.problems.append(
            Problem(
                f"canonicalization {c14n_alg!r} not accepted (exclusive c14n expected)",
                f"{where_si}/ds:CanonicalizationMethod",
            )
        )
        return out
    si_prefixes = _prefix_list(c14n_methods[0])

    methods = _children(si, "SignatureMethod")
    method = methods[0].get("Algorithm") if methods else None
    if method not in SIGNATURE_METHODS:
        out.problems.append(Problem(f"signature method {method!r} not supported", f"{where_si}/ds:SignatureMethod"))
        return out
    if method in WEAK:
        out.warnings.append(Problem(f"weak signature method {method} (SHA-1)", f"{where_si}/ds:SignatureMethod"))

    refs = _children(si, "Reference")
    where_ref = f"{where_si}/ds:Reference"
    if len(refs) != 1:
        out.problems.append(Problem(f"{len(refs)} ds:Reference elements: exactly one is expected", where_ref))
        return out
    ref = refs[0]
    ref_id = element.get(id_attr) or ""
    if not ref_id:
        out.problems.append(Problem(f"the signed element has no {id_attr} attribute", "."))
        return out
    uri = ref.get("URI")
    if uri != f"#{ref_id}":
        out.problems.append(
            Problem(f"Reference URI {uri!r} does not point to this element (expected '#{ref_id}')", f"{where_ref}/@URI")
        )
        return out
    dups = _duplicates(element, ref_id)
    if dups:
        out.problems.append(
            Problem(f"ID {ref_id!r} is carried by {dups} other element(s) in the document", f"@{id_attr}")
        )
        return out

    transforms_el = _children(ref, "Transforms")
    algs = [t.get("Algorithm") for t in _children(transforms_el[0], "Transform")] if transforms_el else []
    if algs not in ([ENVELOPED, EXC_C14N], [ENVELOPED, EXC_C14N_COMMENTS], [ENVELOPED]):
        out.problems.append(
            Problem(
                f"transforms {algs} not accepted (enveloped-signature then exclusive c14n expected)",
                f"{where_ref}/ds:Transforms",
            )
        )
        return out
    ref_prefixes = _prefix_list(_children(transforms_el[0], "Transform")[-1]) if transforms_el else []

    digest_methods = _children(ref, "DigestMethod")
    digest_alg = digest_methods[0].get("Algorithm") if digest_methods else None
    if digest_alg not in DIGEST_METHODS:
        out.problems.append(Problem(f"digest method {digest_alg!r} not supported", f"{where_ref}/ds:DigestMethod"))
        return out
    if digest_alg in WEAK:
        out.warnings.append(Problem(f"weak digest method {digest_alg} (SHA-1)", f"{where_ref}/ds:DigestMethod"))
    digest_values = _children(ref, "DigestValue")
    try:
        expected = _b64(digest_values[0].text if digest_values else None)
    except (binascii.Error, ValueError):
        out.problems.append(Problem("DigestValue is not base64", f"{where_ref}/ds:DigestValue"))
        return out
    # Same-document references drop comments (XML-DSig §4.3.3.3), whatever the c14n variant says.
    actual = reference_digest(element, sig, digest=digest_alg, prefixes=ref_prefixes, with_comments=False)
    if actual != expected:
        out.problems.append(
            Problem("digest mismatch: the assertion was modified after signing", f"{where_ref}/ds:DigestValue")
        )

    key_infos = _children(sig, "KeyInfo")
    cert_els = [c for ki in key_infos for xd in _children(ki, "X509Data") for c in _children(xd, "X509Certificate")]
    where_cert = "ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate"
    if not cert_els:
        out.problems.append(Problem("no X509Certificate in ds:KeyInfo", "ds:Signature/ds:KeyInfo"))
        return out
    for c in cert_els[:MAX_CERTIFICATES]:
        if len(c.text or "") > MAX_CERT_CHARS:
            out.problems.append(Problem("X509Certificate too large", where_cert))
            return out
        try:
            out.certificates.append(x509.load_der_x509_certificate(_b64(c.text)))
        except (binascii.Error, ValueError) as exc:
            out.problems.append(Problem(f"unreadable X509Certificate: {str(exc)[:100]}", where_cert))
            return out

    try:
        raw = _b64(_children(sig, "SignatureValue")[0].text if _children(sig, "SignatureValue") else None)
    except (binascii.Error, ValueError):
        out.problems.append(Problem("SignatureValue is not base64", "ds:Signature/ds:SignatureValue"))
        return out
    signed = exc_c14n(si, prefixes=si_prefixes, with_comments=c14n_alg == EXC_C14N_COMMENTS)
    out.signer = next((c for c in out.certificates if _verify_raw(c, method, signed, raw)), None)
    if out.signer is None:
        out.problems.append(
            Problem("SignatureValue does not verify with the KeyInfo certificate", "ds:Signature/ds:SignatureValue")
        )
    return out
