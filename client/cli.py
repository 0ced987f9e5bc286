"""The ``vocloud`` command: one entry point for the server's and the client's commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

__all__ = ["main"]

EXIT_USAGE = 2
"""Bad command line or settings (argparse uses 2 as well)."""


def _version() -> str:
    try:
        return version("vocloud")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    from vocloud.client import ingest, jobs_cli, label_cli, session_cli, vo_cli
    from vocloud.server import cli as server_cli

    parser = argparse.ArgumentParser(
        prog="vocloud",
        description="Virtual-Observatory-native machine learning on archives of 1-D spectra.",
    )
    parser.add_argument("--version", action="version", version=f"vocloud {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_cli.register(commands)
    ingest.register(commands)
    jobs_cli.register(commands)
    session_cli.register(commands)
    vo_cli.register(commands)
    label_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    from vocloud.client.errors import EXIT_INTERRUPTED
    from vocloud.server.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (SettingsError, ValueError, OSError) as e:
        print(f"vocloud: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vocloud: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
