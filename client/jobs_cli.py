"""``vocloud jobs``: list, describe, submit, wait for, fetch, abort and delete UWS jobs of any kind.

A job is named by its URL or by ``KIND/ID`` on the ``--server``; ``submit``
prints the URL, so that a script can hand it to ``wait`` and ``results``.
Exit codes are those of `vocloud.client.errors` (0 done, 1 the job ended in
ERROR or ABORTED, 2 bad input or refused by the server, 3 server unreachable,
4 timeout).

The connection options and the error handling live here as public helpers
(`add_connection_arguments`, `client_from_args`, `guarded`) for the other
client commands to share, so every command reads ``--server``, ``--user`` and
the environment the same way and ends with the same exit codes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_JOB_FAILED, EXIT_OK, AuthenticationError, VocloudError, exit_code_for

if TYPE_CHECKING:
    from .service import JobKindInfo, VocloudClient
    from .uws import JobSummary

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_WAIT_TIMEOUT_S",
    "add_connection_arguments",
    "client_from_args",
    "guarded",
    "print_json",
    "register",
    "server_url",
]

DEFAULT_SERVER = "http://127.0.0.1:8080"
"""The server of ``vocloud serve`` with its defaults, when neither ``--server`` nor ``VOCLOUD_URL`` names one."""

DEFAULT_WAIT_TIMEOUT_S = 3600.0
"""Default ``--timeout`` of commands that wait: long enough for real jobs, short of hanging a script forever."""


# -- shared by the client's commands ----------------------------------------------------------


def server_url(given: str | None) -> str:
    """The server to talk to: ``--server``, else ``VOCLOUD_URL``, else `DEFAULT_SERVER`."""
    return (given or os.environ.get("VOCLOUD_URL") or DEFAULT_SERVER).rstrip("/")


def add_connection_arguments(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    """Add ``--server``, ``--user`` and (optionally) ``--json`` to a command."""
    parser.add_argument("--server", metavar="URL", help=f"server URL (default: $VOCLOUD_URL or {DEFAULT_SERVER})")
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="user name for a server with --auth basic (default $VOCLOUD_USER); the password is"
        " $VOCLOUD_PASSWORD, else asked on the terminal when the server wants it",
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _prompt(user: str) -> Callable[[], str | None]:
    def ask() -> str | None:
        if not sys.stdin.isatty():
            return None  # no one to ask: the 401 is reported with a hint instead
        return getpass.getpass(f"Password for {user}: ")

    return ask


def client_from_args(args: argparse.Namespace) -> VocloudClient:
    """The `VocloudClient` a command's ``--server`` and ``--user`` name."""
    from .service import VocloudClient  # noqa: PLC0415 - keeps `vocloud --help` free of astropy's import time

    user = getattr(args, "user", None)
    prompt = _prompt(user) if user else None
    return VocloudClient(server_url(getattr(args, "server", None)), user=user, password_prompt=prompt)


def guarded(command: str, action: Callable[[], int]) -> int:
    """Run a command's action; report an expected failure in one line and return its exit code.

    The service's own message is shown (with the HTTP status when there was
    one); a 401 also says how to give credentials. Nothing expected ends in a
    traceback.
    """
    try:
        return action()
    except BrokenPipeError:
        # The reader went away (`vocloud jobs list | head`): what it wanted was written; end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except VocloudError as e:
        status = f" (HTTP {e.status})" if e.status is not None else ""
        hint = (
            "; give --user NAME (password in $VOCLOUD_PASSWORD or typed when asked)"
            if isinstance(e, AuthenticationError)
            else ""
        )
        print(f"vocloud {command}: {e}{status}{hint}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a local file that cannot be read or written
        print(f"vocloud {command}: {e}", file=sys.stderr)
        return exit_code_for(e)


def print_json(value: Any) -> None:
    """Print a JSON document on stdout (indented, so that people can read it too)."""
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` options as pairs.

    Raises
    ------
    VocloudError
        Raised if one has no ``=`` or no name (a usage error, exit status 2).
    """
    pairs = []
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            msg = f"{option} takes NAME=VALUE, not {value!r}"
            raise VocloudError(msg)
        pairs.append((name.strip(), text))
    return pairs


# -- registration -----------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``jobs`` (kinds, list, submit, run, wait, show, results, abort, delete) to the top-level parser."""
    jobs = commands.add_parser(
        "jobs",
        help="list, submit, wait for and fetch UWS jobs of any kind",
        description="Drive the server's UWS 1.1 jobs. A JOB is its URL or KIND/ID. Exit status: 0 done,"
        " 1 the job ended in ERROR or ABORTED, 2 bad input or refused by the server, 3 server unreachable,"
        " 4 timeout.",
    )
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="SUBCOMMAND")

    kinds = sub.add_parser(
        "kinds",
        help="the job kinds and their parameters",
        description="List the job kinds"
        " the server offers; with KIND, its parameters (type, unit, default, range) and results.",
    )
    kinds.add_argument("kind", nargs="?", metavar="KIND", help="describe this kind")
    add_connection_arguments(kinds)
    kinds.set_defaults(func=_kinds)

    listing = sub.add_parser(
        "list",
        help="list jobs",
        description="List jobs (one line each: KIND/ID, phase,"
        " creation time, URL) of one kind, or of every kind the server offers.",
    )
    listing.add_argument("kind", nargs="?", metavar="KIND", help="only jobs of this kind")
    listing.add_argument(
        "--phase",
        action="append",
        default=[],
        metavar="PHASE",
        help="only jobs in this phase (repeatable), e.g. EXECUTING",
    )
    listing.add_argument("--last", type=int, metavar="N", help="only the N most recent jobs (of each kind)")
    add_connection_arguments(listing)
    listing.set_defaults(func=_list)

    submit = sub.add_parser(
        "submit",
        help="create a job",
        description="Create a job of KIND with parameters"
        " -p NAME=VALUE (repeat a name for a multiple parameter) and files --file NAME=PATH;"
        " prints the job URL. --run starts it, --wait also waits for its end.",
    )
    submit.add_argument("kind", metavar="KIND", help="the job kind (see `vocloud jobs kinds`)")
    submit.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter")
    submit.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="a file parameter")
    submit.add_argument("--run", action="store_true", help="start the job at once")
    submit.add_argument("--wait", action="store_true", help="start it and wait for its end (implies --run)")
    _timeout_argument(submit)
    add_connection_arguments(submit)
    submit.set_defaults(func=_submit)

    wait = sub.add_parser(
        "wait",
        help="wait for a job to end",
        description="Wait (blocking UWS WAIT) until the"
        " job ends; prints its phase and results. Exit 1 if it ended in ERROR or ABORTED (its"
        " error message is printed), 4 on timeout.",
    )
    wait.add_argument("job", metavar="JOB", help="job URL or KIND/ID")
    _timeout_argument(wait)
    add_connection_arguments(wait)
    wait.set_defaults(func=_wait)

    show = sub.add_parser(
        "show",
        help="show a job now",
        description="Print a job's phase, times, parameters, results and error message without waiting.",
    )
    show.add_argument("job", metavar="JOB", help="job URL or KIND/ID")
    add_connection_arguments(show)
    show.set_defaults(func=_show)

    results = sub.add_parser(
        "results",
        help="list or download a job's results",
        description="Without NAME,"
        " list the job's results (name and URL); with NAME, download that result to -o FILE"
        " (or stdout).",
    )
    results.add_argument("job", metavar="JOB", help="job URL or KIND/ID")
    results.add_argument("name", nargs="?", metavar="NAME", help="the result to download")
    results.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the result here")
    add_connection_arguments(results)
    results.set_defaults(func=_results)

    start = sub.add_parser("run", help="start pending jobs", description="Start PENDING jobs (PHASE=RUN).")
    start.add_argument("jobs", nargs="+", metavar="JOB", help="job URL or KIND/ID")
    add_connection_arguments(start, json_output=False)
    start.set_defaults(func=_run)

    abort = sub.add_parser("abort", help="abort jobs", description="Abort running or queued jobs.")
    abort.add_argument("jobs", nargs="+", metavar="JOB", help="job URL or KIND/ID")
    add_connection_arguments(abort, json_output=False)
    abort.set_defaults(func=_abort)

    delete = sub.add_parser("delete", help="delete jobs", description="Destroy jobs and their results.")
    delete.add_argument("jobs", nargs="+", metavar="JOB", help="job URL or KIND/ID")
    add_connection_arguments(delete, json_output=False)
    delete.set_defaults(func=_delete)


def _timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait at most (default {DEFAULT_WAIT_TIMEOUT_S:g}); the job goes on after it",
    )


# -- commands ---------------------------------------------------------------------------------


def _kinds(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            if args.kind is None:
                kinds = client.kinds()
                if args.json:
                    print_json([dict(k.raw) for k in kinds])
                else:
                    for kind in kinds:
                        print(f"{kind.name}\t{kind.title}")
                return EXIT_OK
            kind = client.kind(args.kind)
        if args.json:
            print_json(dict(kind.raw))
        else:
            _print_kind(kind)
        return EXIT_OK

    return guarded("jobs kinds", action)


def _print_kind(kind: JobKindInfo) -> None:
    print(f"{kind.name}: {kind.title}")
    print(f"  job list: {kind.url}")
    if kind.description:
        print(f"  {kind.description}")
    print("parameters:")
    for p in kind.parameters:
        traits = [p.type + ("[]" if p.multiple else "")]
        if p.required:
            traits.append("required")
        if p.unit:
            traits.append(f"unit {p.unit}")
        if p.default is not None:
            traits.append(f"default {p.default}")
        if p.minimum is not None or p.maximum is not None:
            low = "" if p.minimum is None else f"{p.minimum:g}"
            high = "" if p.maximum is None else f"{p.maximum:g}"
            traits.append(f"range [{low}, {high}]")
        if p.choices:
            traits.append("one of " + "|".join(p.choices))
        print(f"  {p.name} ({', '.join(traits)}): {p.description}")
    if not kind.parameters:
        print("  (none)")
    print("results:")
    for name, mime in kind.results:
        print(f"  {name} ({mime})")
    if not kind.results:
        print("  (none declared)")


def _list(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            names = [args.kind] if args.kind else [k.name for k in client.kinds()]
            rows = [
                (name, ref)
                for name in names
                for ref in client.uws.jobs(client.job_list_url(name), phases=args.phase, last=args.last)
            ]
        if args.json:
            print_json([{"kind": name, **vars(ref)} for name, ref in rows])
        else:
            for name, ref in rows:
                print(f"{name}/{ref.job_id}\t{ref.phase}\t{ref.creation_time or '-'}\t{ref.url}")
        return EXIT_OK

    return guarded("jobs list", action)


def _submit(args: argparse.Namespace) -> int:
    def action() -> int:
        params = _pairs(args.param, "-p")
        files = [(name, Path(path)) for name, path in _pairs(args.file, "--file")]
        missing = [str(path) for _, path in files if not path.is_file()]
        if missing:
            msg = f"no such file: {', '.join(missing)}"
            raise VocloudError(msg)
        with client_from_args(args) as client:
            url = client.submit(args.kind, params, files=files, run=args.run or args.wait)
            if not args.wait:
                if args.json:
                    print_json(client.uws.job(url).to_dict())
                else:
                    print(url)
                return EXIT_OK
            print(f"job {url}", file=sys.stderr)
            return _finish(client, url, args, "jobs submit")

    return guarded("jobs submit", action)


def _wait(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            url = client.job_url(args.job)
            phase = client.uws.job(url).phase
            if phase in ("PENDING", "HELD"):
                # Nothing would end the wait but someone else starting the job: say so instead of hanging.
                msg = f"job {url} is {phase}: start it first (vocloud jobs run JOB)"
                raise VocloudError(msg)
            return _finish(client, url, args, "jobs wait")

    return guarded("jobs wait", action)


def _finish(client: VocloudClient, url: str, args: argparse.Namespace, command: str) -> int:
    """Wait for the job, print how it ended; the exit status says whether it completed."""
    from .progress import ProgressBar  # noqa: PLC0415 - only commands that wait draw one

    with ProgressBar(url.rsplit("/", 1)[-1]) as bar:

        def show(summary: JobSummary) -> None:
            fraction, text = summary.progress or (None, "")
            bar.update(fraction, f"{summary.phase} {text}".strip(), force=True)

        summary = client.uws.wait(url, timeout=args.timeout, on_change=show)
    _print_summary(summary, as_json=args.json)
    if summary.phase != "COMPLETED":
        kind = f" ({summary.error_type})" if summary.error_type else ""
        reason = summary.error_message or "no message"
        print(f"vocloud {command}: job {summary.job_id} ended {summary.phase}{kind}: {reason}", file=sys.stderr)
        return EXIT_JOB_FAILED
    return EXIT_OK


def _print_summary(summary: JobSummary, *, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_dict())
        return
    print(f"{summary.phase}\t{summary.url}")
    for name, href in summary.results.items():
        print(f"result\t{name}\t{href}")


def _show(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            summary = client.uws.job(client.job_url(args.job))
        if args.json:
            print_json(summary.to_dict())
            return EXIT_OK
        print(f"job {summary.job_id}: {summary.phase}")
        for label, value in (
            ("url", summary.url),
            ("owner", summary.owner),
            ("run id", summary.run_id),
            ("created", summary.creation_time),
            ("started", summary.start_time),
            ("ended", summary.end_time),
            ("destruction", summary.destruction),
        ):
            if value:
                print(f"  {label}: {value}")
        if summary.progress is not None:
            print(f"  progress: {summary.progress[0]:.0%} {summary.progress[1]}")
        for name, value in summary.parameters:
            print(f"  parameter {name} = {value}")
        for name, href in summary.results.items():
            print(f"  result {name}: {href}")
        if summary.error_message:
            print(f"  error ({summary.error_type or 'unknown'}): {summary.error_message}")
        return EXIT_OK

    return guarded("jobs show", action)


def _results(args: argparse.Namespace) -> int:
    def action() -> int:
        with client_from_args(args) as client:
            summary = client.uws.job(client.job_url(args.job))
            if args.name is None:
                if args.output is not None:
                    msg = "-o needs the NAME of the result to download"
                    raise VocloudError(msg)
                if args.json:
                    print_json(summary.results)
                else:
                    for name, href in summary.results.items():
                        print(f"{name}\t{href}")
                return EXIT_OK
            client.uws.result_url(summary, args.name)  # refuse early, before any file is touched
            if args.output is None or str(args.output) == "-":
                with _stdout_bytes() as out:
                    out.write(client.uws.result(summary, args.name))
                return EXIT_OK
            from .progress import ProgressBar  # noqa: PLC0415 - only downloads draw one

            with ProgressBar(f"{args.name} → {args.output}") as bar:
                client.uws.download(summary, args.name, args.output, on_chunk=bar.bytes)
            print(f"{args.output}", file=sys.stderr)
            return EXIT_OK

    return guarded("jobs results", action)


@contextmanager
def _stdout_bytes() -> Iterator[Any]:
    sys.stdout.flush()
    yield sys.stdout.buffer
    sys.stdout.buffer.flush()


def _run(args: argparse.Namespace) -> int:
    return _each(args, "jobs run", lambda client, url: client.uws.run(url), "started")


def _abort(args: argparse.Namespace) -> int:
    return _each(args, "jobs abort", lambda client, url: client.uws.abort(url), "aborted")


def _delete(args: argparse.Namespace) -> int:
    return _each(args, "jobs delete", lambda client, url: client.uws.delete(url), "deleted")


def _each(args: argparse.Namespace, command: str, act: Callable[[VocloudClient, str], None], done: str) -> int:
    """Apply an action to every job named; the status is the worst of theirs (one failure stops nothing)."""
    status = EXIT_OK
    with client_from_args(args) as client:
        for job in args.jobs:

            def one(job: str = job) -> int:
                url = client.job_url(job)
                act(client, url)
                print(f"{done}\t{url}")
                return EXIT_OK

            status = max(status, guarded(command, one))
    return status
