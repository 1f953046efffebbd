"""Value sets (CI-SIS JDV, NOS) and their look-up: is ``(code, codeSystem)`` in a value set?

Two sources, merged by value-set OID (the official file wins over our own subset):

- the project's **own subsets** (``conformance/data/valuesets/*.yaml``), written from the published codes
  for what the CDA header rules need; each names its source and says whether it is ``complete`` (the
  whole published value set, so an unknown code is an error) or a subset (an unknown code only warns and
  points at ``--terminology``);
- **official files** from directories the user names (``--terminology DIR``): IHE SVS
  ``RetrieveValueSetResponse`` XML (ANS's ``jeuxDeValeurs/JDV_*.xml``) and FHIR R4 ``ValueSet`` /
  ``CodeSystem`` JSON (the NOS exports).  They are parsed with the safe parser: a broken or hostile
  file is skipped and reported in :attr:`Terminology.problems`, it never stops a validation.

Loaded directories are cached per process (keyed by path and modification times), so a batch that
spreads documents over worker processes loads each directory once per worker.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from conformance.parsing import InputError, parse_json, parse_xml

SVS = "urn:ihe:iti:svs:2008"
MAX_TERMINOLOGY_FILE = 30 * 1024 * 1024

Lookup = Literal["known", "unknown", "unavailable"]

# FHIR canonical URLs of the code systems the CI-SIS header uses → their OIDs (CDA speaks OIDs).
# Loaded CodeSystem resources extend this map with their own url/identifier pairs.
SYSTEM_URLS: dict[str, str] = {
    "http://loinc.org": "2.16.840.1.113883.6.1",
    "http://snomed.info/sct": "2.16.840.1.113883.6.96",
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality": "2.16.840.1.113883.5.25",
    "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire": (
        "1.2.250.1.213.1.1.4.12"
    ),
    "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite": "1.2.250.1.71.4.2.4",
    "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS": (
        "1.2.250.1.213.1.1.4.6"
    ),
    "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice": "1.2.250.1.213.1.1.4.9",
    "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality": (
        "2.16.840.1.113883.5.25"
    ),
}


def normalize_system(system: str | None, urls: dict[str, str] | None = None) -> str:
    """``urn:oid:X`` → ``X``; a known FHIR canonical URL → its OID; anything else unchanged."""
    if not system:
        return ""
    system = system.strip()
    if system.startswith("urn:oid:"):
        return system[8:]
    return (urls or SYSTEM_URLS).get(system, SYSTEM_URLS.get(system, system))


@dataclass
class ValueSet:
    """A set of ``(codeSystem OID, code)`` pairs with where it comes from."""

    oid: str
    name: str
    concepts: dict[tuple[str, str], str] = field(default_factory=dict)
    complete: bool = True
    source: str = ""
    official: bool = False
    # codes whose system could not be mapped to an OID: matched on the code alone
    loose_codes: set[str] = field(default_factory=set)

    def add(self, system: str, code: str, display: str = "") -> None:
        self.concepts[(system, code)] = display
        if not system or "://" in system:
            self.loose_codes.add(code)

    def contains(self, code: str | None, system: str | None) -> bool:
        if not code:
            return False
        return (normalize_system(system), code) in self.concepts or code in self.loose_codes

    @property
    def authoritative(self) -> bool:
        """True when an unknown code is a real defect (official file, or a complete subset of ours)."""
        return self.official or self.complete

    def __len__(self) -> int:
        return len(self.concepts)


@dataclass
class Terminology:
    """Value sets by OID (and by name), plus the files that could not be read."""

    by_oid: dict[str, ValueSet] = field(default_factory=dict)
    by_name: dict[str, ValueSet] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = ()

    def add(self, vs: ValueSet) -> None:
        current = self.by_oid.get(vs.oid)
        if current is not None and current.official and not vs.official:
            return  # never let our own subset shadow an official file
        self.by_oid[vs.oid] = vs
        if vs.name:
            self.by_name[_name_key(vs.name)] = vs

    def merged(self, other: Terminology) -> Terminology:
        out = Terminology(dict(self.by_oid), dict(self.by_name), [*self.problems], self.sources + other.sources)
        for vs in other.by_oid.values():
            out.add(vs)
        out.problems.extend(other.problems)
        return out

    def get(self, key: str) -> ValueSet | None:
        """A value set by OID or by name (``JDV_J07-XdsTypeCode-CISIS`` and ``JDV_J07_XdsTypeCode_CISIS`` alike)."""
        return self.by_oid.get(key) or self.by_name.get(_name_key(key))

    def lookup(self, key: str, code: str | None, system: str | None) -> tuple[Lookup, ValueSet | None]:
        vs = self.get(key)
        if vs is None:
            return "unavailable", None
        return ("known" if vs.contains(code, system) else "unknown"), vs

    def __iter__(self) -> Iterator[ValueSet]:
        return iter(self.by_oid.values())


def _name_key(name: str) -> str:
    name = name.removesuffix(".tabs").removesuffix(".xml").removesuffix(".json")
    return name.replace("-", "_").lower()


# ------------------------------------------------------------------ readers
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_svs(data: bytes, *, source: str = "") -> list[ValueSet]:
    """IHE SVS ``RetrieveValueSetResponse`` (or a bare ``ValueSet``) → value sets."""
    root = parse_xml(data, max_bytes=MAX_TERMINOLOGY_FILE)
    # ANS's files use the SVS namespace; some NOS exports in the wild carry the same shape without it.
    sets = [el for el in root.iter() if isinstance(el.tag, str) and _local(el.tag) == "ValueSet"]
    if not sets:
        raise InputError("INPUT.KIND", f"no SVS ValueSet element (root {root.tag})")
    out: list[ValueSet] = []
    for el in sets:
        oid = (el.get("id") or "").strip()
        if not oid:
            continue
        vs = ValueSet(oid=oid, name=el.get("displayName") or "", source=source, official=True)
        for c in el.iter():
            if not isinstance(c.tag, str) or _local(c.tag) != "Concept":
                continue
            code = c.get("code")
            if code:
                vs.add(normalize_system(c.get("codeSystem")), code, c.get("displayName") or "")
        out.append(vs)
    return out


def _identifier_oid(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and str(ident.get("value", "")).startswith("urn:oid:"):
            return str(ident["value"])[8:]
    return None


def _walk_concepts(concepts: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for c in concepts:
        if isinstance(c, dict):
            yield c
            yield from _walk_concepts(c.get("concept") or [])


def read_fhir(data: bytes, *, source: str = "", urls: dict[str, str] | None = None) -> list[ValueSet]:
    """FHIR R4 ``ValueSet`` (compose / expansion) or ``CodeSystem`` JSON → value sets.

    A CodeSystem becomes the value set of all its codes, keyed by its OID (what CDA ``codeSystem`` holds).
    A ValueSet that includes a whole code system without listing concepts is marked incomplete.
    """
    doc = parse_json(data, max_bytes=MAX_TERMINOLOGY_FILE)
    if not isinstance(doc, dict):
        raise InputError("INPUT.JSON", "not a FHIR resource")
    rtype = doc.get("resourceType")
    oid = _identifier_oid(doc) or str(doc.get("url") or doc.get("id") or "")
    name = str(doc.get("name") or doc.get("id") or "")
    urls = urls if urls is not None else dict(SYSTEM_URLS)
    if rtype == "CodeSystem":
        vs = ValueSet(oid=oid, name=name, source=source, official=True)
        for c in _walk_concepts(doc.get("concept") or []):
            if c.get("code"):
                vs.add(oid, str(c["code"]), str(c.get("display") or ""))
        return [vs]
    if rtype != "ValueSet":
        return []
    vs = ValueSet(oid=oid, name=name, source=source, official=True)
    compose = doc.get("compose") or {}
    for inc in compose.get("include") or []:
        if not isinstance(inc, dict):
            continue
        system = normalize_system(inc.get("system"), urls)
        concepts = inc.get("concept") or []
        if not concepts and not inc.get("valueSet"):
            vs.complete = False
        for c in concepts:
            if isinstance(c, dict) and c.get("code"):
                vs.add(system, str(c["code"]), str(c.get("display") or ""))
    for c in _walk_contains((doc.get("expansion") or {}).get("contains") or []):
        vs.add(normalize_system(c.get("system"), urls), str(c["code"]), str(c.get("display") or ""))
    return [vs]


def _walk_contains(items: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for c in items:
        if isinstance(c, dict):
            if c.get("code"):
                yield c
            yield from _walk_contains(c.get("contains") or [])


def _code_system_urls(paths: Sequence[Path]) -> dict[str, str]:
    """url → OID for the CodeSystem JSON files of a directory (read first so ValueSets can map systems)."""
    urls = dict(SYSTEM_URLS)
    for p in paths:
        if not p.name.startswith("CodeSystem"):
            continue
        try:
            doc = parse_json(p.read_bytes(), max_bytes=MAX_TERMINOLOGY_FILE)
        except (InputError, OSError):
            continue
        if isinstance(doc, dict) and doc.get("url") and _identifier_oid(doc):
            urls[str(doc["url"])] = str(_identifier_oid(doc))
    return urls


def load_directory(directory: Path) -> Terminology:
    """Every SVS XML and FHIR JSON value set / code system of ``directory`` (recursively)."""
    term = Terminology(sources=(str(directory),))
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".xml", ".json"))
    urls = _code_system_urls([p for p in files if p.suffix.lower() == ".json"])
    for path in files:
        try:
            if path.stat().st_size > MAX_TERMINOLOGY_FILE:
                raise InputError("INPUT.TOO-LARGE", "file too large for a value set")
            data = path.read_bytes()
            if not data.strip():
                term.problems.append(f"{path}: empty file, skipped")
                continue
            sets = (
                read_svs(data, source=str(path))
                if path.suffix.lower() == ".xml"
                else read_fhir(data, source=str(path), urls=urls)
            )
        except InputError as exc:
            term.problems.append(f"{path}: {exc.rule}: {exc.message}")
            continue
        except (OSError, ValueError, RecursionError) as exc:
            term.problems.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        for vs in sets:
            term.add(vs)
    return term


def _dir_stamp(directory: Path) -> int:
    """Changes when a file of the directory is added, removed or modified (cache key)."""
    stamp = 0
    for dirpath, _dirs, names in os.walk(directory):
        for n in names:
            try:
                st = os.stat(os.path.join(dirpath, n))
            except OSError:
                continue
            stamp = hash((stamp, n, st.st_mtime_ns, st.st_size))
    return stamp


@functools.lru_cache(maxsize=16)
def _cached_directory(path: str, stamp: int) -> Terminology:
    return load_directory(Path(path))


@functools.lru_cache(maxsize=1)
def builtin() -> Terminology:
    """The project's own value-set subsets (``conformance/data/valuesets/*.yaml``)."""
    term = Terminology(sources=("builtin",))
    folder = resources.files("conformance") / "data" / "valuesets"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        doc = yaml.safe_load(entry.read_text(encoding="utf-8"))
        vs = ValueSet(
            oid=str(doc["oid"]),
            name=str(doc.get("name", "")),
            complete=bool(doc.get("complete", False)),
            source=str(doc.get("source", "")),
            official=False,
        )
        default_system = str(doc.get("codeSystem", ""))
        for c in doc.get("concepts") or []:
            vs.add(
                normalize_system(str(c.get("codeSystem", default_system))), str(c["code"]), str(c.get("display", ""))
            )
        term.add(vs)
    return term


def load(directories: Sequence[Path | str] = ()) -> Terminology:
    """Built-in subsets overlaid with the official files of ``directories`` (cached per process)."""
    term = builtin()
    for d in directories:
        p = Path(d).resolve()
        term = term.merged(_cached_directory(str(p), _dir_stamp(p)))
    return term


@functools.lru_cache(maxsize=8)
def load_cached(directories: tuple[str, ...]) -> Terminology:
    """:func:`load` memoised on the directory tuple, for hot paths (one look-up per document)."""
    return load(directories)


def dumps_summary(term: Terminology) -> str:
    """One JSON line describing what is loaded (for ``--format json`` consumers and debugging)."""
    return json.dumps(
        {"value_sets": len(term.by_oid), "sources": list(term.sources), "problems": len(term.problems)},
        ensure_ascii=False,
    )


__all__ = [
    "SYSTEM_URLS",
    "Lookup",
    "Terminology",
    "ValueSet",
    "builtin",
    "load",
    "load_cached",
    "load_directory",
    "normalize_system",
    "read_fhir",
    "read_svs",
]
