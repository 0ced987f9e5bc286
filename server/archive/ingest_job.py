"""The runner of the ``ingest`` job kind: fill the archive from uploads, URLs, SSAP results or a directory.

Runs in a worker process (no web stack). Every source becomes one line of the
report (the job's ``result``, a VOTable): a file that cannot be read or fetched
is reported and skipped and never stops the others. Remote spectra are staged
by their SSA ``accref`` or, where a response only offers a DataLink service
descriptor, by the ``#this`` link of each row's DataLink document.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import requests
from astropy.io.votable.tree import Param, VOTableFile

from ..kinds import JobContext, JobUsageError
from ..votable import FieldSpec, ResultDocument, parse_tolerant
from .ingest import IngestOutcome, IngestStatus, ingest_bytes
from .service import Archive

__all__ = ["run_ingest"]

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Largest single spectrum file fetched or unpacked."""

MAX_BUNDLE_BYTES = 4 * 1024 * 1024 * 1024
"""Largest total unpacked from one uploaded bundle (a guard against archive bombs)."""

FETCH_TIMEOUT_S = 60.0

DATALINK_STANDARD = "ivo://ivoa.net/std/datalink#links"
"""Prefix of DataLink service descriptors' standardID (any 1.x), compared case-insensitively."""

Loader = Callable[[], bytes]


@dataclass(frozen=True)
class _Source:
    label: str
    load: Loader


def run_ingest(params: dict[str, Any], context: JobContext) -> None:
    """Ingest every source named in ``params`` and write the report as the result."""
    if context.server is None:
        msg = "This server has no archive to ingest into"
        raise JobUsageError(msg)
    # Listed first so progress can count; files are only read one at a time.
    sources = list(_sources(params, context))
    if not sources:
        msg = "Nothing to ingest: give file, bundle, url, votable, ssa_url or directory"
        raise JobUsageError(msg)
    archive = Archive(context.server.archive_dir)
    outcomes: list[IngestOutcome] = []
    try:
        for index, source in enumerate(sources):
            context.progress(index / len(sources), f"{index} of {len(sources)}: {source.label}")
            try:
                data = source.load()
            except (OSError, ValueError, requests.RequestException) as e:
                outcomes.append(IngestOutcome(source=source.label, status=IngestStatus.FAILED, message=str(e)))
                continue
            outcomes.append(ingest_bytes(archive, data, source=source.label))
    finally:
        archive.close()
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in IngestStatus}
    summary = ", ".join(f"{n} {status.value}" for status, n in counts.items())
    context.result_path("result").write_bytes(_report(outcomes))
    context.progress(1.0, summary)


_REPORT = ResultDocument(
    fields=(
        FieldSpec(name="source", datatype="unicodeChar", arraysize="*", description="Where the spectrum came from"),
        FieldSpec(
            name="status", datatype="char", arraysize="*", description="added, duplicate (already archived) or failed"
        ),
        FieldSpec(
            name="publisher_did",
            datatype="char",
            arraysize="*",
            ucd="meta.ref.ivoid",
            description="Publisher DID of the archived spectrum",
        ),
        FieldSpec(name="message", datatype="unicodeChar", arraysize="*", description="Why a source failed"),
    ),
    description="Report of an ingest job: one row per source",
)


def _report(outcomes: list[IngestOutcome]) -> bytes:
    return _REPORT.write(
        {
            "source": [o.source for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "publisher_did": [o.publisher_did for o in outcomes],
            "message": [o.message or None for o in outcomes],
        },
        rows=len(outcomes),
    )


# -- sources ----------------------------------------------------------------------------------


def _sources(params: dict[str, Any], context: JobContext) -> Iterator[_Source]:
    for index, path in enumerate(params.get("file", []), start=1):
        yield _Source(f"uploaded file {index}", _reader(path))
    if (bundle := params.get("bundle")) is not None:
        yield from _bundle_sources(bundle, context.workdir / "unpacked")
    for url in params.get("url", []):
        yield _Source(url, _fetcher(url))
    if (votable := params.get("votable")) is not None:
        yield from _votable_sources(Path(votable).read_bytes(), origin="uploaded VOTable")
    if (ssa_url := params.get("ssa_url")) is not None:
        query = params.get("ssa_query") or ""
        separator = "&" if "?" in ssa_url else "?"
        url = f"{ssa_url}{separator}{urlencode({'REQUEST': 'queryData'})}"
        if query:
            url += f"&{query.lstrip('?&')}"
        yield from _votable_sources(_fetch(url), origin=url)
    if (directory := params.get("directory")) is not None:
        roots = context.server.ingest_roots if context.server is not None else ()
        yield from _directory_sources(directory, roots)


def _reader(path: Path) -> Loader:
    def load() -> bytes:
        return _bounded(path.read_bytes(), str(path.name))

    return load


def _bounded(data: bytes, label: str) -> bytes:
    if len(data) > MAX_FILE_BYTES:
        msg = f"{label} is larger than {MAX_FILE_BYTES} bytes"
        raise ValueError(msg)
    return data


def _fetcher(url: str) -> Loader:
    return lambda: _fetch(url)


def _fetch(url: str) -> bytes:
    """GET an http(s) URL, bounded in size and time."""
    if urlsplit(url).scheme not in ("http", "https"):
        msg = f"Only http and https URLs can be fetched, not {url!r}"
        raise ValueError(msg)
    with requests.get(url, stream=True, timeout=FETCH_TIMEOUT_S) as response:
        response.raise_for_status()
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_content(1 << 16):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                msg = f"{url} is larger than {MAX_FILE_BYTES} bytes"
                raise ValueError(msg)
            chunks.append(chunk)
    return b"".join(chunks)


def _bundle_sources(path: Path, scratch: Path) -> Iterator[_Source]:
    """Members of an uploaded zip or tar(.gz) archive, unpacked one by one into ``scratch``.

    Members get numbered names made here (their own names are only shown in
    the report), so nothing in the archive chooses a path; sizes are bounded
    against archive bombs.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    total = 0
    for index, (name, size, handle) in enumerate(_members(path), start=1):
        total += size
        if size > MAX_FILE_BYTES or total > MAX_BUNDLE_BYTES:
            msg = f"The bundle unpacks to more than its limits ({name})"
            raise JobUsageError(msg)
        target = scratch / f"member-{index}"
        with handle, target.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
        yield _Source(f"bundle:{name}", _reader(target))


def _members(path: Path) -> Iterator[tuple[str, int, IO[bytes]]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zipped:
            for info in zipped.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, zipped.open(info)
        return
    try:
        tarred = tarfile.open(path)  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as e:
        msg = f"The bundle is neither a zip nor a tar archive: {e}"
        raise JobUsageError(msg) from e
    with tarred:
        for member in tarred:
            handle = tarred.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield member.name, member.size, handle


def _directory_sources(directory: str, roots: tuple[Path, ...]) -> Iterator[_Source]:
    """Files below a directory the operator allowed (``ingest_roots``), recursively."""
    target = Path(directory).resolve()
    root = next((r for r in roots if target == r or r in target.parents), None)
    if root is None:
        msg = (
            f"The directory {directory!r} is not inside a directory this server may read;"
            " the operator lists those in the ingest_roots setting"
        )
        raise JobUsageError(msg)
    if not target.is_dir():
        msg = f"{directory!r} is not a directory"
        raise JobUsageError(msg)
    for path in sorted(target.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            yield _Source(str(path.relative_to(root)), _reader(path))


def _votable_sources(data: bytes, *, origin: str) -> Iterator[_Source]:
    """The spectra an SSAP-like VOTable points to: by accref, else through DataLink."""
    try:
        document = parse_tolerant(data)
        table = document.get_first_table()
    except (ValueError, IndexError) as e:
        msg = f"{origin} is not a readable VOTable: {e}"
        raise JobUsageError(msg) from e
    _raise_on_error_status(document, origin)
    fields = list(table.fields)
    accref = _find_field(fields, utypes=("access.reference",), names=("accref", "access_url"))
    if accref is not None:
        for value in table.array[accref.ID or accref.name]:
            text = _text(value)
            if text:
                yield _Source(text, _fetcher(text))
        return
    links = _datalink_descriptor(document, fields)
    if links is None:
        msg = f"{origin} has neither an access reference column nor a DataLink service descriptor"
        raise JobUsageError(msg)
    service_url, id_field = links
    for value in table.array[id_field]:
        identifier = _text(value)
        if identifier:
            yield _Source(identifier, _via_datalink(service_url, identifier))


def _raise_on_error_status(document: VOTableFile, origin: str) -> None:
    for resource in document.resources:
        for info in resource.infos:
            if info.name == "QUERY_STATUS" and str(info.value).upper() == "ERROR":
                msg = f"{origin} answered with an error: {info.content or ''}".strip()
                raise JobUsageError(msg)


def _find_field(fields: list[Any], *, utypes: tuple[str, ...], names: tuple[str, ...]) -> Any | None:
    for field in fields:
        utype = (field.utype or "").lower()
        if any(utype.endswith(u) for u in utypes):
            return field
    return next((f for f in fields if (f.name or "").lower() in names), None)


def _datalink_descriptor(document: VOTableFile, fields: list[Any]) -> tuple[str, str] | None:
    """(access URL, ID column key) of the first DataLink service descriptor, if any."""
    for resource in document.resources:
        if resource.type != "meta" or (resource.utype or "").lower() != "adhoc:service":
            continue
        params = {p.name: p for p in resource.params}
        standard = str(params["standardID"].value) if "standardID" in params else ""
        if not standard.lower().startswith(DATALINK_STANDARD) or "accessURL" not in params:
            continue
        # DataLink 1.1 section 4.1: the input parameters sit in a GROUP named inputParams.
        ids = [e for g in resource.groups for e in g.entries if isinstance(e, Param) and e.name == "ID"]
        ref = ids[0].ref if ids else None
        field = next((f for f in fields if ref is not None and ref in (f.ID, f.name)), None)
        if field is not None:
            return str(params["accessURL"].value), field.ID or field.name
    return None


def _via_datalink(service_url: str, identifier: str) -> Loader:
    def load() -> bytes:
        separator = "&" if "?" in service_url else "?"
        document = parse_tolerant(_fetch(f"{service_url}{separator}{urlencode({'ID': identifier})}"))
        table = document.get_first_table()
        for row in table.array:
            if _text(row["semantics"]) == "#this" and _text(row["access_url"]):
                return _fetch(_text(row["access_url"]))
        msg = f"The DataLink document of {identifier} has no #this link"
        raise ValueError(msg)

    return load


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    if value is None or (hasattr(value, "mask") and bool(value.mask)):
        return ""
    return str(value).strip()
