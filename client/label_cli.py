"""``vocloud label SESSION``: label the oracle batch in the terminal and from TOPCAT, journalled, sent exactly once.

The command first delivers whatever the journal still holds for the session
(labels of a run that crashed or lost its connection), then shows each
candidate of the latest completed iteration's oracle batch that is labelled
neither in the journal nor on the server (`vocloud.client.labeller`), sending
it to SPLAT, Aladin and TOPCAT when a SAMP hub runs (``SAMP_HUB``, else
``~/.samp``; ``--no-samp`` to not try). Labels are flushed every ``--batch``
labels and at the end.

With a hub, the command also listens to TOPCAT (issue 5, routes b and c):

* rows the expert selects and broadcasts (``table.select.rowList`` on the oracle
  table) are labelled with the class being collected: ``--collect CLASS``, or
  ``c`` and the class number in the labeller;
* a row highlighted in TOPCAT (``table.highlight.row``) comes up in the
  labeller, and in SPLAT and Aladin; the next key labels it;
* a table broadcast back (``table.load.votable``), e.g. the oracle batch with a
  ``label`` column typed in TOPCAT, gives its filled-in labels.

SAMP messages arrive on pyvo's receiver threads and are handed to the
labeller's thread through a queue (`vocloud.client.samp.SampClient.event_queue`),
which owns the journal: each label is journalled before it is sent, and sent once.

Exit status (`vocloud.client.errors`): 0 when everything labelled reached the
server, 2 when the server refused some labels (its message is printed) or the
command was wrong, 3 when the server could not be reached (the labels wait in
the journal: run the command again) or ``--collect`` found no SAMP hub, 4 on a
timeout, 130 on Ctrl-C (what was journalled is kept).
"""

from __future__ import annotations

import argparse
import queue
import sys
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from .errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, VocloudError
from .jobs_cli import add_connection_arguments, client_from_args, guarded
from .journal import FlushReport, Journal, journal_path, session_url

if TYPE_CHECKING:
    from astropy.table import Row, Table

    from .service import VocloudClient

__all__ = ["register", "run"]

_SESSIONS = "/sessions/"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``label`` to the top-level parser."""
    label = commands.add_parser(
        "label",
        help="label a session's oracle batch in the terminal and from TOPCAT",
        description="Show each candidate of the session's oracle batch (metadata, a text plot of the spectrum,"
        " and over SAMP in SPLAT/Aladin/TOPCAT) and take its class by one key: 1-9 the classes, u undo,"
        " s skip, c collect, q quit. With a SAMP hub, rows selected in TOPCAT are labelled with the class"
        " being collected (--collect, or c and a class number), a row highlighted in TOPCAT comes up here,"
        " and a table sent back from TOPCAT gives the labels of its label column. Labels are journalled"
        " locally before they are sent and sent exactly once; a run that is quit or killed resumes where it"
        " stopped. Exit status: 0 all labels delivered, 2 some refused by the server (or bad arguments),"
        " 3 server unreachable (labels kept in the journal) or no SAMP hub for --collect, 130 Ctrl-C.",
    )
    label.add_argument("session", metavar="SESSION", help="session id or URL")
    label.add_argument("--labeller", metavar="NAME", help="your name, recorded with each label")
    label.add_argument("--no-samp", action="store_true", help="do not send candidates to VO tools over SAMP")
    label.add_argument(
        "--collect",
        metavar="CLASS",
        help="label CLASS the rows you select and broadcast in TOPCAT (needs a SAMP hub; in the labeller,"
        " c and a class number change the class, c 0 stops)",
    )
    label.add_argument(
        "--label-column",
        default="label",
        metavar="NAME",
        help="column holding the classes in a table sent back from TOPCAT (default: label)",
    )
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
    if args.collect is not None and args.no_samp:
        print("vocloud label: --collect hears TOPCAT over SAMP: it cannot go with --no-samp", file=sys.stderr)
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
        TableRef,
        candidates_from_table,
        describe_flush,
    )
    from .labels import from_votable  # noqa: PLC0415

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
    if args.collect is not None and args.collect not in classes:
        msg = f"cannot collect {args.collect!r}: the session's classes are {', '.join(classes)}"
        raise VocloudError(msg)
    iteration = client.latest_completed(session_id)
    oracle_url = iteration["results"].get("oracle")
    if oracle_url is None:
        print(f"vocloud label: iteration {iteration['number']} has no oracle batch: nothing to label", file=sys.stderr)
        return _status(reports)
    table = client.table(oracle_url)
    known = _latest_labels(client.label_history(session_id))
    known.update(journal.labelled(url))
    if len(classes) > 9:
        print(f"vocloud label: only the first 9 of the {len(classes)} classes have keys", file=sys.stderr)
    table_id = f"vocloud-{session_id}-{iteration['number']}"
    with _Desk(args, client, oracle_url, table_id) as desk, KeyReader() as keys:
        result = Labeller(
            candidates_from_table(table, classes),
            classes=classes,
            journal=journal,
            session_url=url,
            flush=flush,
            keys=keys,
            out=sys.stdout,
            labeller=args.labeller,
            show=desk.show,
            highlighted=desk.highlighted,
            spectrum=SpectrumFetcher(client.http, server=client.url),
            known=known,
            batch_size=args.batch,
            inbox=desk.inbox,
            table=TableRef(table_id, oracle_url),
            collect=args.collect,
            read_labels=lambda source: from_votable(
                source, label_column=args.label_column, classes=classes, labeller=args.labeller
            ),
            peer_name=desk.peer_name,
        ).run()
    if result.finished and not result.skipped:
        print(f"The oracle batch of iteration {iteration['number']} is labelled.")
    return _status(reports)


def _latest_labels(history: Table) -> dict[str, str]:
    """Each spectrum's latest label in the server's history (oldest first: later rows replace earlier ones)."""
    if not len(history):
        return {}
    return {str(did): str(label) for did, label in zip(history["id"], history["label"], strict=True)}


class _Desk:
    """The VO tools on the expert's desk, over SAMP: where candidates are shown and TOPCAT's messages come from.

    Without a hub (or with ``--no-samp``) every hook is None and the labeller
    works in the terminal alone; with ``--collect`` a missing hub is an error,
    since the expert asked for what only a hub gives.
    """

    def __init__(self, args: argparse.Namespace, client: VocloudClient, table_url: str, table_id: str) -> None:
        self.show: Callable[[Row, int], Any] | None = None
        self.highlighted: Callable[[Row, int], Any] | None = None
        self.inbox: queue.Queue[Any] | None = None
        self.peer_name: Callable[[str], str] | None = None
        self._samp: Any = None
        if args.no_samp:
            return
        from .samp import SampClient, SampError  # noqa: PLC0415 - pyvo.samp only when SAMP is used
        from .viewers import CandidateViewer  # noqa: PLC0415

        samp = SampClient()
        try:
            samp.connect()
        except SampError as e:
            if args.collect is not None:
                msg = f"--collect needs a SAMP hub (start TOPCAT first): {e}"
                raise type(e)(msg) from e
            print(f"vocloud label: no SAMP hub, candidates are shown here only ({e})", file=sys.stderr)
            return
        self._samp = samp
        # Subscribed before the table goes out: TOPCAT may answer a load with a selection at once.
        self.inbox = samp.event_queue()
        viewer = CandidateViewer(samp, table_url, table_id, http=client.http, name="vocloud oracle batch")
        try:
            viewer.load_table()
        except VocloudError as e:
            print(f"vocloud label: the table viewers did not load the oracle batch: {e}", file=sys.stderr)
        self.show = viewer.show
        self.highlighted = partial(viewer.show, highlight=False)
        names: dict[str, str] = {}

        def peer_name(client_id: str) -> str:
            if client_id not in names:
                try:
                    names.update(samp.clients())
                except SampError:
                    return client_id
            return names.get(client_id, client_id)

        self.peer_name = peer_name

    def __enter__(self) -> _Desk:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._samp is not None:
            self._samp.disconnect()
