"""``vocloud session``: start an active-learning session and follow it (state, labels, iterations, metrics).

``start`` prints the new session's id on stdout (so ``session=$(vocloud
session start ...)`` works; every command takes a session's id or its URL,
and the server's ids never start with ``-``, which would read as an option),
and ``status`` shows what an expert needs to decide what to do next: the
state, the label counts, each iteration's metrics and which stopping criteria
hold. ``wait`` blocks until an iteration ends (on its UWS job, with blocking
WAIT). Exit codes are those of `vocloud.client.errors`
(1: the iteration failed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_OK, VocloudError
from .jobs_cli import DEFAULT_WAIT_TIMEOUT_S, add_connection_arguments, client_from_args, guarded, print_json

if TYPE_CHECKING:
    from .service import VocloudClient

__all__ = ["SETTING_OPTIONS", "format_status", "register"]

SETTING_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("strategy", str, "query strategy: random, entropy, bald or diverse (server default diverse)"),
    ("batch_size", int, "spectra in each oracle batch (server default 100)"),
    ("seed_size", int, "spectra in the random first batch (default: the batch size)"),
    ("precision_sample", int, "random sample of predicted positives labelled to estimate precision (default 30)"),
    ("mc_samples", int, "MC-dropout forward passes (default 20)"),
    ("max_candidates", int, "most rows of an iteration's candidates table (default 1000)"),
    ("max_epochs", int, "upper bound on training epochs (default 60)"),
    ("seed", int, "seed of training and random choices (default 0)"),
    ("label_budget", int, "stop auto-advance once this many spectra are labelled"),
    ("uncertainty_threshold", float, "stop auto-advance once the mean BALD falls below this"),
    ("precision_target", float, "stop auto-advance once the precision's lower bound reaches this (0-1]"),
    ("title", str, "a title for people"),
)
"""Session parameters with their own option (``--batch-size`` for ``batch_size``): name, type, help."""

_SELECTION_OPTIONS = (
    ("pos", "pos", "RA,DEC", "centre of the selection, degrees (SSAP POS)"),
    ("size", "size", "DEG", "diameter of the selection, degrees (SSAP SIZE)"),
    ("band", "band", "LO/HI", "spectral range in metres (SSAP BAND), e.g. 6.5e-7/6.6e-7"),
    ("collection", "collection", "NAME", "only this collection"),
    ("target", "targetname", "NAME", "only this target"),
)
"""Options selecting the archive's spectra: option name, request parameter, metavar, help."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``session`` and its subcommands to the top-level parser."""
    session = commands.add_parser(
        "session",
        help="start and follow active-learning sessions",
        description="Active-learning sessions: start one over (a selection of) the archive, follow its"
        " iterations and metrics. Label its oracle batches with `vocloud label SESSION`. Exit status: 0 done,"
        " 1 an iteration failed, 2 bad input or refused by the server, 3 server unreachable, 4 timeout.",
    )
    sub = session.add_subparsers(dest="session_command", required=True, metavar="SUBCOMMAND")

    start = sub.add_parser(
        "start",
        help="start a session",
        description="Start a session and its first iteration; prints the session id. Every parameter the"
        " server takes can also be given as -s NAME=VALUE (e.g. -s n_points=400 for the preprocessing).",
    )
    start.add_argument("--classes", required=True, metavar="A,B,...", help="class names, comma-separated (2-50)")
    start.add_argument("--positive", metavar="CLASS", help="class whose precision is estimated (default the first)")
    for name, kind, text in SETTING_OPTIONS:
        start.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, metavar=name.upper(), help=text)
    start.add_argument(
        "--no-auto-advance",
        action="store_true",
        help="do not start the next iteration when the oracle batch is labelled",
    )
    for name, _, metavar, text in _SELECTION_OPTIONS:
        start.add_argument(f"--{name}", dest=f"select_{name}", metavar=metavar, help=text)
    start.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other session or preprocessing parameter (repeatable)",
    )
    start.add_argument("--labels", type=Path, metavar="FILE", help="initial labels (CSV id,label, JSON or VOTable)")
    start.add_argument("--wait", action="store_true", help="wait for the first iteration, then print the status")
    _timeout(start)
    add_connection_arguments(start)
    start.set_defaults(func=_start)

    status = sub.add_parser(
        "status",
        help="state, labels, iterations and metrics of a session",
        description="Print a session's state, label counts, each iteration with its metrics,"
        " and the stopping criteria that hold.",
    )
    status.add_argument("session", metavar="SESSION", help="session id or URL")
    add_connection_arguments(status)
    status.set_defaults(func=_status)

    listing = sub.add_parser("list", help="your sessions", description="List your sessions, oldest first.")
    add_connection_arguments(listing)
    listing.set_defaults(func=_list)

    wait = sub.add_parser(
        "wait",
        help="wait for an iteration to end",
        description="Wait until an iteration (default the latest) has ended, on its UWS job;"
        " then print the status. Exit 1 if it failed, 4 on timeout.",
    )
    wait.add_argument("session", metavar="SESSION", help="session id or URL")
    wait.add_argument("--iteration", type=int, metavar="N", help="the iteration (default the latest)")
    _timeout(wait)
    add_connection_arguments(wait)
    wait.set_defaults(func=_wait)

    advance = sub.add_parser(
        "next",
        help="start the next iteration now",
        description="Start the next iteration by hand (a session without auto-advance, or"
        " one that stopped or failed); refused while one runs.",
    )
    advance.add_argument("session", metavar="SESSION", help="session id or URL")
    add_connection_arguments(advance)
    advance.set_defaults(func=_next)


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait at most (default {DEFAULT_WAIT_TIMEOUT_S:g})",
    )


# -- commands ---------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The form fields of ``start`` beyond the classes.

    Raises
    ------
    VocloudError
        Raised if a ``-s`` is not NAME=VALUE, or names a parameter that also has its own option.
    """
    settings: dict[str, Any] = {name: getattr(args, name) for name, _, _ in SETTING_OPTIONS}
    if args.no_auto_advance:
        settings["auto_advance"] = False
    for name, parameter, _, _ in _SELECTION_OPTIONS:
        settings[parameter] = getattr(args, f"select_{name}")
    for item in args.set:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            msg = f"-s takes NAME=VALUE, not {item!r}"
            raise VocloudError(msg)
        if settings.get(name) is not None:
            msg = f"{name} is given twice (by its own option and by -s)"
            raise VocloudError(msg)
        settings[name] = value
    return {name: value for name, value in settings.items() if value is not None}


def _start(args: argparse.Namespace) -> int:
    def action() -> int:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        settings = _settings(args)
        if args.labels is not None and not args.labels.is_file():
            msg = f"no such file: {args.labels}"
            raise VocloudError(msg)
        with client_from_args(args) as client:
            document = client.start_session(
                classes, args.positive, labels=args.labels if args.labels is not None else (), **settings
            )
            print(f"session {document['url']} started", file=sys.stderr)
            if args.wait:
                client.wait_for_iteration(document["url"], number=1, timeout=args.timeout)
                document = client.session(document["url"])
        if args.json:
            print_json(document)
        elif args.wait:
            print(format_status(document))
        else:
            print(document["id"])
        return EXIT_OK

    return guarded("session start", action)


def _status(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            document = client.session(args.session)
        if args.json:
            print_json(document)
        else:
            print(format_status(document))
        return EXIT_OK

    return guarded("session status", action)


def _list(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            sessions = client.sessions()
        if args.json:
            print_json(sessions)
        else:
            for s in sessions:
                title = f"\t{s['title']}" if s.get("title") else ""
                print(f"{s['id']}\t{s['state']}\t{s['iterations']} iterations\t{s['labels']} labels\t{s['url']}{title}")
        return EXIT_OK

    return guarded("session list", action)


def _wait(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            return _wait_and_show(client, args)

    return guarded("session wait", action)


def _wait_and_show(client: VocloudClient, args: argparse.Namespace) -> int:
    client.wait_for_iteration(args.session, number=args.iteration, timeout=args.timeout)
    document = client.session(args.session)
    if args.json:
        print_json(document)
    else:
        print(format_status(document))
    return EXIT_OK


def _next(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            document = client.start_iteration(args.session)
        latest = document["iterations"][-1]
        if args.json:
            print_json(latest)
        else:
            print(f"iteration {latest['number']}\t{latest['job_url']}")
        return EXIT_OK

    return guarded("session next", action)


# -- the status text ----------------------------------------------------------------------------

_STATE_HINTS = {
    "running": "an iteration is queued or running",
    "waiting_for_labels": "label the oracle batch (vocloud label SESSION) to start the next iteration",
    "stopped": "a stopping criterion holds; `vocloud session next` still starts an iteration",
    "failed": "the latest iteration failed; `vocloud session next` starts another",
    "idle": "nothing runs or is awaited",
}


def _number(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _precision(value: Mapping[str, Any] | None) -> str:
    if value is None or not value["n"]:
        return "-"  # no sampled spectrum labelled yet: the interval is all of [0, 1]
    shown = _number(value.get("value"), ".2f")
    return f"{shown} [{value['low']:.2f}, {value['high']:.2f}] n={value['n']}"


def format_status(document: Mapping[str, Any]) -> str:
    """A session document as text: state, settings, labels, iterations with metrics, stopping sentences."""
    settings = document["settings"]
    labels = document["labels"]
    positive = settings["positive_class"]
    title = f" — {document['title']}" if document.get("title") else ""
    classes = ", ".join(f"{c} (positive)" if c == positive else c for c in settings["classes"])
    by_class = ", ".join(f"{name} {count}" for name, count in labels["by_class"].items())
    lines = [
        f"session {document['id']}{title}",
        f"  url:      {document['url']}",
        f"  state:    {document['state']}: {_STATE_HINTS.get(document['state'], '')}",
        f"  classes:  {classes}",
        f"  strategy: {settings['strategy']}, batch {settings['batch_size']},"
        f" precision sample {settings['precision_sample']}, auto-advance {'on' if document['auto_advance'] else 'off'}",
        f"  labels:   {labels['total']} ({by_class})",
    ]
    stopping: Sequence[str] = document.get("stopping", [])
    lines.append("  stopping: " + ("; ".join(stopping) if stopping else "no criterion holds"))
    iterations = document["iterations"]
    if not iterations:
        lines.append("no iterations")
        return "\n".join(lines)
    header = (
        f"{'#':>3}  {'status':<9}  {'labels':>6}  {'val.acc':>7}  {'macroF1':>7}  {'meanBALD':>8}  {'oracle':>9}"
        f"  precision of {positive}"
    )
    lines += ["iterations:", header]
    for it in iterations:
        outcome = it.get("outcome")
        if outcome is None:
            status = it["status"] if it["status"] != "running" else f"running ({it['phase']})"
            lines.append(f"{it['number']:>3}  {status:<9}" + (f"  {it['error']}" if it.get("error") else ""))
            continue
        oracle = f"{outcome['oracle_labelled']}/{outcome['oracle_size']}"
        cold = "  (cold start: random seed batch)" if outcome["cold_start"] else ""
        lines.append(
            f"{it['number']:>3}  {it['status']:<9}  {outcome['labels_used']:>6}  {_number(outcome['val_accuracy']):>7}"
            f"  {_number(outcome['val_macro_f1']):>7}  {_number(outcome['mean_bald'], '.4f'):>8}  {oracle:>9}"
            f"  {_precision(outcome.get('precision'))}{cold}"
        )
    return "\n".join(lines)
