"""``vocloud label SESSION``: label the oracle batch in the terminal, journalled, sent exactly once.

The command first delivers whatever the journal still holds for the session
(labels of a run that crashed or lost its connection), then shows each
candidate of the latest completed iteration's oracle batch that is labelled
neither in the journal nor on the server (`vocloud.client.labeller`), sending
it to SPLAT, Aladin and TOPCAT when a SAMP hub runs (``SAMP_HUB``, else
``~/.samp``; ``--no-samp`` to not try). Labels are flushed every ``--batch``
labels and at the end.

Exit status (`vocloud.client.errors`): 0 when everything labelled reached the
server, 2 when the server refused some labels (its message is printed) or the
command was wrong, 3 when the server could not be reached (the labels wait in
the journal: run the command again), 4 on a timeout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from .errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, VocloudError
from .jobs_cli import add_connection_arguments, client_from_args, guarded
from .journal import FlushReport, Journal, journal_path, session_url

if TYPE_CHECKING:
    from astropy.table import Row

    from .service import VocloudClient

__all__ = ["register", "run"]

_SESSIONS = "/sessions/"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``label`` to the top-level parser."""
    label = commands.add_parser(
        "label",
        help="label a session's oracle batch in the terminal",
        description="Show each candidate of the session's oracle batch (metadata, a text plot of the spectrum,"
        " and over SAMP in SPLAT/Aladin/TOPCAT) and take its class by one key: 1-9 the classes, u undo,"
        " s skip, q quit. Labels are journalled locally before they are sent and sent exactly once; a run"
        " that is quit or killed resumes where it stopped. Exit status: 0 all labels delivered, 2 some"
        " refused by the server (or bad arguments), 3 server unreachable (labels kept in the journal).",
    )
    label.add_argument("session", metavar="SESSION", help="session id or URL")
    label.add_argument("--labeller", metavar="NAME", help="your name, recorded with each label")
    label.add_argument("--no-samp", action="store_true", help="do not send candidates to VO tools over SAMP")
    label.add_argument("--batch", type=int, default=10, metavar="N", help="labels per post to the server (default 10)")
    label.add_argument(
        "--send-only", action="store_true", help="only send the labels the journal holds for the session, then exit"
    )
    add_connection_arguments(label, json_output=False)
    label.set_defaults(func=run)


def _split(session: str, server: str | None) -> tuple[str | None, str]:
    """(server, session id) from a session URL; (``server``, the id) from an id."""
    if session.startswith(("http://", "https://")) and _SESSIONS in urlsplit(session).path:
        base, _, rest = session.rstrip("/").rpartition(_SESSIONS)
        return base, unquote(rest)
    return server, session


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    server, session_id = _split(args.session, args.server)
    args.server = server
    if args.batch < 1:
        print("vocloud label: --batch must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    client = client_from_args(args)
    try:
        with Journal() as journal:
            return guarded("label", lambda: _label(args, client, journal, session_id))
    except OSError as e:
        print(f"vocloud label: cannot open the journal {journal_path()}: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.close()


def _status(reports: list[FlushReport]) -> int:
    """The exit status the flushes of a run call for: unsent labels outrank refused ones."""
    if any(r.left for r in reports):
        return EXIT_UNREACHABLE
    if any(r.refused for r in reports):
        return EXIT_USAGE
    return EXIT_OK


def _label(args: argparse.Namespace, client: VocloudClient, journal: Journal, session_id: str) -> int:
    from .labeller import (  # noqa: PLC0415 - astropy and numpy only when labelling
        KeyReader,
        Labeller,
        SpectrumFetcher,
        candidates_from_table,
        describe_flush,
    )

    url = session_url(client.url, quote(session_id, safe=""))
    reports: list[FlushReport] = []

    def flush() -> FlushReport:
        report = journal.flush(client, session_url=url)
        reports.append(report)
        return report

    # Labels of an earlier run that died or lost the server go first.
    journal.seal(url)
    for line in describe_flush(flush()):
        print(f"vocloud label: {line}", file=sys.stderr)
    if args.send_only:
        return _status(reports)

    document = client.session(session_id)
    classes = list(document["settings"]["classes"])
    iteration = client.latest_completed(session_id)
    oracle_url = iteration["results"].get("oracle")
    if oracle_url is None:
        print(f"vocloud label: iteration {iteration['number']} has no oracle batch: nothing to label", file=sys.stderr)
        return _status(reports)
    table = client.table(oracle_url)
    history = client.label_history(session_id)
    done = set(journal.labelled(url))
    if len(history):
        done |= {str(did) for did in history["id"]}
    if len(classes) > 9:
        print(f"vocloud label: only the first 9 of the {len(classes)} classes have keys", file=sys.stderr)
    show, samp = _viewer(args, client, oracle_url, f"vocloud-{session_id}-{iteration['number']}")
    try:
        with KeyReader() as keys:
            result = Labeller(
                candidates_from_table(table, classes),
                classes=classes,
                journal=journal,
                session_url=url,
                flush=flush,
                keys=keys,
                out=sys.stdout,
                labeller=args.labeller,
                show=show,
                spectrum=SpectrumFetcher(client.http, server=client.url),
                done=done,
                batch_size=args.batch,
            ).run()
    finally:
        if samp is not None:
            samp.disconnect()
    if result.finished and not result.skipped:
        print(f"The oracle batch of iteration {iteration['number']} is labelled.")
    return _status(reports)


def _viewer(
    args: argparse.Namespace, client: VocloudClient, table_url: str, table_id: str
) -> tuple[Callable[[Row, int], Any] | None, Any]:
    """The ``show`` hook sending candidates over SAMP, and the SAMP client to close; (None, None) without a hub."""
    if args.no_samp:
        return None, None
    from .samp import SampClient, SampError  # noqa: PLC0415 - pyvo.samp only when SAMP is used
    from .viewers import CandidateViewer  # noqa: PLC0415

    samp = SampClient()
    try:
        samp.connect()
    except SampError as e:
        print(f"vocloud label: no SAMP hub, candidates are shown here only ({e})", file=sys.stderr)
        return None, None
    viewer = CandidateViewer(samp, table_url, table_id, http=client.http, name="vocloud oracle batch")
    try:
        viewer.load_table()
    except VocloudError as e:
        print(f"vocloud label: the table viewers did not load the oracle batch: {e}", file=sys.stderr)
    return viewer.show, samp
