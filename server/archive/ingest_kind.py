"""Declaration of the ``ingest`` job kind (its runner lives in :mod:`.ingest_job`).

Kept apart from the runner so that the server, which only needs the
declaration, never imports the readers and network code that workers use.
"""

from __future__ import annotations

from ..kinds import JobKind, ParamSpec, ParamType, ResultSpec

__all__ = ["INGEST"]

INGEST = JobKind(
    name="ingest",
    title="Add spectra to the archive",
    description=(
        "Reads spectra (Ondřejov CCD700 and LAMOST FITS, DataLink FITS tables, VOTable spectra, 2-column"
        " text) from uploaded files or a zip/tar bundle, from http(s) URLs, from an uploaded VOTable such as"
        " an SSAP result saved from TOPCAT, from a remote SSA service, or from a server directory the"
        " operator allowed, and archives them. The same publisher DID twice is one spectrum; a file that"
        " cannot be read is reported and skipped. The result is a VOTable with one line per source."
    ),
    runner="vocloud.server.archive.ingest_job:run_ingest",
    parameters=(
        ParamSpec(name="file", type=ParamType.FILE, description="A spectrum file; repeat for more", multiple=True),
        ParamSpec(name="bundle", type=ParamType.FILE, description="A zip or tar(.gz) archive of spectrum files"),
        ParamSpec(name="url", type=ParamType.STRING, description="http(s) URL of a spectrum file", multiple=True),
        ParamSpec(
            name="votable",
            type=ParamType.FILE,
            description="A VOTable of spectra (e.g. an SSAP result) with access references or a DataLink descriptor",
        ),
        ParamSpec(name="ssa_url", type=ParamType.STRING, description="Base URL of a remote SSA service"),
        ParamSpec(
            name="ssa_query",
            type=ParamType.STRING,
            description="Query string for ssa_url, e.g. POS=10.68,41.27&SIZE=0.1&MAXREC=100",
        ),
        ParamSpec(
            name="directory",
            type=ParamType.STRING,
            description="A directory on the server, inside one of the operator's ingest_roots",
        ),
    ),
    results=(
        ResultSpec(
            name="result", mime_type="application/x-votable+xml", description="One line per source: what happened"
        ),
    ),
)
