"""Server-side commands of the ``vocloud`` CLI: ``serve``, ``user add`` and ``demo-data``.

Only argument definitions live at import time; the web stack is imported when
a command runs, so ``vocloud --help`` stays fast.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the server's subcommands to the top-level parser."""
    serve = commands.add_parser(
        "serve",
        help="run the vocloud server",
        description="Run the vocloud server (UWS jobs, VOSI) on embedded defaults: SQLite and a local process"
        " pool under the data directory. Every option can also be set as VOCLOUD_<NAME> in the environment.",
    )
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.add_argument("--data-dir", type=Path, help="state directory (default ~/.local/share/vocloud)")
    serve.add_argument("--config", type=Path, help="TOML file of settings")
    serve.add_argument("--auth", choices=["none", "basic"], help="authentication (default none: loopback only)")
    serve.add_argument("--workers", type=int, help="jobs that run at once (default 2)")
    serve.add_argument("--base-url", help="public URL when behind a proxy")
    serve.set_defaults(func=_serve)

    user = commands.add_parser("user", help="manage the users of --auth basic")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user or change a password")
    add.add_argument("name", help="user name")
    add.add_argument(
        "--password-file", type=Path, help="file whose first line is the password (default: ask on the terminal)"
    )
    add.add_argument("--data-dir", type=Path, help="state directory holding users.json")
    add.add_argument("--config", type=Path, help="TOML file of settings")
    add.set_defaults(func=_user_add)

    demo = commands.add_parser(
        "demo-data",
        help="write a synthetic archive of CCD700-like spectra with true labels",
        description="Write a synthetic demo archive shaped like Ondřejov CCD700 H-alpha spectra: DIR/spectra/*.fit"
        " (IRAF-style 1-D FITS), DIR/labels.csv (id,label: the true classes) and DIR/truth.csv (every drawn"
        " parameter). The same --seed and --count give byte-identical files.",
    )
    demo.add_argument("--count", type=_positive_int, default=3000, metavar="N", help="spectra to write (default 3000)")
    demo.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder to write into (created if missing)"
    )
    demo.add_argument("--seed", type=_non_negative_int, default=0, metavar="S", help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help="replace the spectra of an earlier demo archive in DIR")
    demo.set_defaults(func=_demo_data)


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse exits with 2 otherwise)."""
    value = _non_negative_int(text)
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    try:
        value = int(text)
    except ValueError as e:
        msg = f"not an integer: {text!r}"
        raise argparse.ArgumentTypeError(msg) from e
    if value < 0:
        msg = f"must be zero or positive, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _settings(args: argparse.Namespace, **extra: object):  # type: ignore[no-untyped-def]
    from .settings import Settings

    return Settings.load(config_file=args.config, data_dir=args.data_dir, **extra)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app

    settings = _settings(
        args, host=args.host, port=args.port, auth=args.auth, workers=args.workers, base_url=args.base_url
    )
    settings.check_exposure()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    print(f"vocloud serving http://{settings.host}:{settings.port}/ (data in {settings.data_dir})", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def _user_add(args: argparse.Namespace) -> int:
    from .auth import UserFile

    settings = _settings(args)
    if args.password_file is not None:
        lines = args.password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
    UserFile(settings.users_file).add(args.name, password)
    print(f"User {args.name} saved in {settings.users_file}", file=sys.stderr)
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from .spectra.demo import generate_demo_archive

    summary = generate_demo_archive(args.out, count=args.count, seed=args.seed, overwrite=args.overwrite)
    classes = ", ".join(f"{label} {n}" for label, n in summary.classes.items())
    print(
        f"Wrote {summary.count} demo spectra ({classes}) to {summary.out_dir} in {summary.seconds:.1f} s"
        f" ({summary.files_per_s:.0f} files/s); true labels in {summary.labels_path.name}",
        flush=True,
    )
    return 0
