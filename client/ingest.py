"""``vocloud ingest PATH_OR_URL...``: add local files, directories and URLs to a server's archive.

Files are uploaded (one ``file`` part each); directories are packed into one
tar bundle in a temporary file, so nothing is held in memory; URLs are handed
to the server, which fetches them. The job's report decides the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from lxml import etree

from .uws import JobFailedError, Upload, UWSClient, UWSError

__all__ = ["DEFAULT_SERVER", "register", "server_url"]

DEFAULT_SERVER = "http://127.0.0.1:8080"

EXIT_OK = 0
EXIT_SOME_FAILED = 1
"""Every source was reported, but at least one could not be archived."""
EXIT_ERROR = 2
"""Bad arguments, an unreachable server, or a job that did not complete."""


def server_url(given: str | None) -> str:
    """The server to talk to: ``--server``, else ``VOCLOUD_URL``, else the local default."""
    return (given or os.environ.get("VOCLOUD_URL") or DEFAULT_SERVER).rstrip("/")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``ingest`` to the top-level parser."""
    ingest = commands.add_parser(
        "ingest",
        help="add spectra files, directories or URLs to a server's archive",
        description="Upload spectrum files and directories (recursively) and hand http(s) URLs to the"
        " server's 'ingest' job; prints the per-source report. Exit status 0 when every source was"
        " archived (or already was), 1 when some failed, 2 on errors.",
    )
    ingest.add_argument("sources", nargs="+", metavar="PATH_OR_URL", help="files, directories or http(s) URLs")
    ingest.add_argument("--server", help=f"server URL (default: $VOCLOUD_URL or {DEFAULT_SERVER})")
    ingest.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job (default 3600)")
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
    urls = [s for s in args.sources if s.startswith(("http://", "https://"))]
    paths = [Path(s) for s in args.sources if s not in urls]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"vocloud ingest: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    if sum(p.is_dir() for p in paths) > 1:
        print("vocloud ingest: give at most one directory per call", file=sys.stderr)
        return EXIT_ERROR
    client = UWSClient()
    base = server_url(args.server)
    try:
        with _uploads(paths) as uploads:
            job = client.create(f"{base}/jobs/ingest", [("url", u) for u in urls], files=uploads, run=True)
        print(f"ingest job {job}", file=sys.stderr)
        summary = client.wait(job, timeout=args.timeout)
        report = client.result(summary)
    except JobFailedError as e:
        print(f"vocloud ingest: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (UWSError, TimeoutError, OSError) as e:
        print(f"vocloud ingest: {e}", file=sys.stderr)
        return EXIT_ERROR
    rows = [[td.text or "" for td in tr.iterfind("{*}TD")] for tr in etree.fromstring(report).iter("{*}TR")]
    for source, status, did, message in rows:
        print(f"{status}\t{did or '-'}\t{source}" + (f"\t{message}" if message else ""))
    counts = {s: sum(1 for r in rows if r[1] == s) for s in ("added", "duplicate", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK
