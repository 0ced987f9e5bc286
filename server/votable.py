"""The one place vocloud writes VOTables (astropy), including DALI error documents."""

from __future__ import annotations

import io
import re
import warnings

from astropy.io.votable import from_table, parse
from astropy.io.votable.tree import Info, Resource, VOTableFile
from astropy.table import Table
from lxml import etree

__all__ = ["VOTABLE_MIME", "error_document", "parse_tolerant", "table_document"]

VOTABLE_MIME = "application/x-votable+xml"
"""Media type of VOTable documents (DALI 1.1 section 5.4)."""

VOTABLE_VERSION = "1.4"
"""Written version: the newest the Debian STILTS validators know."""


def error_document(message: str) -> bytes:
    """A DALI 1.1 error VOTable (section 5.2): a results resource whose INFO QUERY_STATUS is ERROR.

    pyvo reads it from a job's ``error`` resource (``DALQueryError``); for HTTP
    error statuses it only shows the status line, which is why the middleware
    repeats the message as the reason phrase.
    """
    document = VOTableFile(version=VOTABLE_VERSION)
    resource = Resource(type="results")
    status = Info(name="QUERY_STATUS", value="ERROR")
    status.content = message
    resource.infos.append(status)
    document.resources.append(resource)
    buffer = io.BytesIO()
    document.to_xml(buffer)
    return buffer.getvalue()


_ARRAYSIZE_RE = re.compile(r"^(\d+x)*(\d+\*?|\*)$")


def parse_tolerant(data: bytes) -> VOTableFile:
    """Parse a VOTable from a real service, repairing what astropy refuses.

    Real services publish invalid ``arraysize`` values (the Ondřejov SSA
    service writes ``arraysize="m"`` on a PARAM); such attributes are replaced
    by ``*`` before astropy reads the document, and astropy's warnings about
    other deviations are not fatal.

    Raises
    ------
    ValueError
        Raised if the bytes are not a VOTable at all.
    """
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        msg = f"Not an XML document: {e}"
        raise ValueError(msg) from e
    for element in root.iter("{*}FIELD", "{*}PARAM"):
        size = element.get("arraysize")
        if size is not None and not _ARRAYSIZE_RE.match(size):
            element.set("arraysize", "*")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parse(io.BytesIO(etree.tostring(root)), verify="ignore")
    except Exception as e:  # noqa: BLE001 - astropy raises many types for a broken VOTable
        msg = f"Not a readable VOTable: {e}"
        raise ValueError(msg) from e


def table_document(table: Table) -> bytes:
    """An astropy table as a VOTable 1.4 document (TABLEDATA)."""
    document = from_table(table)
    document.version = VOTABLE_VERSION
    buffer = io.BytesIO()
    document.to_xml(buffer)
    return buffer.getvalue()
