"""``vocloud ssa search`` and ``vocloud cutout``: the VO data access of :mod:`vocloud.client.vo` from the shell.

``ssa search`` queries any SSA service (by default the vocloud server's own
``/ssa``) and prints the rows as a short table of the columns every SSA service
has (found by their SSA utypes, so that DaCHS, vocloud and older services look
alike), as CSV of all columns, or as the service's VOTable byte for byte (for
TOPCAT, with its DataLink descriptors intact).

``cutout`` writes a SODA cutout of one spectrum around a line (H-alpha ± 50 Å by
default) or over a band, looked up through the server's SSA service (which says
whether the spectrum's wavelengths are in air or vacuum) and its DataLink
document; a cutout fetched before comes from the local cache.

Wavelengths on the command line are in Å, as astronomers quote them; the
protocols' metres stay inside. Exit codes are those of
:mod:`vocloud.client.errors`: 0 done, 2 bad input or refused by the service, 3
service unreachable, 4 timeout.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_OK, VocloudError, exit_code_for
from .jobs_cli import DEFAULT_SERVER, server_url

if TYPE_CHECKING:
    from astropy.table import Table

    from .service import VocloudClient

__all__ = ["SUMMARY_COLUMNS", "register", "run_cutout", "run_ssa_search", "summary_table"]

FORMATS = ("table", "csv", "votable")

SUMMARY_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("id", ("curation.publisherdid", "dataid.creatordid", "access.reference")),
    ("target", ("target.name",)),
    ("ra", ("target.pos", "char.spatialaxis.coverage.location.value")),
    ("dec", ("target.pos", "char.spatialaxis.coverage.location.value")),
    ("date_obs", ("char.timeaxis.coverage.location.value",)),
    ("lambda_min", ("char.spectralaxis.coverage.bounds.start",)),
    ("lambda_max", ("char.spectralaxis.coverage.bounds.stop",)),
    ("format", ("access.format",)),
)
"""The columns of ``--format table`` and the SSA utypes (lower case, without prefix) they come from, best first."""

_SERVER_HELP = "server URL (default: $VOCLOUD_URL or " + DEFAULT_SERVER + ")"


def _pair(text: str, *, what: str) -> tuple[float, float]:
    try:
        first, second = (float(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        msg = f"{what} is two numbers separated by a comma, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return first, second


def _position(text: str) -> tuple[float, float]:
    ra, dec = _pair(text, what="a position (RA,DEC in degrees)")
    if not (0.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0):
        raise argparse.ArgumentTypeError(f"RA must be in 0..360 and Dec in -90..90 degrees, not {text!r}")
    return ra, dec


def _band(text: str) -> tuple[float, float]:
    low, high = _pair(text, what="a band (LO,HI in Å)")
    if not 0.0 < low < high:
        raise argparse.ArgumentTypeError(f"a band is LO,HI in Å with 0 < LO < HI, not {text!r}")
    return low, high


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {text!r}")
    return value


def _time_range(text: str) -> tuple[str, str]:
    start, sep, end = text.partition("/")
    if not sep or not start or not end:
        raise argparse.ArgumentTypeError(f"a time range is START/END in ISO 8601, not {text!r}")
    return start, end


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help=_SERVER_HELP)
    parser.add_argument(
        "--user", help="user name for a server that asks for credentials (password: $VOCLOUD_PASSWORD or a prompt)"
    )
    parser.add_argument(
        "--timeout", type=_positive, default=60.0, help="seconds a service may take to answer (default 60)"
    )


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``ssa search`` and ``cutout`` to the top-level parser."""
    ssa = commands.add_parser(
        "ssa",
        help="search spectra with SSAP (any SSA service)",
        description="Simple Spectral Access (SSAP) queries of any SSA service; by default the vocloud server's.",
    )
    actions = ssa.add_subparsers(dest="ssa_command", required=True, metavar="ACTION")
    search = actions.add_parser(
        "search",
        help="find spectra by position, wavelength, time or name",
        description="Run an SSAP queryData request and print the rows. Exit status 0 when the service answered"
        " (also with no rows), 2 when it refused the query or sent no SSA table, 3 when it is unreachable,"
        " 4 on a timeout.",
    )
    search.add_argument("--pos", type=_position, metavar="RA,DEC", help="cone centre, ICRS degrees")
    search.add_argument("--size", type=_positive, metavar="DEG", help="cone diameter in degrees")
    search.add_argument("--band", type=_band, metavar="LO,HI", help="wavelength interval in Å")
    search.add_argument("--time", type=_time_range, metavar="START/END", help="time interval, ISO 8601")
    search.add_argument("--target", metavar="NAME", help="target name (SSA TARGETNAME)")
    search.add_argument("--collection", help="data collection (SSA COLLECTION)")
    search.add_argument("--maxrec", type=_count, metavar="N", help="most rows to return")
    search.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    search.add_argument("--service", metavar="URL", help="the SSA service (default: the server's /ssa)")
    _add_connection(search)
    search.set_defaults(func=run_ssa_search)

    cutout = commands.add_parser(
        "cutout",
        help="write a SODA cutout of a spectrum around a line",
        description="Write a spectral cutout (SODA) of one spectrum: LINE ± HALF_WIDTH Å (H-alpha ± 50 Å by"
        " default), moved into the spectrum's air or vacuum wavelengths as the server declares them, or an"
        " explicit --band. Cutouts fetched before come from the local cache ($VOCLOUD_CACHE). Exit status 0"
        " when written, 2 when the service refused or the band holds no pixel, 3 when it is unreachable,"
        " 4 on a timeout.",
    )
    cutout.add_argument("id", metavar="ID", help="publisher DID of the spectrum (ivo://...)")
    cutout.add_argument("--line", type=_positive, default=6562.8, metavar="Å", help="line wavelength (default 6562.8)")
    cutout.add_argument(
        "--half-width", type=_positive, default=50.0, metavar="Å", help="half width of the cutout (default 50)"
    )
    cutout.add_argument("--vacuum", action="store_true", help="--line is a vacuum wavelength (default: air)")
    cutout.add_argument("--band", type=_band, metavar="LO,HI", help="cut LO..HI Å of the archived wavelengths instead")
    cutout.add_argument("--format", choices=("fits", "votable"), help="format of the cutout (default: the service's)")
    cutout.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="file to write")
    cutout.add_argument("--ssa", metavar="URL", help="SSA service to look ID up in (default: the server's /ssa)")
    cutout.add_argument("--datalink", metavar="URL", help="DataLink service to resolve ID with instead of SSA")
    cutout.add_argument("--no-cache", action="store_true", help="neither read nor fill the local cache")
    _add_connection(cutout)
    cutout.set_defaults(func=run_cutout)


def _prompt() -> str | None:
    """The password, asked on the terminal only (a script without one fails with the server's 401)."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass("vocloud password: ")


def _client(args: argparse.Namespace) -> VocloudClient:
    from .service import VocloudClient  # noqa: PLC0415 - keeps `vocloud --help` from loading the client stack

    return VocloudClient(server_url(args.server), user=args.user, timeout=args.timeout, password_prompt=_prompt)


def _fail(command: str, error: BaseException) -> int:
    print(f"vocloud {command}: {error}", file=sys.stderr)
    return exit_code_for(error)


def _guarded(command: str, action: Callable[[], int]) -> int:
    """Run a command; expected failures become one line on stderr and their exit code, never a traceback."""
    try:
        return action()
    except (VocloudError, ValueError, OSError) as e:  # OSError: unwritable output, full disk, cache directory
        return _fail(command, e)


def _column_utype(table: Table, name: str) -> str:
    utype = str(table[name].meta.get("utype") or "").lower()
    return utype.split(":", 1)[-1]


def summary_table(table: Table) -> Table:
    """The columns every SSA service has, found by utype: id, target, position, date, wavelength range (Å), format.

    Positions are split into ``ra``/``dec`` degrees, the observation date
    (MJD) is shown as ISO, and the spectral bounds (metres in SSA) in Å.
    """
    import astropy.units as u  # noqa: PLC0415 - loaded only by the commands that print tables
    import numpy as np  # noqa: PLC0415
    from astropy.table import Column, MaskedColumn  # noqa: PLC0415
    from astropy.table import Table as AstropyTable  # noqa: PLC0415
    from astropy.time import Time  # noqa: PLC0415

    by_utype = {_column_utype(table, name): name for name in table.colnames if _column_utype(table, name)}
    out = AstropyTable()
    for label, utypes in SUMMARY_COLUMNS:
        source = next((by_utype[utype] for utype in utypes if utype in by_utype), None)
        if source is None:
            continue
        column = table[source]
        values: Any = np.ma.asanyarray(column)
        if label in ("ra", "dec"):
            if values.ndim != 2 or values.shape[1] < 2:
                continue
            values = values[:, 0 if label == "ra" else 1]
            out[label] = MaskedColumn(np.ma.asarray(values, dtype=float), unit="deg", format=".5f")
        elif label == "date_obs":
            mjd: Any = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
            finite = np.isfinite(mjd)
            text = np.full(len(mjd), "", dtype="U19")
            if finite.any():
                text[finite] = [iso[:19] for iso in Time(mjd[finite], format="mjd").isot]
            out[label] = Column(text)
        elif label in ("lambda_min", "lambda_max"):
            unit = column.unit or u.m
            angstrom = (np.ma.filled(np.ma.asarray(values, dtype=float), np.nan) * unit).to_value(
                u.AA, equivalencies=u.spectral()
            )
            out[label] = MaskedColumn(angstrom, mask=~np.isfinite(angstrom), unit="Angstrom", format=".1f")
        else:
            out[label] = column
    return out


def _flat(table: Table) -> Table:
    """A copy with every array column split into scalar ones (``pos`` → ``pos_1``, ``pos_2``), for CSV."""
    import numpy as np  # noqa: PLC0415 - loaded only by the commands that print tables

    flat = table.copy(copy_data=False)
    for name in list(flat.colnames):
        column = flat[name]
        if column.ndim <= 1:
            continue
        index = flat.colnames.index(name)
        parts = np.ma.asanyarray(column).reshape(len(column), -1)
        flat.remove_column(name)
        for k in range(parts.shape[1]):
            flat.add_column(parts[:, k], name=f"{name}_{k + 1}", index=index + k)
    return flat


def run_ssa_search(args: argparse.Namespace) -> int:
    """``vocloud ssa search``; returns the exit status."""

    def action() -> int:
        import astropy.units as u  # noqa: PLC0415 - keeps `vocloud --help` from loading astropy and pyvo

        from .vo import ssa_query  # noqa: PLC0415

        extra = {
            name: value
            for name, value in (("TARGETNAME", args.target), ("COLLECTION", args.collection))
            if value is not None
        }
        with _client(args) as client:
            response = ssa_query(
                args.service or f"{client.url}/ssa", pos=args.pos, size=args.size,
                band=None if args.band is None else u.Quantity(args.band, u.AA), time=args.time,
                maxrec=args.maxrec, session=client.http, timeout=args.timeout, **extra,
            )  # fmt: skip
        table = response.table()
        if args.format == "votable":
            sys.stdout.buffer.write(response.raw)
            sys.stdout.flush()
        elif args.format == "csv":
            _flat(table).write(sys.stdout, format="ascii.csv")
        else:
            summary = summary_table(table)
            if len(summary.colnames) < 2:  # a service without SSA utypes: show what it sent
                summary = table
            for line in summary.pformat(max_lines=-1, max_width=-1):
                print(line)
        more = " (more exist: raise --maxrec)" if response.overflow else ""
        noun = "spectrum" if len(table) == 1 else "spectra"
        print(f"{len(table)} {noun}{more}", file=sys.stderr)
        return EXIT_OK

    return _guarded("ssa search", action)


_RESPONSE_FORMATS = {"fits": "application/fits", "votable": "application/x-votable+xml"}


def run_cutout(args: argparse.Namespace) -> int:
    """``vocloud cutout``; returns the exit status."""

    def action() -> int:
        import astropy.units as u  # noqa: PLC0415 - keeps `vocloud --help` from loading astropy and pyvo

        from .cache import Cache  # noqa: PLC0415
        from .progress import human_bytes  # noqa: PLC0415
        from .vo import cutout_request, fetch_cutout  # noqa: PLC0415

        if args.output.is_dir():
            raise ValueError(f"{args.output} is a directory; give the file to write")
        cache = None if args.no_cache else Cache()
        with _client(args) as client:
            ssa_url = args.ssa or (None if args.datalink else f"{client.url}/ssa")
            request = cutout_request(
                args.id, around=args.line * u.AA, half_width=args.half_width * u.AA,
                band=None if args.band is None else u.Quantity(args.band, u.AA),
                line_medium="vacuum" if args.vacuum else "air", responseformat=_RESPONSE_FORMATS.get(args.format or ""),
                ssa_url=ssa_url, datalink_url=args.datalink, session=client.http, cache=cache, timeout=args.timeout,
            )  # fmt: skip
            entry = fetch_cutout(request, session=client.http, cache=cache, output=args.output, timeout=args.timeout)
        lo, hi = request.band.to_value(u.AA)
        medium = f" ({request.medium} wavelengths)" if request.medium else ""
        origin = ", from the cache" if entry.from_cache else ""
        print(
            f"{request.publisher_did}: {lo:.2f}-{hi:.2f} Å{medium} -> {entry.path} ({human_bytes(entry.size)}{origin})",
            file=sys.stderr,
        )
        return EXIT_OK

    return _guarded("cutout", action)
