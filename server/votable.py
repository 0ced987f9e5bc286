"""The one place vocloud writes VOTables (astropy), including DALI error documents."""

from __future__ import annotations

import io

from astropy.io.votable.tree import Info, Resource, VOTableFile

__all__ = ["VOTABLE_MIME", "error_document"]

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
