"""``vocloud ingest PATH_OR_URL...``: add local files, directories and URLs to a server's archive.

Files are uploaded (one ``file`` part each); directories are packed into one
tar bundle in a temporary file, so nothing is held in memory; URLs are handed
to the server, which fetches them. The job's report decides the exit status.

Exit status: the client's shared codes (`vocloud.client.errors`), through the
same error handling as every other command (`vocloud.client.jobs_cli.guarded`):
0 every source archived (or already there), 1 some source failed or the job
ended in ERROR, 2 bad arguments or a refusal, 3 server unreachable, 4 timeout.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from lxml import etree

from .errors import EXIT_JOB_FAILED, EXIT_OK, VocloudError
from .jobs_cli import DEFAULT_SERVER, add_connection_arguments, client_from_args, guarded, server_url
from .uws import Upload

__all__ = ["DEFAULT_SERVER", "EXIT_SOME_FAILED", "register", "server_url"]

EXIT_SOME_FAILED = EXIT_JOB_FAILED
"""Every source was reported, but at least one could not be archived: the job did not do all it was asked."""

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``ingest`` to the top-level parser."""
    ingest = commands.add_parser(
        "ingest",
        help="add spectra files, directories or URLs to a server's archive",
        description="Upload spectrum files and directories (recursively) and hand http(s) URLs to the"
        " server's 'ingest' job; prints the per-source report. Exit status: 0 every source archived (or"
        " already there), 1 some failed (or the job did), 2 bad arguments or refused by the server,"
        " 3 server unreachable, 4 timeout.",
    )
    ingest.add_argument("sources", nargs="+", metavar="PATH_OR_URL", help="files, directories or http(s) URLs")
    ingest.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job (default 3600)")
    add_connection_arguments(ingest, json_output=False)
    ingest.set_defaults(func=run)


@contextmanager
def _uploads(paths: Sequence[Path]) -> Iterator[list[Upload]]:
    with ExitStack() as stack:
        uploads: list[Upload] = []
        for path in paths:
            if path.is_dir():
                handle = stack.enter_context(tempfile.TemporaryFile(suffix=".tar"))
                with tarfile.open(fileobj=handle, mode="w") as bundle:
                    bundle.add(path, arcname=path.name)
                handle.seek(0)
                uploads.append(("bundle", (f"{path.name}.tar", handle)))
            else:
                file: IO[bytes] = stack.enter_context(path.open("rb"))
                uploads.append(("file", (path.name, file)))
        yield uploads


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    return guarded("ingest", lambda: _ingest(args))


def _ingest(args: argparse.Namespace) -> int:
    urls = [s for s in args.sources if s.startswith(("http://", "https://"))]
    paths = [Path(s) for s in args.sources if s not in urls]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        msg = f"no such file or directory: {', '.join(missing)}"
        raise VocloudError(msg)
    if sum(p.is_dir() for p in paths) > 1:
        msg = "give at most one directory per call"
        raise VocloudError(msg)
    with client_from_args(args) as client:
        with _uploads(paths) as uploads:
            job = client.uws.create(client.job_list_url("ingest"), [("url", u) for u in urls], files=uploads, run=True)
        print(f"ingest job {job}", file=sys.stderr)
        summary = client.uws.wait(job, timeout=args.timeout)
        report = client.uws.result(summary)
    try:
        document = etree.fromstring(report, _PARSER)
    except etree.XMLSyntaxError as e:
        msg = f"the ingest report of {job} is not a VOTable: {e}"
        raise VocloudError(msg, url=job) from e
    rows = [[td.text or "" for td in tr.iterfind("{*}TD")] for tr in document.iter("{*}TR")]
    for source, status, did, message in rows:
        print(f"{status}\t{did or '-'}\t{source}" + (f"\t{message}" if message else ""))
    counts = {s: sum(1 for r in rows if r[1] == s) for s in ("added", "duplicate", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK
