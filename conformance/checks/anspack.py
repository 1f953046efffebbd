"""ANS's official validation pack (TestContenuCDA) run on a CDA document: rule ids ``ANS.*``.

``--ans-pack DIR`` points at a checkout of the pack in its original layout:

- ``infrastructure/cda/CDA_extended.xsd`` — validated with lxml; its imports are resolved by a resolver
  that only serves files *inside the pack* (no network, nothing else on disk): errors → ``ANS.XSD``;
- ``schematrons/CI-SIS_<VOLET>_<version>.sch`` — the volet's ISO schematron (XSLT 2), compiled through the
  pack's own ``moteur/`` skeleton (iso_dsdl_include → iso_abstract_expand → iso_svrl_for_xslt2) with the
  optional ``saxonche`` extra and cached on disk (``$SEGUR_BENCH_CACHE`` or ``~/.cache/segur-bench``);
  failed asserts of the SVRL report → ``ANS.SCH.<assert id or pattern id>`` (``role`` ``warning`` /
  ``info`` kept, anything else is an ``error``).  Niveau-1 documents (and documents whose volet the pack
  does not know) are judged by ``profils/CI-SIS_ModelesDeContenusCDA.sch``, as ANS does.

The schematron is chosen from the pack itself: every ``CI-SIS_*.sch`` (and the files it includes) is
scanned for the ``templateId`` roots and document ``code``s it asserts in ``cda:ClinicalDocument``
rules; the document's templateIds and code pick the best-matching volet and, among its versions, the
latest.  This is a heuristic (ANS's tool lets the user choose): the chosen file is named in an info
finding so an auditor can see it.  A schematron that does not compile (e.g. the pack's
``CI-SIS_BIO-CR-BIO_2023.01.sch``) is a ``warning`` finding, never a crash.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from conformance.model import Finding, Severity

V3 = "urn:hl7-org:v3"
SCH = "http://purl.oclc.org/dsdl/schematron"
SVRL = "http://purl.oclc.org/dsdl/svrl"
GENERIC_TEMPLATES = {"2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"}
NIVEAU1_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"
FALLBACK_SCH = "profils/CI-SIS_ModelesDeContenusCDA.sch"
COMPILER_VERSION = "1"

RULES: dict[str, str] = {
    "ANS.XSD": "Document valide contre CDA_extended.xsd du pack ANS",
    "ANS.SCH": "Assertions du schématron officiel du volet (ANS.SCH.<id>)",
    "ANS.PACK": "Pack ANS utilisable (XSD, schématron compilable, saxonche présent)",
}

_TEMPLATE_RE = re.compile(r"templateId\[\s*@root\s*=\s*['\"]([0-9.]+)['\"]")
_CODE_RE = re.compile(r"cda:code\[\s*@code\s*=\s*['\"]([^'\"]+)['\"]")
_VERSION_RE = re.compile(r"CI-SIS_(?P<volet>.+)_(?P<version>[0-9]{4}\.[0-9]{2})\.sch$")


class PackError(Exception):
    """The pack cannot be used as asked (missing file, schematron that does not compile)."""


def cache_dir() -> Path:
    env = os.environ.get("SEGUR_BENCH_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "segur-bench"
    return base / "schematron"


# ------------------------------------------------------------------ XSD
class _PackResolver(etree.Resolver):
    """Serves schema imports from inside the pack only; anything else resolves to nothing."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root.resolve()

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        url = system_url or ""
        if url.startswith("file://"):
            url = url[7:]
        if "://" in url:
            return self.resolve_string("", context)  # network: refused
        target = Path(url).resolve()
        if target != self.root and self.root not in target.parents:
            return self.resolve_string("", context)
        return None  # inside the pack: default loader


@functools.lru_cache(maxsize=4)
def load_xsd(pack: str) -> etree.XMLSchema:
    """CDA_extended.xsd of the pack (cached per process)."""
    root = Path(pack)
    xsd = root / "infrastructure" / "cda" / "CDA_extended.xsd"
    if not xsd.is_file():
        raise PackError(f"{xsd} not found")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_PackResolver(root))
    try:
        return etree.XMLSchema(etree.parse(str(xsd), parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise PackError(f"CDA_extended.xsd does not load: {exc}") from None


def _standalone(doc: Any) -> Any:
    """The ClinicalDocument as a document of its own (auto-présentable wrappers removed), like selectCDA.xsl."""
    if doc.getparent() is None:
        return doc.getroottree()
    return etree.ElementTree(etree.fromstring(etree.tostring(doc)))


def xsd_findings(doc: Any, pack: Path) -> list[Finding]:
    schema = load_xsd(str(pack.resolve()))
    tree = _standalone(doc)
    if schema.validate(tree):
        return []
    out = []
    for err in schema.error_log:
        out.append(Finding("ANS.XSD", "error", err.message, err.path or None))
    return out


# ------------------------------------------------------------------ schematron choice
@dataclass
class SchInfo:
    path: Path
    volet: str
    version: str
    templates: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)


def _sch_text(path: Path, base: Path, depth: int = 0) -> str:
    """The schematron and (two levels of) its ``specificationsVolets`` includes, as text for scanning."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    if depth >= 2:
        return text
    parts = [text]
    for href in re.findall(r"<include\s+href=\"([^\"]+)\"", text):
        if "specificationsVolets" in href and "Entete" in href:
            parts.append(_sch_text((path.parent / href), base, depth + 1))
    return "\n".join(parts)


def _clinical_document_rules(text: str) -> str:
    """Only the ``<rule context="cda:ClinicalDocument">`` bodies (not the sections' and entries')."""
    out = []
    for m in re.finditer(
        r"<rule\s+context=\s*['\"]\s*(?:/)?cda:ClinicalDocument\s*['\"][^>]*>(.*?)</rule>", text, re.S
    ):
        out.append(re.sub(r"<!--.*?-->", "", m.group(1), flags=re.S))
    return "\n".join(out)


@functools.lru_cache(maxsize=4)
def schematron_index(pack: str) -> tuple[SchInfo, ...]:
    """Every volet schematron of the pack with the document templateIds and codes it asserts."""
    base = Path(pack) / "schematrons"
    infos: list[SchInfo] = []
    for path in sorted(base.glob("CI-SIS_*.sch")):
        m = _VERSION_RE.search(path.name)
        volet, version = (m.group("volet"), m.group("version")) if m else (path.stem, "0000.00")
        body = _clinical_document_rules(_sch_text(path, base))
        infos.append(
            SchInfo(
                path=path,
                volet=volet,
                version=version,
                templates=set(_TEMPLATE_RE.findall(body)) - GENERIC_TEMPLATES,
                codes=set(_CODE_RE.findall(body)),
            )
        )
    return tuple(infos)


def choose_schematron(doc: Any, pack: Path) -> Path:
    """The volet schematron for ``doc`` (best templateId/code match, latest version), or the N1 profile."""
    templates = {t.get("root") for t in doc.findall(f"{{{V3}}}templateId")} - GENERIC_TEMPLATES
    code_el = doc.find(f"{{{V3}}}code")
    code = code_el.get("code") if code_el is not None else None
    fallback = pack / "schematrons" / FALLBACK_SCH
    if doc.find(f"{{{V3}}}component/{{{V3}}}nonXMLBody") is not None:
        return fallback
    best: tuple[int, str, str] | None = None
    chosen: Path | None = None
    for info in schematron_index(str(pack.resolve())):
        t_hits = len(info.templates & templates)
        missing = len(info.templates - templates)
        c_hit = 1 if code and code in info.codes else 0
        if t_hits == 0 and c_hit == 0:
            continue
        if info.codes and code and code not in info.codes:
            continue  # the volet fixes another document code
        score = (t_hits * 2 + c_hit * 3 - missing * 2, info.version, info.volet)
        if best is None or score > best:
            best, chosen = score, info.path
    if chosen is None or best is None or best[0] <= 0:
        return fallback
    return chosen


# ------------------------------------------------------------------ compile + run (saxonche)
def _saxon() -> Any:
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@functools.lru_cache(maxsize=1)
def _processor() -> Any:
    return _saxon()


def _tree_stamp(folder: Path) -> str:
    h = hashlib.sha256(COMPILER_VERSION.encode())
    for dirpath, _dirs, names in os.walk(folder):
        for n in sorted(names):
            if n.endswith((".sch", ".xsl")):
                st = os.stat(os.path.join(dirpath, n))
                h.update(f"{dirpath}/{n}:{st.st_mtime_ns}:{st.st_size}".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _pack_stamp(schematrons: str) -> str:
    return _tree_stamp(Path(schematrons))


def compiled_path(sch: Path) -> Path:
    sch = sch.resolve()
    stamp = _pack_stamp(str(_schematrons_dir(sch)))
    key = hashlib.sha256(f"{sch}|{stamp}".encode()).hexdigest()[:24]
    return cache_dir() / f"{sch.stem}.{key}.xsl"


def _schematrons_dir(sch: Path) -> Path:
    for parent in sch.parents:
        if parent.name == "schematrons":
            return parent
    return sch.parent


def compile_schematron(sch: Path) -> Path:
    """Compile ``sch`` to XSLT through the pack's own ISO skeleton; cached on disk, reused across runs."""
    target = compiled_path(sch)
    if target.is_file():
        return target
    moteur = _schematrons_dir(sch.resolve()) / "moteur"
    steps = [moteur / "iso_dsdl_include.xsl", moteur / "iso_abstract_expand.xsl", moteur / "iso_svrl_for_xslt2.xsl"]
    for step in steps:
        if not step.is_file():
            raise PackError(f"{step} not found")
    proc = _processor()
    xslt = proc.new_xslt30_processor()
    current: Any = proc.parse_xml(xml_file_name=str(sch.resolve()))
    text = ""
    try:
        for step in steps:
            exe = xslt.compile_stylesheet(stylesheet_file=str(step))
            text = exe.transform_to_string(xdm_node=current)
            if text is None:
                raise PackError(f"{step.name} produced nothing for {sch.name}")
            # the next step resolves includes relative to the schematron's folder
            current = proc.parse_xml(xml_text=_with_base(text, sch.resolve()))
        # check that the generated XSLT itself compiles before caching it
        xslt.compile_stylesheet(stylesheet_text=_with_base(text, sch.resolve()))
    except PackError:
        raise
    except Exception as exc:  # saxonche raises PySaxonApiError and friends
        raise PackError(f"{sch.name} does not compile: {str(exc).strip().splitlines()[0][:300]}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def _with_base(xml_text: str, sch: Path) -> str:
    """Set the root element's ``xml:base`` to the schematron's folder so relative JDV paths resolve."""
    base = sch.parent.as_uri() + "/"
    if xml_text.lstrip().startswith("<?xml"):
        xml_text = xml_text.split("?>", 1)[1]
    m = re.search(r"<(?![?!])[^\s>/]+([^>]*)>", xml_text)
    if m is None:
        return xml_text
    attrs = m.group(1)
    if "xml:base=" in attrs:
        new_attrs = re.sub(r"xml:base=(\"[^\"]*\"|'[^']*')", f'xml:base="{base}"', attrs, count=1)
    else:
        new_attrs = f' xml:base="{base}"' + attrs
    return xml_text[: m.start(1)] + new_attrs + xml_text[m.end(1) :]


@functools.lru_cache(maxsize=16)
def _executable(sch: str) -> Any:
    path = Path(sch)
    compiled = compile_schematron(path)
    proc = _processor()
    return proc.new_xslt30_processor().compile_stylesheet(
        stylesheet_text=_with_base(compiled.read_text(encoding="utf-8"), path)
    )


def run_schematron(doc: Any, sch: Path) -> list[Finding]:
    """Failed asserts (and successful reports) of the SVRL produced by the compiled schematron."""
    exe = _executable(str(sch.resolve()))
    proc = _processor()
    node = proc.parse_xml(xml_text=etree.tostring(_standalone(doc), encoding="unicode"))
    try:
        svrl = exe.transform_to_string(xdm_node=node)
    except Exception as exc:
        raise PackError(f"{sch.name} failed on this document: {str(exc).strip().splitlines()[0][:300]}") from None
    return svrl_findings(svrl or "")


def svrl_findings(svrl: str) -> list[Finding]:
    from conformance.parsing import parse_xml

    if not svrl.strip():
        return []
    root = parse_xml(svrl.encode("utf-8"), max_bytes=200 * 1024 * 1024)
    out: list[Finding] = []
    pattern = ""
    for el in root.iter():
        if el.tag == f"{{{SVRL}}}active-pattern":
            pattern = el.get("id") or el.get("name") or ""
        elif el.tag in (f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
            text_el = el.find(f"{{{SVRL}}}text")
            message = " ".join((text_el.xpath("string()") if text_el is not None else "").split())
            ident = el.get("id") or pattern or "assert"
            role = (el.get("role") or el.get("flag") or "").lower()
            severity: Severity = "error"
            if role in ("warning", "warn"):
                severity = "warning"
            elif role in ("info", "information"):
                severity = "info"
            out.append(Finding(f"ANS.SCH.{ident}", severity, message, _svrl_location(el.get("location"))))
    return out


def _svrl_location(loc: str | None) -> str | None:
    """SVRL location without namespace noise: ``/*:ClinicalDocument[…][1]`` → ``/ClinicalDocument[1]``."""
    if not loc:
        return loc
    loc = re.sub(r"\[namespace-uri\(\)=['\"][^'\"]*['\"]\]", "", loc)
    loc = re.sub(r"\*:|Q\{[^}]*\}", "", loc)
    return re.sub(r"/(@?)[A-Za-z_][\w.-]*:", r"/\1", loc)


def saxon_available() -> bool:
    try:
        import saxonche  # noqa: F401
    except ImportError:
        return False
    return True


def pack_findings(doc: Any, pack: Path) -> list[Finding]:
    """XSD + volet schematron findings for one ClinicalDocument element; problems become findings."""
    out: list[Finding] = []
    try:
        out.extend(xsd_findings(doc, pack))
    except PackError as exc:
        out.append(Finding("ANS.PACK", "warning", f"XSD non exécuté : {exc}", None))
    if not saxon_available():
        out.append(
            Finding(
                "ANS.PACK",
                "info",
                "schématron officiel non exécuté : installer l'extra 'schematron' (saxonche)",
                None,
            )
        )
        return out
    sch = choose_schematron(doc, pack)
    rel = sch.relative_to(pack / "schematrons") if sch.is_relative_to(pack / "schematrons") else sch
    try:
        found = run_schematron(doc, sch)
    except PackError as exc:
        out.append(Finding("ANS.PACK", "warning", f"schématron {rel} non exécuté : {exc}", None))
        return out
    out.append(Finding("ANS.PACK", "info", f"schématron officiel appliqué : {rel}", None))
    out.extend(found)
    return out


__all__ = [
    "RULES",
    "PackError",
    "cache_dir",
    "choose_schematron",
    "compile_schematron",
    "load_xsd",
    "pack_findings",
    "run_schematron",
    "saxon_available",
    "schematron_index",
    "svrl_findings",
    "xsd_findings",
]
