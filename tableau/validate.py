"""Checking the generated documents against Tableau's official workbook schema (XSD).

Tableau publishes an XML Schema per release (``tableau-document-schemas``, Apache-2.0). It imports
two namespaces without a location; :func:`load_schema` supplies both from ``tableau/xsd/``: the
``user:`` attribute group (free-form attributes) and the W3C ``xml:`` attributes.

A workbook that validates may still fail to open, but one that does not is likely refused by
Tableau Desktop. The schema has known gaps where workbooks Desktop itself saves fail; they are
listed in :data:`KNOWN_GAPS` with the reason, and :func:`schema_errors` sets them aside.

The schema declares only ``<workbook>`` as a document element, so a ``.tds`` (a ``<datasource>``
document) is validated inside a minimal workbook, where Desktop would embed it.

    python -m tableau check --schema ../shared/tableau-schema/twb_2026.1.0.xsd
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lxml import etree

XS = "{http://www.w3.org/2001/XMLSchema}"
_LOCAL = Path(__file__).parent / "xsd"
_IMPORTS = {"http://www.tableausoftware.com/xml/user": _LOCAL / "user.xsd",
            "http://www.w3.org/XML/1998/namespace": _LOCAL / "xml.xsd"}

# the schema's known gaps: name -> why an error there is not a defect of the document
KNOWN_GAPS: dict[str, str] = {
    "explain-data": "the schema requires <explain-data> at the end of <workbook>; Desktop writes it only when "
                    "Explain Data was configured, and the workbooks it saves fail here too",
}


@dataclass(frozen=True)
class SchemaError:
    """One validation error: line, the libxml2 message, and the known gap it falls under (or None)."""

    line: int
    message: str
    gap: str | None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" + (f" (known gap: {self.gap})" if self.gap else "")


@lru_cache(maxsize=4)
def load_schema(xsd: Path) -> etree.XMLSchema:
    """Tableau's schema at ``xsd`` with its two location-less imports resolved locally."""
    doc = etree.parse(str(xsd))
    for element in doc.getroot().iter(f"{XS}import"):
        local = _IMPORTS.get(element.get("namespace"))
        if local is not None and element.get("schemaLocation") is None:
            element.set("schemaLocation", local.resolve().as_uri())
    return etree.XMLSchema(doc)


def schema_version(xsd: Path) -> str:
    """The workbook ``version`` the schema describes: ``2026.1.0`` -> ``26.1``."""
    version = etree.parse(str(xsd)).getroot().get("version")
    year, release = version.split(".")[:2]
    return f"{int(year) % 100}.{release}"


def _as_workbook(root: etree._Element) -> etree._Element:
    """A ``.tds`` document inside the smallest workbook that carries it."""
    if root.tag == "workbook":
        return root
    if root.tag != "datasource":
        raise ValueError(f"not a Tableau document: <{root.tag}>")
    book = etree.Element("workbook", {"source-build": "0", "version": root.get("version", "")})
    etree.SubElement(book, "preferences")
    etree.SubElement(book, "datasources").append(copy.deepcopy(root))
    return book


def _with_explain_data(book: etree._Element) -> etree._Element:
    """A copy of ``book`` with the smallest ``<explain-data>`` the schema accepts at its end."""
    copy_ = copy.deepcopy(book)
    explain = etree.SubElement(copy_, "explain-data", {"enabled-for-viewer": "false",
                                                       "extreme-values-enabled-for-all": "false"})
    etree.SubElement(explain, "explanation-types")
    return copy_


def _messages(schema: etree.XMLSchema, root: etree._Element) -> list[tuple[int, str]]:
    schema.validate(etree.ElementTree(root))
    return [(e.line, e.message) for e in schema.error_log]


def schema_errors(document: Path, xsd: Path) -> list[SchemaError]:
    """Every error of ``document`` (``.twb`` or ``.tds``) against the schema ``xsd``, each marked
    with the known gap it belongs to (``gap`` is None for a real defect).

    The ``explain-data`` gap is proven, not guessed from the message: the error counts as the gap
    only when the same document with an ``<explain-data>`` appended no longer has it."""
    root = _as_workbook(etree.parse(str(document)).getroot())
    schema = load_schema(xsd.resolve())
    found = _messages(schema, root)
    closing = [m for m in found if m[1].startswith("Element 'workbook': Missing child element(s).")]
    gap_free = set()
    if closing and root.find("explain-data") is None:
        gap_free = {m for m in closing if m not in set(_messages(schema, _with_explain_data(root)))}
    return [SchemaError(line, message, "explain-data" if (line, message) in gap_free else None)
            for line, message in found]


def defects(document: Path, xsd: Path) -> list[SchemaError]:
    """The errors of ``document`` that are not known gaps of the schema."""
    return [e for e in schema_errors(document, xsd) if e.gap is None]
