"""Reading UWS request parameters: query string and body, names case-insensitive.

Uploads are streamed to a temporary file with a size bound; the client's file
name is never used. The same parser serves GET and POST.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..dali import SyncParams, form_pairs, query_pairs
from ..errors import PayloadTooLargeError, UsageError
from ..kinds.spec import ParameterValueError, parse_timestamp
from .phases import ExecutionPhase
from .service import Upload

__all__ = ["RequestParams", "parse_phase", "parse_timestamp_param", "read_params"]

_CHUNK = 1 << 16


@dataclass(kw_only=True)
class RequestParams(SyncParams):
    """Parameters of one UWS request: those of a sync request, plus the uploads of a multipart body."""

    uploads: list[Upload] = field(default_factory=list)

    def pop(self, name: str) -> list[str]:
        """Remove and return every value of ``name`` (lower-case)."""
        values = self.all(name)
        self.pairs = [(n, v) for n, v in self.pairs if n != name]
        return values

    def pop_one(self, name: str) -> str | None:
        """Remove ``name`` and return its value; the last one wins if repeated."""
        values = self.pop(name)
        return values[-1] if values else None

    def discard_uploads(self) -> None:
        """Delete temporary upload files that were not taken over by a job."""
        for upload in self.uploads:
            upload.path.unlink(missing_ok=True)


async def read_params(request: web.Request, *, upload_dir: Path, max_upload: int) -> RequestParams:
    """Collect query and body parameters; multipart file parts become uploads.

    Raises
    ------
    PayloadTooLargeError
        Raised if an upload or the whole body is larger than ``max_upload``.
    UsageError
        Raised if the body cannot be parsed.
    """
    params = RequestParams(pairs=query_pairs(request))
    if request.method != "POST" or not request.body_exists:
        return params
    if request.content_length is not None and request.content_length > max_upload + _CHUNK:
        msg = f"The request body is larger than the limit of {max_upload} bytes"
        raise PayloadTooLargeError(msg)
    if request.content_type.startswith("multipart/"):
        try:
            await _read_multipart(request, params, upload_dir=upload_dir, max_upload=max_upload)
        except (ValueError, AssertionError, HttpProcessingError) as e:
            params.discard_uploads()
            msg = f"Malformed multipart body: {e}"
            raise UsageError(msg) from e
        except BaseException:
            params.discard_uploads()
            raise
        return params
    params.pairs.extend(await form_pairs(request))
    return params


async def _read_multipart(
    request: web.Request, params: RequestParams, *, upload_dir: Path, max_upload: int
) -> None:
    reader = await request.multipart()
    total = 0
    upload_dir.mkdir(parents=True, exist_ok=True)
    while True:
        part = await reader.next()
        if part is None:
            return
        if not isinstance(part, BodyPartReader) or not part.name:
            msg = "Every multipart part needs a name (Content-Disposition: form-data; name=...)"
            raise UsageError(msg)
        name = part.name.lower()
        if part.filename is None:
            text = await part.read(decode=True)
            total += len(text)
            if total > max_upload:
                msg = f"The request body is larger than the limit of {max_upload} bytes"
                raise PayloadTooLargeError(msg)
            params.pairs.append((name, text.decode(part.get_charset("utf-8"), errors="replace")))
            continue
        handle = tempfile.NamedTemporaryFile(dir=upload_dir, prefix="upload-", delete=False)  # noqa: SIM115
        params.uploads.append(Upload(name=name, path=Path(handle.name)))
        with handle:
            while chunk := await part.read_chunk(_CHUNK):
                total += len(chunk)
                if total > max_upload:
                    msg = f"Upload {name!r} is larger than the limit of {max_upload} bytes"
                    raise PayloadTooLargeError(msg)
                handle.write(chunk)


def parse_phase(text: str, *, name: str = "PHASE") -> ExecutionPhase:
    """An execution phase named in a request.

    Raises
    ------
    UsageError
        Raised if the text is not a UWS phase.
    """
    try:
        return ExecutionPhase(text.strip().upper())
    except ValueError:
        allowed = ", ".join(p.value for p in ExecutionPhase)
        msg = f"{name}: {text!r} is not a UWS phase ({allowed})"
        raise UsageError(msg) from None


def parse_timestamp_param(text: str, *, name: str) -> datetime:
    """An ISO 8601 instant named in a request.

    Raises
    ------
    UsageError
        Raised if the text is not ISO 8601.
    """
    try:
        return parse_timestamp(text, name=name)
    except ParameterValueError as e:
        raise UsageError(str(e)) from e


def parse_int_param(text: str, *, name: str) -> int:
    """An integer named in a request.

    Raises
    ------
    UsageError
        Raised if the text is not an integer.
    """
    try:
        return int(text.strip())
    except ValueError:
        msg = f"{name}: {text!r} is not an integer"
        raise UsageError(msg) from None
