"""Downloads for the VO client: a local file cache keyed by URL, atomic writes, and a progress bar.

Spectra, cutouts and DataLink documents do not change once published (a
publisher DID names one dataset for good), so a second request for the same URL
and parameters is answered from disk without touching the network: the
interactive labeller shows the same candidates again and again, and a class of
students re-running a notebook should not hammer an archive.

The cache lives in ``$VOCLOUD_CACHE``, else in the platform's user cache
directory (``$XDG_CACHE_HOME/vocloud`` or ``~/.cache/vocloud`` on Linux,
``~/Library/Caches/vocloud`` on macOS, ``%LOCALAPPDATA%\\vocloud\\Cache`` on
Windows, as platformdirs would choose, without depending on it). Each entry is
two files named by the SHA-256 of the request: the body and a small JSON
description (URL, media type, file name). Both are written to a temporary file
in the same directory and renamed into place, body last, so that a crash or a
concurrent reader never sees half an entry, and two processes fetching the same
URL at once both end with a whole file.

Only successful answers are stored: an error or an empty answer (HTTP 204)
raises and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .errors import VocloudError, connection_reason, send
from .progress import ProgressBar

__all__ = [
    "CACHE_ENV",
    "CHUNK_BYTES",
    "Cache",
    "CacheEntry",
    "Params",
    "default_cache_dir",
    "download",
    "http_get",
    "request_url",
]

CACHE_ENV = "VOCLOUD_CACHE"
"""Environment variable naming the cache directory."""

CHUNK_BYTES = 64 * 1024
"""Bytes read from the network at a time: small enough for a smooth progress bar, large enough to be cheap."""

_META_SUFFIX = ".json"
_PART_PREFIX = ".part-"
"""Temporary files start with this; a crash can leave one behind, and :meth:`Cache.clear` removes them."""

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
"""Query parameters as requests takes them: a mapping or (name, value) pairs."""


def default_cache_dir() -> Path:
    """The cache directory: ``$VOCLOUD_CACHE``, else the platform's per-user cache directory."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / "vocloud" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "vocloud"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vocloud"


def request_url(url: str, params: Params | None = None) -> str:
    """The full URL of a GET: ``url`` with ``params`` appended to its query, as requests would send it."""
    prepared = requests.Request("GET", url, params=params).prepare().url
    return prepared or url


def _canonical(url: str, params: Params | None) -> str:
    """The request URL with its query pairs sorted, so that parameter order does not split the cache."""
    parts = urlsplit(request_url(url, params))
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, ""))


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    """A downloaded body on disk and what the server said about it."""

    path: Path
    """The file holding the body (in the cache, or wherever the caller asked)."""
    url: str
    """The full request URL."""
    content_type: str | None
    """The answer's media type, when it gave one."""
    filename: str | None
    """The file name from the answer's ``Content-Disposition``, when it gave one."""
    size: int
    """Bytes in the body."""
    from_cache: bool = False
    """Whether this call was answered from disk."""


class Cache:
    """The local download cache.

    Parameters
    ----------
    directory
        Where entries live; created on first write. Default:
        :func:`default_cache_dir`.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_cache_dir()

    def key(self, url: str, params: Params | None = None) -> str:
        """The entry name of a request: the SHA-256 of its full URL, query pairs sorted."""
        return hashlib.sha256(_canonical(url, params).encode("utf-8")).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / key, folder / (key + _META_SUFFIX)

    def get(self, url: str, params: Params | None = None) -> CacheEntry | None:
        """The cached answer to a request, or None when there is none (or it is unreadable)."""
        body, meta = self._paths(self.key(url, params))
        try:
            description = json.loads(meta.read_text(encoding="utf-8"))
            size = body.stat().st_size
        except (OSError, ValueError):
            return None
        return CacheEntry(
            path=body,
            url=str(description.get("url", url)),
            content_type=description.get("content_type"),
            filename=description.get("filename"),
            size=size,
            from_cache=True,
        )

    def put(
        self,
        url: str,
        params: Params | None,
        chunks: Iterable[bytes],
        *,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> CacheEntry:
        """Store a body read from ``chunks``; atomic: on any error nothing is left behind.

        The description is renamed into place before the body, and
        :meth:`get` needs both, so an entry is visible only when whole.

        Raises
        ------
        OSError
            Raised if the cache directory cannot be written.
        """
        key = self.key(url, params)
        body, meta = self._paths(key)
        body.parent.mkdir(parents=True, exist_ok=True)
        full_url = request_url(url, params)
        with _atomic_file(body) as handle:
            size = 0
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
            description = {"url": full_url, "content_type": content_type, "filename": filename, "size": size}
            with _atomic_file(meta) as meta_handle:
                meta_handle.write(json.dumps(description).encode("utf-8"))
        return CacheEntry(path=body, url=full_url, content_type=content_type, filename=filename, size=size)

    def clear(self) -> int:
        """Remove every entry (and any leftover temporary file); returns the number of files removed."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for folder in self.directory.iterdir():
            if folder.is_dir() and len(folder.name) == 2:
                removed += sum(1 for item in folder.iterdir() if item.is_file())
                shutil.rmtree(folder, ignore_errors=True)
        return removed


def _user_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); temporary files are created 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _atomic_file(target: Path, *, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``, renamed onto it when the block ends without an error.

    The same directory keeps the rename atomic (one file system); the data is
    flushed to disk first, so a crash after the rename cannot leave an empty
    file under the final name. ``mode``: the permissions to give the file
    (default: private, as cache entries are).
    """
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=_PART_PREFIX, delete=False)  # noqa: SIM115 - closed below, then renamed or removed
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(handle.name, mode)
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def http_get(
    session: requests.Session,
    url: str,
    params: Params | None = None,
    *,
    timeout: float = 60.0,
    stream: bool = False,
) -> requests.Response:
    """GET with the client's error mapping: refusals carry the server's own message.

    Raises
    ------
    ServerUnreachableError
        Raised if no connection could be made.
    ClientTimeoutError
        Raised if the server did not answer within ``timeout`` seconds.
    VocloudError
        Raised if the server answered with an error status (its message, status and URL attached).
    """
    return send(session, "GET", url, params=params, timeout=timeout, stream=stream)


def _filename(response: requests.Response) -> str | None:
    disposition = response.headers.get("Content-Disposition")
    if not disposition:
        return None
    message = Message()
    message["Content-Disposition"] = disposition
    name = message.get_filename()
    return Path(name).name if name else None


def download(
    session: requests.Session,
    url: str,
    params: Params | None = None,
    *,
    cache: Cache | None = None,
    dest: Path | None = None,
    timeout: float = 60.0,
    progress: bool | None = None,
    label: str | None = None,
    progress_stream: TextIO | None = None,
) -> CacheEntry:
    """Fetch a URL into the cache (or into ``dest``), or find it already there.

    With a cache, an entry for the same full URL is returned without any
    request; otherwise the body is streamed to disk with a progress bar and
    stored. With ``dest`` as well, the cached file is copied there (atomically).
    Without a cache, ``dest`` is required and is written directly.

    Parameters
    ----------
    session
        The HTTP session (credentials, proxies).
    url, params
        The request.
    cache
        The cache to read and fill; None fetches every time.
    dest
        Where the caller wants the file; None leaves it in the cache.
    timeout
        Seconds the server may take to answer (and between two chunks).
    progress
        Draw a progress bar: None draws one only on a terminal.
    label
        What the progress bar calls the download (default: the URL's last path element).
    progress_stream
        Where the progress bar is drawn (default stderr).

    Raises
    ------
    VocloudError
        Raised if the server refused, or answered 204 (nothing to send), or the
        connection broke during the transfer (see :func:`http_get` for the
        subclasses).
    ValueError
        Raised if neither a cache nor ``dest`` is given.
    """
    if cache is None and dest is None:
        raise ValueError("download needs a cache or a destination file")
    if cache is not None:
        hit = cache.get(url, params)
        if hit is not None:
            return _deliver(hit, dest)
    response = http_get(session, url, params, timeout=timeout, stream=True)
    with response:
        if response.status_code == 204:
            msg = f"{request_url(url, params)} answered 204 No Content: there is nothing to send for this request"
            raise VocloudError(msg, status=204, url=response.url)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = ProgressBar(label or Path(urlsplit(url).path).name or url, stream=progress_stream, enabled=progress)
        content_type = response.headers.get("Content-Type")
        filename = _filename(response)
        chunks = _counted(response, bar, total)
        try:
            if cache is not None:
                entry = cache.put(url, params, chunks, content_type=content_type, filename=filename)
            else:
                assert dest is not None  # checked above
                entry = _write(dest, chunks, url=request_url(url, params), content_type=content_type, filename=filename)
        except requests.RequestException as e:
            msg = f"the transfer of {request_url(url, params)} broke off: {connection_reason(e)}"
            raise VocloudError(msg, url=response.url) from e
        finally:
            bar.close()
    return entry if cache is None else _deliver(entry, dest)


def _counted(response: requests.Response, bar: ProgressBar, total: int | None) -> Iterator[bytes]:
    done = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        done += len(chunk)
        bar.bytes(done, total)
        yield chunk


def _write(
    dest: Path, chunks: Iterable[bytes], *, url: str, content_type: str | None, filename: str | None
) -> CacheEntry:
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with _atomic_file(dest, mode=_user_file_mode()) as handle:
        for chunk in chunks:
            handle.write(chunk)
            size += len(chunk)
    return CacheEntry(path=dest, url=url, content_type=content_type, filename=filename, size=size)


def _deliver(entry: CacheEntry, dest: Path | None) -> CacheEntry:
    """The entry itself, or a copy of its file at ``dest`` (written atomically, like the cache)."""
    if dest is None:
        return entry
    dest.parent.mkdir(parents=True, exist_ok=True)
    with entry.path.open("rb") as source, _atomic_file(dest, mode=_user_file_mode()) as handle:
        shutil.copyfileobj(source, handle)
    return CacheEntry(
        path=dest,
        url=entry.url,
        content_type=entry.content_type,
        filename=entry.filename,
        size=entry.size,
        from_cache=entry.from_cache,
    )
