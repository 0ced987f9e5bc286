"""SAMP through `pyvo.samp`: send tables, spectra and positions to TOPCAT, SPLAT and Aladin; hear what they send back.

SAMP (IVOA Simple Application Messaging Protocol 1.3) is how desktop VO tools
talk to each other on one machine: every tool registers with a *hub* and sends
*messages* named by an MType. vocloud's client uses it to put the candidates of
an active-learning iteration in front of the expert (`CandidateViewer`) and to
hear the expert's selections back from TOPCAT.

Messages sent (MTypes as defined on the IVOA SampMTypes page):

* ``table.load.votable`` (`SampClient.send_table`) to TOPCAT: the candidates table;
* ``spectrum.load.ssa-generic`` (`SampClient.send_spectrum`) to SPLAT: a spectrum
  by URL with its SSA metadata (`spectrum_meta`);
* ``coord.pointAt.sky`` (`SampClient.point_at`) to Aladin;
* ``table.highlight.row`` and ``table.select.rowList`` to TOPCAT.

Messages received, each dispatched to the callbacks registered for it:
``table.select.rowList`` (`SampClient.on_row_list`: a subset the expert
broadcast), ``table.highlight.row`` (`SampClient.on_highlight`) and
``table.load.votable`` (`SampClient.on_table_load`: a table broadcast back, for
instance with a label column).

Threads: pyvo's client runs an XML-RPC server whose requests are served in
threads of their own, so callbacks run in one of *those* threads, never the
caller's. `SampClient` handles one message at a time (under one lock), each
message's callbacks in the order they were registered, so callbacks need no
locking among themselves; a callback may register another. A callback that
touches state owned by another thread (a terminal loop, a SQLite connection,
which is bound to the thread that opened it) should hand the event over
instead of acting on it: `SampClient.event_queue` returns a `queue.Queue` that
receives every event as a `SampEvent`, which that thread reads at its own pace.
When the message was a call, the sender hears ``samp.ok`` once the callbacks
returned, or ``samp.error`` with the first failing callback's message.

Only `pyvo.samp` is used: ``astropy.samp`` is deprecated and will be removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import uuid
import xmlrpc.client
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from pyvo import samp as pyvo_samp
from pyvo.samp.lockfile_helpers import read_lockfile
from pyvo.samp.standard_profile import SAMPSimpleXMLRPCRequestHandler

from .errors import EXIT_UNREACHABLE, VocloudError

if TYPE_CHECKING:
    from .viewers import CandidateViewer

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FITS_MIME",
    "MTYPE_HIGHLIGHT_ROW",
    "MTYPE_POINT_AT_SKY",
    "MTYPE_SELECT_ROW_LIST",
    "MTYPE_SPECTRUM_LOAD",
    "MTYPE_TABLE_LOAD",
    "VOTABLE_MIME",
    "CandidateViewer",
    "HighlightEvent",
    "HubNotFoundError",
    "PrivateHub",
    "RowListEvent",
    "SampClient",
    "SampError",
    "SampEvent",
    "SampReply",
    "SampReplyError",
    "TableLoadEvent",
    "hub_lockfile",
    "private_hub",
    "spectrum_meta",
]

logger = logging.getLogger(__name__)


class _StrictReader:
    """A request handler's input stream on which a read that finds the connection closed raises.

    pyvo's XML-RPC handler (``SAMPSimpleXMLRPCRequestHandler.do_POST``, pyvo 1.9.1, as in
    astropy.samp) reads the announced ``Content-Length`` in a loop that stops only when every
    byte came. A peer that dies in the middle of a call (TOPCAT or Aladin killed, a crash)
    leaves it reading ``b""`` for ever: a thread of the hub (or of our client's receiver)
    spins a core and grows without bound, and stopping the hub waits for that thread, so it
    hangs too. In our SAMP peers suite it starved the tests after it until they timed out.
    Python's own ``xmlrpc.server`` stops on an empty read; pyvo's copy does not.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.read(size)
        if not data and size is not None and size > 0:
            msg = "the SAMP peer closed its connection in the middle of a request"
            raise ConnectionError(msg)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _strict_setup(handler: Any, setup: Callable[[Any], None] = SAMPSimpleXMLRPCRequestHandler.setup) -> None:
    setup(handler)
    handler.rfile = _StrictReader(handler.rfile)


# Every hub and receiver pyvo runs in this process uses this handler class and takes no other
# (SAMPHubServer builds its server itself), so the guard has to go on the class.
SAMPSimpleXMLRPCRequestHandler.setup = _strict_setup

MTYPE_TABLE_LOAD = "table.load.votable"
"""Load a VOTable by URL; parameters ``url``, optional ``table-id`` and ``name``."""
MTYPE_SPECTRUM_LOAD = "spectrum.load.ssa-generic"
"""Load a spectrum by URL; parameters ``url``, ``meta`` (SSA utypes or UCDs → values), ``spectrum-id``, ``name``."""
MTYPE_POINT_AT_SKY = "coord.pointAt.sky"
"""Point at a sky position; parameters ``ra`` and ``dec`` in degrees (ICRS), as strings."""
MTYPE_HIGHLIGHT_ROW = "table.highlight.row"
"""Highlight one row of a loaded table; parameters ``table-id``, ``url``, ``row`` (0-based)."""
MTYPE_SELECT_ROW_LIST = "table.select.rowList"
"""Select rows of a loaded table; parameters ``table-id``, ``url``, ``row-list`` (0-based indices)."""

FITS_MIME = "application/fits"
VOTABLE_MIME = "application/x-votable+xml"

DEFAULT_TIMEOUT_S = 10.0
"""How long a call waits for a peer's reply: TOPCAT answers a table load once it has read the table."""

_STATUS_OK = "samp.ok"
_STATUS_WARNING = "samp.warning"
_STATUS_ERROR = "samp.error"

_LOOPBACK = "127.0.0.1"
"""Address of every XML-RPC server we start: SAMP's standard profile is for one machine, not the network."""

_SAMP_HUB = "SAMP_HUB"
_STD_LOCKURL = "std-lockurl:"

_hub_start_lock = threading.Lock()


class SampError(VocloudError):
    """Talking to the SAMP hub or to a peer failed; the message says which and why."""


class HubNotFoundError(SampError):
    """No SAMP hub is running where the user's environment says it is (or none at all)."""

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


@dataclass(frozen=True)
class SampReply:
    """One peer's answer to a call.

    Attributes
    ----------
    client_id
        The peer's public id on the hub.
    name
        Its ``samp.name`` (``topcat``, ``Aladin``, ...), or the id when it declared none.
    status
        ``samp.ok``, ``samp.warning`` (partly done) or ``samp.error``.
    result
        The ``samp.result`` map.
    error
        The ``samp.error`` map (``samp.errortxt`` is the message) when there is one.
    """

    client_id: str
    name: str
    status: str
    result: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the peer did what was asked (a warning is a partial success)."""
        return self.status in (_STATUS_OK, _STATUS_WARNING)

    @property
    def message(self) -> str:
        """The peer's error text, or its status when it gave none."""
        return str(self.error.get("samp.errortxt") or self.status)


class SampReplyError(SampError):
    """A peer answered a call with ``samp.error`` (or did not answer in time).

    Parameters
    ----------
    message
        Which peers refused what, in their own words.
    replies
        Every reply to the call, the successful ones included, by client id.
    """

    def __init__(self, message: str, *, replies: Mapping[str, SampReply]) -> None:
        super().__init__(message)
        self.replies = dict(replies)


@dataclass(frozen=True)
class RowListEvent:
    """A peer selected rows of a table (``table.select.rowList``); rows are 0-based."""

    sender: str
    table_id: str | None
    url: str | None
    rows: list[int]


@dataclass(frozen=True)
class HighlightEvent:
    """A peer highlighted one row of a table (``table.highlight.row``); 0-based."""

    sender: str
    table_id: str | None
    url: str | None
    row: int


@dataclass(frozen=True)
class TableLoadEvent:
    """A peer sent a table to load (``table.load.votable``)."""

    sender: str
    url: str
    table_id: str | None
    name: str | None


SampEvent = RowListEvent | HighlightEvent | TableLoadEvent

RowListCallback = Callable[[str | None, str | None, list[int]], object]
"""``fn(table_id, url, rows)``."""
HighlightCallback = Callable[[str | None, str | None, int], object]
"""``fn(table_id, url, row)``."""
TableLoadCallback = Callable[[str, str | None, str | None], object]
"""``fn(url, table_id, name)``."""


# --- finding and starting hubs ---------------------------------------------------------------------------------------


def hub_lockfile(hub_url: str | os.PathLike[str] | None = None) -> str:
    """Where the hub's lockfile is, by the Standard Profile's hub discovery rules (SAMP 1.3).

    Parameters
    ----------
    hub_url
        ``std-lockurl:URL`` (the form of ``SAMP_HUB``), a lockfile URL, or a
        lockfile path. When None: ``SAMP_HUB`` when set, else ``~/.samp``.

    Returns
    -------
    str
        A local path, or a URL for a lockfile that is not a local file.

    Raises
    ------
    HubNotFoundError
        Raised if ``SAMP_HUB`` names a profile other than the standard one.
    """
    where: str
    if hub_url is None:
        env = os.environ.get(_SAMP_HUB)
        if env is None:
            return str(Path.home() / ".samp")
        if not env.startswith(_STD_LOCKURL):
            msg = f"SAMP_HUB={env!r} names a profile this client does not speak (only {_STD_LOCKURL}URL)"
            raise HubNotFoundError(msg)
        where = env
    else:
        where = os.fspath(hub_url)
    where = where.removeprefix(_STD_LOCKURL)
    parts = urlsplit(where)
    if parts.scheme == "file":
        return url2pathname(unquote(parts.path))
    return where


def _read_hub_params(hub_url: str | os.PathLike[str] | None) -> dict[str, str]:
    lockfile = hub_lockfile(hub_url)
    try:
        params: dict[str, str] = read_lockfile(lockfile)
    except OSError as e:
        msg = (
            f"No SAMP hub is running: cannot read its lockfile {lockfile} ({e.strerror or e}); "
            "start TOPCAT (or another hub) first, or set SAMP_HUB"
        )
        raise HubNotFoundError(msg) from e
    except ValueError as e:
        msg = f"{lockfile} is not a SAMP lockfile: {e}"
        raise HubNotFoundError(msg) from e
    if "samp.hub.xmlrpc.url" not in params or "samp.secret" not in params:
        msg = f"{lockfile} is not a SAMP standard-profile lockfile (no samp.hub.xmlrpc.url or samp.secret)"
        raise HubNotFoundError(msg)
    return params


@dataclass(frozen=True)
class PrivateHub:
    """A hub this process runs (see `private_hub`).

    Attributes
    ----------
    server
        The running `pyvo.samp.SAMPHubServer`.
    lockfile
        Its lockfile.
    """

    server: Any
    lockfile: Path

    @property
    def samp_hub(self) -> str:
        """The ``SAMP_HUB`` value that leads other programs (TOPCAT, jsamp) to this hub."""
        return _STD_LOCKURL + self.lockfile.resolve().as_uri()


@contextlib.contextmanager
def _without_samp_hub() -> Iterator[None]:
    # pyvo's hub writes its lockfile where SAMP_HUB points, whatever lockfile it was given,
    # and refuses to start when a hub is already running there (lockfile_helpers.create_lock_file).
    # A private hub must not take over (or be refused by) the user's own.
    with _hub_start_lock:
        saved = os.environ.pop(_SAMP_HUB, None)
        try:
            yield
        finally:
            if saved is not None:
                os.environ[_SAMP_HUB] = saved


@contextlib.contextmanager
def private_hub(lockfile: str | os.PathLike[str], *, label: str = "vocloud private hub") -> Iterator[PrivateHub]:
    """Run a SAMP hub of our own for the block, with its lockfile at ``lockfile``.

    For tests, and for users without a desktop hub: other programs find it
    through ``SAMP_HUB`` set to `PrivateHub.samp_hub`, or through the lockfile
    itself when it is ``~/.samp``. The web profile is off (no browser may
    register) and the hub listens on loopback only.

    Raises
    ------
    SampError
        Raised if the hub could not start (a hub already running with that
        lockfile, a lockfile that cannot be written).
    """
    path = Path(lockfile)
    with pyvo_samp.conf.set_temp("use_internet", False):
        server = pyvo_samp.SAMPHubServer(web_profile=False, lockfile=str(path), addr=_LOOPBACK, label=label)
    try:
        try:
            with _without_samp_hub(), pyvo_samp.conf.set_temp("use_internet", False):
                server.start(wait=False)
        except (OSError, pyvo_samp.SAMPHubError) as e:
            msg = f"Could not start a SAMP hub with lockfile {path}: {e}"
            raise SampError(msg) from e
        # pyvo starts the hub even when another one holds the lockfile (it only warns): ours is the
        # one whose secret the lockfile holds.
        try:
            written = read_lockfile(str(path)).get("samp.secret")
        except (OSError, ValueError):
            written = None
        if written != server.params["samp.secret"]:
            msg = f"Could not start a SAMP hub with lockfile {path}: another hub is running there"
            raise SampError(msg)
        yield PrivateHub(server=server, lockfile=path)
    finally:
        server.stop()


# --- the client ---------------------------------------------------------------------------------------------------


def _abandon(conn: Any) -> None:
    """Stop a pyvo client's receiver thread and drop its hub connection without asking the hub (which may be gone)."""
    client = getattr(conn, "client", None)
    with contextlib.suppress(OSError, pyvo_samp.SAMPClientError):
        if client is not None and client.is_running:
            client.stop()
    conn.hub.disconnect()


def _string(value: object) -> str:
    """A SAMP scalar: SAMP data are strings, lists and maps, so numbers go in their shortest exact form."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def spectrum_meta(
    *,
    url: str | None = None,
    media_type: str | None = None,
    target: str | None = None,
    ra: float | None = None,
    dec: float | None = None,
    title: str | None = None,
    publisher_did: str | None = None,
    spectral_column: str | None = None,
    flux_column: str | None = None,
    spectral_unit: str | None = None,
    flux_unit: str | None = None,
    spectral_ucd: str | None = None,
    flux_ucd: str | None = None,
) -> dict[str, str]:
    """The ``meta`` map of ``spectrum.load.ssa-generic``: SSA utypes → values, what is known only.

    The MType leaves the keys to "utypes or UCDs as in the SSA specification";
    this writes the SSA 1.1 utypes (``ssa:Access.Format``, ``ssa:Target.Name``,
    ``ssa:Char.SpectralAxis.Unit``, ...) and, for the columns, the keys SPLAT
    reads to pick a table's spectral and flux columns (``ssa:Dataset.SpectralAxis``,
    ``ssa:Dataset.FluxAxis``, ``vox:spectrum_units``): without them SPLAT
    guesses the columns of a FITS table, with them it plots the right ones.

    Parameters
    ----------
    url
        The spectrum's URL (``ssa:Access.Reference``).
    media_type
        Its MIME type (``ssa:Access.Format``): how SPLAT decides to read it.
    target
        Target name (``ssa:Target.Name``): SPLAT's name for the spectrum.
    ra, dec
        ICRS position in degrees (``ssa:Char.SpatialAxis.Coverage.Location.Value``).
    title, publisher_did
        ``ssa:DataID.Title``, ``ssa:Curation.PublisherDID``.
    spectral_column, flux_column
        Names of the table columns holding the spectral coordinate and the flux.
    spectral_unit, flux_unit, spectral_ucd, flux_ucd
        Units and UCDs of the axes (``ssa:Char.SpectralAxis.Unit``, ...).
    """
    known: dict[str, object | None] = {
        "ssa:Access.Reference": url,
        "ssa:Access.Format": media_type,
        "ssa:Target.Name": target,
        "ssa:DataID.Title": title,
        "ssa:Curation.PublisherDID": publisher_did,
        "ssa:Dataset.SpectralAxis": spectral_column,
        "ssa:Dataset.FluxAxis": flux_column,
        "ssa:Char.SpectralAxis.Unit": spectral_unit,
        "ssa:Char.SpectralAxis.Ucd": spectral_ucd,
        "ssa:Char.FluxAxis.Unit": flux_unit,
        "ssa:Char.FluxAxis.Ucd": flux_ucd,
    }
    if ra is not None and dec is not None and math.isfinite(ra) and math.isfinite(dec):
        known["ssa:Char.SpatialAxis.Coverage.Location.Value"] = f"{_string(float(ra))} {_string(float(dec))}"
    if spectral_unit:
        # SPLAT's own key, read as "spectral-unit [flux-unit]".
        known["vox:spectrum_units"] = f"{spectral_unit} {flux_unit}" if flux_unit else spectral_unit
    return {key: _string(value) for key, value in known.items() if value is not None and value != ""}


class SampClient:
    """A vocloud client on a SAMP hub: sends what the expert should see, hears what the expert selects.

    Use it as a context manager, or call `connect` and `disconnect`.

    Parameters
    ----------
    name
        The ``samp.name`` other tools show.
    description
        The ``samp.description.text``.
    timeout
        Seconds a call waits for the replies of all its recipients.
    """

    def __init__(
        self,
        *,
        name: str = "vocloud",
        description: str = "vocloud: active learning on archives of 1-D spectra",
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.description = description
        self.timeout = timeout
        self._conn: Any = None
        self._lock = threading.Lock()
        """Guards the lists of callbacks and queues."""
        self._dispatching = threading.Lock()
        """Serialises the callbacks: pyvo serves each incoming message in a thread of its own."""
        self._row_list: list[RowListCallback] = []
        self._highlight: list[HighlightCallback] = []
        self._table_load: list[TableLoadCallback] = []
        self._queues: list[queue.Queue[SampEvent]] = []
        self._bound: set[str] = set()

    # connection

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    @property
    def connected(self) -> bool:
        """Whether the client is registered with a running hub."""
        return self._conn is not None and bool(self._conn.is_connected)

    @property
    def client_id(self) -> str:
        """Our public id on the hub.

        Raises
        ------
        SampError
            Raised if the client is not connected.
        """
        return str(self._connection().get_public_id())

    def connect(self, hub_url: str | os.PathLike[str] | None = None) -> None:
        """Register with the hub: the one ``hub_url`` names, else the user's (``SAMP_HUB``, else ``~/.samp``).

        Parameters
        ----------
        hub_url
            ``std-lockurl:URL``, a lockfile URL or a lockfile path.

        Raises
        ------
        HubNotFoundError
            Raised if there is no lockfile, or its hub does not answer.
        SampError
            Raised if the hub refused the registration.
        """
        if self.connected:
            return
        params = _read_hub_params(hub_url)
        with pyvo_samp.conf.set_temp("use_internet", False):
            conn = pyvo_samp.SAMPIntegratedClient(
                name=self.name, description=self.description, addr=_LOOPBACK, callable=True
            )
            try:
                conn.connect(hub_params=params)
            except (OSError, xmlrpc.client.ProtocolError) as e:
                _abandon(conn)
                msg = f"The SAMP hub at {params['samp.hub.xmlrpc.url']} does not answer ({e}); is it still running?"
                raise HubNotFoundError(msg) from e
            except (xmlrpc.client.Fault, pyvo_samp.SAMPHubError, pyvo_samp.SAMPClientError) as e:
                _abandon(conn)
                msg = f"The SAMP hub refused the registration: {e}"
                raise SampError(msg) from e
        self._conn = conn
        self._bound = set()
        try:
            self._subscribe(conn)
        except SampError:
            self.disconnect()
            raise
        logger.debug("Registered with the SAMP hub as %s", conn.get_public_id())

    def disconnect(self) -> None:
        """Unregister and stop listening; does nothing when not connected, never raises for a hub already gone."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.disconnect()
        except (OSError, xmlrpc.client.Fault, pyvo_samp.SAMPHubError, pyvo_samp.SAMPClientError) as e:
            logger.debug("Leaving the SAMP hub: %s", e)
            _abandon(conn)

    def _connection(self) -> Any:
        if self._conn is None:
            msg = "Not connected to a SAMP hub"
            raise SampError(msg)
        return self._conn

    # peers

    def clients(self, mtype: str | None = None) -> dict[str, str]:
        """The other clients on the hub (subscribed to ``mtype`` when given): public id → ``samp.name``.

        Raises
        ------
        SampError
            Raised if the client is not connected or the hub fails.
        """
        conn = self._connection()
        try:
            ids = list(conn.get_registered_clients() if mtype is None else conn.get_subscribed_clients(mtype))
            return {str(i): self._name_of(conn, str(i)) for i in ids}
        except (OSError, xmlrpc.client.Fault) as e:
            msg = f"The SAMP hub failed to list its clients: {e}"
            raise SampError(msg) from e

    @staticmethod
    def _name_of(conn: Any, client_id: str) -> str:
        try:
            metadata = conn.get_metadata(client_id)
        except (OSError, xmlrpc.client.Fault):
            return client_id
        return str(metadata.get("samp.name") or client_id)

    def _recipients(self, mtype: str, to: str | None) -> dict[str, str]:
        subscribed = self.clients(mtype)
        if to is None:
            return subscribed
        if to in subscribed:
            return {to: subscribed[to]}
        chosen = {i: name for i, name in subscribed.items() if name.casefold() == to.casefold()}
        if chosen:
            return chosen
        registered = self.clients()
        if to in registered or any(name.casefold() == to.casefold() for name in registered.values()):
            msg = f"SAMP client {to!r} does not accept {mtype}"
        else:
            msg = f"No SAMP client {to!r} is registered with the hub"
        raise SampError(msg)

    # sending

    def call(self, mtype: str, params: Mapping[str, Any], *, to: str | None = None) -> dict[str, SampReply]:
        """Send ``mtype`` as a call to each recipient and wait for their replies.

        The calls are asynchronous (SAMP ``call``, answered through our
        ``receiveResponse``) rather than the hub's ``callAndWait``: pyvo's hub
        drops a reply that arrives before it has noted the synchronous call,
        which a quick peer on the same machine does; and one wait serves every
        recipient, so a slow peer (TOPCAT reading a big table) does not hold up
        the others' calls.

        Parameters
        ----------
        mtype, params
            The message. Parameter values must be SAMP data: strings, lists and maps.
        to
            A client's public id or ``samp.name`` (any case); None sends to
            every client subscribed to ``mtype``.

        Returns
        -------
        dict
            Client id → its reply; empty when ``to`` is None and nobody is subscribed.

        Raises
        ------
        SampReplyError
            Raised if a peer answered ``samp.error`` or did not answer within
            `timeout`; the replies of the others travel with it.
        SampError
            Raised if ``to`` is not registered or does not accept ``mtype``,
            or the client is not connected.
        """
        recipients = self._recipients(mtype, to)
        if not recipients:
            return {}
        message = {"samp.mtype": mtype, "samp.params": dict(params)}
        conn = self._connection()
        tag = f"vocloud-{uuid.uuid4().hex}"
        replies: dict[str, SampReply] = {}
        guard = threading.Lock()
        all_in = threading.Event()

        def keep(client_id: str, reply: SampReply) -> None:
            with guard:
                replies.setdefault(client_id, reply)
                if set(recipients) <= set(replies):
                    all_in.set()

        def on_response(private_key: str, responder: str, msg_tag: str, response: dict[str, Any]) -> None:
            if responder in recipients:
                keep(responder, _reply(responder, recipients[responder], response))

        conn.bind_receive_response(tag, on_response)
        try:
            for client_id, name in recipients.items():
                try:
                    conn.call(client_id, tag, message)
                except (OSError, xmlrpc.client.Fault) as e:
                    text = getattr(e, "faultString", None) or str(e)
                    keep(client_id, SampReply(client_id, name, _STATUS_ERROR, error={"samp.errortxt": text}))
            all_in.wait(self.timeout)
        finally:
            conn.unbind_receive_response(tag)
        with guard:
            for client_id, name in recipients.items():
                replies.setdefault(
                    client_id,
                    SampReply(
                        client_id, name, _STATUS_ERROR, error={"samp.errortxt": f"no reply in {self.timeout:g} s"}
                    ),
                )
            answered = dict(replies)
        for reply in answered.values():
            if reply.status == _STATUS_WARNING:
                # A partial success (TOPCAT takes a position only when a sky window is open): worth a note only.
                logger.info("%s only partly did %s: %s", reply.name, mtype, reply.message)
        failed = [r for r in answered.values() if not r.ok]
        if failed:
            detail = "; ".join(f"{r.name} ({r.client_id}): {r.message}" for r in failed)
            msg = f"{mtype} failed: {detail}"
            raise SampReplyError(msg, replies=answered)
        return answered

    def send_table(
        self, url: str, *, table_id: str, name: str | None = None, to: str | None = None
    ) -> dict[str, SampReply]:
        """Ask table tools (TOPCAT) to load the VOTable at ``url``; returns once they have read it.

        ``table_id`` is how later messages (`highlight_row`, rows selected by the
        expert) refer to the table; TOPCAT answers ``samp.error`` when it cannot
        read the table, which raises.

        Raises
        ------
        SampReplyError, SampError
            As `call`.
        """
        params = {"url": url, "table-id": table_id}
        if name:
            params["name"] = name
        return self.call(MTYPE_TABLE_LOAD, params, to=to)

    def send_spectrum(
        self,
        url: str,
        meta: Mapping[str, object],
        *,
        to: str | None = None,
        spectrum_id: str | None = None,
        name: str | None = None,
    ) -> dict[str, SampReply]:
        """Ask spectrum tools (SPLAT) to load the spectrum at ``url`` described by ``meta`` (see `spectrum_meta`).

        Raises
        ------
        SampReplyError, SampError
            As `call`.
        """
        params: dict[str, Any] = {"url": url, "meta": {key: _string(value) for key, value in meta.items()}}
        if spectrum_id:
            params["spectrum-id"] = spectrum_id
        if name:
            params["name"] = name
        return self.call(MTYPE_SPECTRUM_LOAD, params, to=to)

    def point_at(self, ra: float, dec: float, *, to: str | None = None) -> dict[str, SampReply]:
        """Point sky viewers (Aladin) at an ICRS position in degrees.

        Raises
        ------
        ValueError
            Raised if the position is not finite.
        SampReplyError, SampError
            As `call`.
        """
        if not (math.isfinite(ra) and math.isfinite(dec)):
            msg = f"Cannot point at ra={ra}, dec={dec}"
            raise ValueError(msg)
        return self.call(MTYPE_POINT_AT_SKY, {"ra": _string(float(ra)), "dec": _string(float(dec))}, to=to)

    def highlight_row(self, table_id: str, url: str, row: int, *, to: str | None = None) -> dict[str, SampReply]:
        """Highlight row ``row`` (0-based) of the table loaded as ``table_id`` from ``url``.

        Raises
        ------
        SampReplyError, SampError
            As `call`.
        """
        return self.call(MTYPE_HIGHLIGHT_ROW, {"table-id": table_id, "url": url, "row": str(int(row))}, to=to)

    def select_rows(
        self, table_id: str, url: str, rows: Sequence[int], *, to: str | None = None
    ) -> dict[str, SampReply]:
        """Select rows (0-based) of the table loaded as ``table_id`` from ``url``, as TOPCAT's subsets do.

        Raises
        ------
        SampReplyError, SampError
            As `call`.
        """
        params = {"table-id": table_id, "url": url, "row-list": [str(int(r)) for r in rows]}
        return self.call(MTYPE_SELECT_ROW_LIST, params, to=to)

    # receiving

    def on_row_list(self, callback: RowListCallback) -> None:
        """Call ``callback(table_id, url, rows)`` for every ``table.select.rowList`` received (see module doc)."""
        self._add(self._row_list, callback)

    def on_highlight(self, callback: HighlightCallback) -> None:
        """Call ``callback(table_id, url, row)`` for every ``table.highlight.row`` received (see module doc)."""
        self._add(self._highlight, callback)

    def on_table_load(self, callback: TableLoadCallback) -> None:
        """Call ``callback(url, table_id, name)`` for every ``table.load.votable`` received (see module doc)."""
        self._add(self._table_load, callback)

    def event_queue(self) -> queue.Queue[SampEvent]:
        """A queue that receives every message of the three kinds as a `SampEvent`.

        The thread-safe hand-off to a thread of the caller's: the receiver
        thread only puts, the caller's thread takes (``get(timeout=...)``) and
        acts in its own context.
        """
        events: queue.Queue[SampEvent] = queue.Queue()
        self._add(self._queues, events)
        return events

    def _add(self, sinks: list[Any], sink: Any) -> None:
        with self._lock:
            sinks.append(sink)
        if self.connected:
            self._subscribe(self._connection())

    def _wanted(self) -> set[str]:
        """MTypes someone listens to: subscribing to others would make peers send what nobody reads."""
        with self._lock:
            wanted = set()
            if self._row_list or self._queues:
                wanted.add(MTYPE_SELECT_ROW_LIST)
            if self._highlight or self._queues:
                wanted.add(MTYPE_HIGHLIGHT_ROW)
            if self._table_load or self._queues:
                wanted.add(MTYPE_TABLE_LOAD)
            return wanted

    def _subscribe(self, conn: Any) -> None:
        new = self._wanted() - self._bound
        if not new:
            return
        try:
            for mtype in sorted(new):
                conn.bind_receive_message(mtype, self._handler(mtype), declare=False)
            conn.declare_subscriptions()
        except (OSError, xmlrpc.client.Fault, pyvo_samp.SAMPClientError) as e:
            msg = f"Could not subscribe to {', '.join(sorted(new))} on the SAMP hub: {e}"
            raise SampError(msg) from e
        self._bound |= new

    def _handler(self, mtype: str) -> Callable[[str, str, str | None, str, dict[str, Any], dict[str, Any]], None]:
        # pyvo calls a handler of six parameters for calls and notifications alike, msg_id None for the latter.
        def handle(
            private_key: str, sender_id: str, msg_id: str | None, _mtype: str, params: dict[str, Any], _: dict[str, Any]
        ) -> None:
            self._receive(mtype, sender_id, msg_id, params)

        return handle

    def _receive(self, mtype: str, sender: str, msg_id: str | None, params: Mapping[str, Any]) -> None:
        """Parse one message, hand it to the queues and callbacks, and reply when it was a call."""
        error: str | None = None
        try:
            event = _parse_event(mtype, sender, params)
        except (KeyError, TypeError, ValueError) as e:
            error = f"Bad {mtype} message: {e}"
            logger.warning("%s from %s", error, sender)
        else:
            error = self._dispatch(event)
        if msg_id is None:
            return
        conn = self._conn
        if conn is None:
            return
        try:
            if error is None:
                conn.ereply(msg_id, _STATUS_OK, result={})
            else:
                conn.ereply(msg_id, _STATUS_ERROR, result={}, error={"samp.errortxt": error})
        except (OSError, xmlrpc.client.Fault) as e:
            logger.warning("Could not reply to %s from %s: %s", mtype, sender, e)

    def _dispatch(self, event: SampEvent) -> str | None:
        """Run the callbacks of ``event`` one at a time; the first failure's message, for the sender's reply."""
        error: str | None = None
        # The lists are copied, and the callbacks run outside `_lock`: a callback may register another.
        with self._lock:
            queues = list(self._queues)
            calls: list[Callable[[], object]]
            match event:
                case RowListEvent():
                    calls = [partial(f, event.table_id, event.url, list(event.rows)) for f in self._row_list]
                case HighlightEvent():
                    calls = [partial(f, event.table_id, event.url, event.row) for f in self._highlight]
                case TableLoadEvent():
                    calls = [partial(f, event.url, event.table_id, event.name) for f in self._table_load]
        with self._dispatching:
            for events in queues:
                events.put(event)
            for call in calls:
                try:
                    call()
                except Exception as e:  # A callback's failure is the sender's answer, not our crash.
                    logger.exception("A SAMP callback failed on %r", event)
                    error = error or str(e) or type(e).__name__
        return error


def _reply(client_id: str, name: str, response: Mapping[str, Any]) -> SampReply:
    """A peer's response map as a `SampReply`; a response without a status counts as an error."""
    return SampReply(
        client_id,
        name,
        str(response.get("samp.status") or _STATUS_ERROR),
        result=dict(response.get("samp.result") or {}),
        error=dict(response.get("samp.error") or {}),
    )


def _optional(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return None if value is None or value == "" else str(value)


def _parse_event(mtype: str, sender: str, params: Mapping[str, Any]) -> SampEvent:
    """The event a message carries.

    Raises
    ------
    KeyError, TypeError, ValueError
        Raised if a required parameter is missing or not what the MType defines.
    """
    match mtype:
        case "table.select.rowList":
            rows = params["row-list"]
            if isinstance(rows, str) or not isinstance(rows, Sequence):
                msg = f"row-list is not a list: {rows!r}"
                raise TypeError(msg)
            return RowListEvent(sender, _optional(params, "table-id"), _optional(params, "url"), [int(r) for r in rows])
        case "table.highlight.row":
            return HighlightEvent(sender, _optional(params, "table-id"), _optional(params, "url"), int(params["row"]))
        case "table.load.votable":
            return TableLoadEvent(sender, str(params["url"]), _optional(params, "table-id"), _optional(params, "name"))
        case _:
            msg = f"No event for {mtype}"
            raise ValueError(msg)


def __getattr__(name: str) -> Any:
    # CandidateViewer lives in .viewers, which builds on this module: it is re-exported lazily
    # (PEP 562) so that importing either module first works.
    if name == "CandidateViewer":
        from .viewers import CandidateViewer  # noqa: PLC0415 - a cycle: viewers imports this module

        return CandidateViewer
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
