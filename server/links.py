"""The public URLs of an archived spectrum, in one place for SSAP, DataLink, SODA and results.

Identifiers are publisher DIDs (``ivo://...``), passed as the ``ID`` query
parameter as DataLink 1.1 and SODA 1.0 do.
"""

from __future__ import annotations

from urllib.parse import urlencode

from .votable import DATALINK_STANDARD_ID, ParamSpec, ServiceDescriptor

__all__ = [
    "DATALINK_PATH",
    "DATA_PATH",
    "PREVIEW_PATH",
    "SODA_PATH",
    "SSA_PATH",
    "data_url",
    "datalink_descriptor",
    "datalink_url",
    "preview_url",
]

SSA_PATH = "/ssa"
DATALINK_PATH = "/datalink"
SODA_PATH = "/soda"
DATA_PATH = "/data"
"""Serves the stored original file of a spectrum (``#this``, SSA ``accref``)."""
PREVIEW_PATH = "/preview"
"""Serves the PNG plot of a spectrum (``#preview``)."""


def _with_id(base: str, path: str, publisher_did: str) -> str:
    return f"{base}{path}?{urlencode({'ID': publisher_did})}"


def data_url(base: str, publisher_did: str) -> str:
    """URL of the original file."""
    return _with_id(base, DATA_PATH, publisher_did)


def datalink_url(base: str, publisher_did: str) -> str:
    """URL of the DataLink ``{links}`` document of one spectrum."""
    return _with_id(base, DATALINK_PATH, publisher_did)


def preview_url(base: str, publisher_did: str) -> str:
    """URL of the preview PNG."""
    return _with_id(base, PREVIEW_PATH, publisher_did)


def datalink_descriptor(base: str, *, id_ref: str) -> ServiceDescriptor:
    """The DataLink service descriptor of a table whose column ``id_ref`` holds publisher DIDs.

    Every table of spectra vocloud serves (SSA responses, active-learning
    candidates) carries it, so that a client reaches each row's file, preview
    and SODA cutout from the row itself (pyvo's ``getdatalink()``; DataLink 1.1
    section 4).
    """
    return ServiceDescriptor(
        id="datalink",
        standard_id=DATALINK_STANDARD_ID,
        access_url=base + DATALINK_PATH,
        description="DataLink links of each spectrum: the file, a preview, a SODA cutout and derived versions",
        input_params=(
            ParamSpec(name="ID", datatype="char", arraysize="*", ucd="meta.id;meta.main", ref=id_ref,
                      description="Publisher DID of the spectrum"),
        ),
    )  # fmt: skip
