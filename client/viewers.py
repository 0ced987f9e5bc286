"""Show active-learning candidates in the desktop VO tools: table to TOPCAT, spectrum to SPLAT, sky to Aladin.

`CandidateViewer` is what the labeller calls for every candidate the expert
looks at. It reaches each candidate's data the way any VO client would, from
the candidates table itself: the table's DataLink service descriptor gives the
row's DataLink document, whose ``#cutout`` service (SODA) gives a cutout around
the line of interest (H-alpha by default); the cutout's URL goes to spectrum
viewers with its SSA metadata, the row's position to sky viewers, and the row
number to table viewers as a highlight.

Whatever is not connected is skipped: without a hub, or with only some tools
on it, labelling goes on. Failures of a tool that is connected are logged and
reported in the returned `Shown`, never raised, for the same reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit
from urllib.request import url2pathname

import astropy.units as u
import numpy as np
import requests
from astropy.io.votable import parse
from pyvo.dal import DALResults
from pyvo.dal.adhoc import DATALINK_IVOID, DatalinkQuery, DatalinkResultsMixin, SodaQuery
from pyvo.dal.exceptions import DALAccessError, DALFormatError, DALServiceError

from .samp import (
    FITS_MIME,
    MTYPE_HIGHLIGHT_ROW,
    MTYPE_POINT_AT_SKY,
    MTYPE_SPECTRUM_LOAD,
    SampClient,
    SampError,
    SampReply,
    SampReplyError,
    spectrum_meta,
)

__all__ = [
    "CUTOUT_FLUX_COLUMN",
    "CUTOUT_SPECTRAL_COLUMN",
    "CUTOUT_SPECTRAL_UNIT",
    "HALPHA_BAND_M",
    "CandidateViewer",
    "Shown",
]

logger = logging.getLogger(__name__)

HALPHA_BAND_M = (6512.8e-10, 6612.8e-10)
"""H-alpha (6562.8 Å) ± 50 Å, in metres as SODA's BAND wants it: the line the archive's classes differ by."""

CUTOUT_SPECTRAL_COLUMN = "WAVELENGTH"
CUTOUT_FLUX_COLUMN = "FLUX"
CUTOUT_SPECTRAL_UNIT = "Angstrom"
"""The columns of vocloud's SODA cutouts (a FITS binary table, see ``vocloud.server.cutout``), named to SPLAT."""

_SETTLE_S = 3.0
"""Seconds after a table load during which a refused highlight is tried again (TOPCAT needs well under one)."""
_SETTLE_PAUSE_S = 0.2

_SPECTRAL_UCD = "em.wl"
_FLUX_UCD = "phot.flux.density"


class _Results(DatalinkResultsMixin, DALResults):  # type: ignore[misc]  # pyvo is untyped
    """Any VOTable result with DataLink service descriptors (pyvo's SSA and TAP results are built the same way)."""


@dataclass
class Shown:
    """What `CandidateViewer.show` sent where.

    Attributes
    ----------
    spectrum_url
        The URL sent as the spectrum (a SODA cutout, else the whole file), or None.
    sent
        MType → ``samp.name`` of every peer that accepted it.
    failed
        MType → why it failed (a peer's error, or no URL to send).
    """

    spectrum_url: str | None = None
    sent: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _value(row: Any, name: str) -> Any:
    """A cell of an astropy row, or None when the column is absent or the cell masked (null) or blank."""
    try:
        value = row[name]
    except (KeyError, IndexError, ValueError):
        return None
    if np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class CandidateViewer:
    """Send candidates of an active-learning iteration to the VO tools on the SAMP hub.

    Parameters
    ----------
    samp
        A connected client, or None to show nothing (no hub).
    candidates_url
        URL (``http(s)://`` or ``file://``) of the candidates VOTable the rows
        come from: its DataLink descriptor leads to the spectra, and table
        viewers know the table by this URL.
    table_id
        The ``table-id`` the table is (or will be, by `load_table`) known by.
    http
        The HTTP session for DataLink (credentials of the vocloud server).
    band
        Wavelength interval of the cutout, in metres; None sends whole spectra.
    name
        Name of the table in table viewers.
    """

    def __init__(
        self,
        samp: SampClient | None,
        candidates_url: str,
        table_id: str,
        *,
        http: requests.Session | None = None,
        band: tuple[float, float] | None = HALPHA_BAND_M,
        name: str | None = None,
    ) -> None:
        self.samp = samp
        self.candidates_url = candidates_url
        self.table_id = table_id
        self.http = http or requests.Session()
        self.band = band
        self.name = name or table_id
        self._results: _Results | None = None
        self._holders: set[str] | None = None
        self._loaded_at: float | None = None
        """Client ids that loaded the table through `load_table`; None when it was not sent (then: every one)."""
        self._spectra: dict[str, tuple[str, str | None, bool]] = {}
        """Publisher DID → (URL, media type, whether it is vocloud's cutout): DataLink asked once per spectrum."""

    @property
    def _active(self) -> bool:
        return self.samp is not None and self.samp.connected

    def load_table(self) -> dict[str, SampReply]:
        """Send the candidates table to the table viewers (TOPCAT); returns their replies, {} without a hub.

        Once per table: TOPCAT refuses a ``table-id`` it has received already,
        so a new table (the next iteration's) needs a new viewer and table id.

        Raises
        ------
        SampReplyError
            Raised if a viewer could not load the table: unlike a single
            candidate, a table that is not shown is worth saying so.
        """
        if self.samp is None or not self._active:
            return {}
        replies = self.samp.send_table(self.candidates_url, table_id=self.table_id, name=self.name)
        self._holders = {client_id for client_id, reply in replies.items() if reply.ok}
        self._loaded_at = time.monotonic()
        return replies

    def show(self, row: Any, index: int, *, highlight: bool = True) -> Shown:
        """Bring one candidate up: its spectrum to spectrum viewers, its position to sky viewers, its row highlighted.

        Parameters
        ----------
        row
            The candidate (an astropy `~astropy.table.Row` with the candidates
            table's columns: ``id``, ``ra``, ``dec``, ``target``, ``access_url``).
        index
            Its 0-based row number in the table at ``candidates_url``.
        highlight
            Whether to highlight the row in the table viewers. False when a
            table viewer (TOPCAT) highlighted it itself: sending it back would
            only echo, and a viewer that broadcasts what it is sent would loop.
        """
        shown = Shown()
        if self.samp is None or not self._active:
            return shown
        samp = self.samp
        did = _value(row, "id")
        target = _value(row, "target")
        ra, dec = _finite(_value(row, "ra")), _finite(_value(row, "dec"))
        spectrum = self.spectrum_url(row)
        if spectrum is None:
            shown.failed[MTYPE_SPECTRUM_LOAD] = f"no spectrum URL for {did}"
        else:
            url, media_type, cutout = spectrum
            shown.spectrum_url = url
            meta = spectrum_meta(
                url=url, media_type=media_type, target=str(target) if target else None, ra=ra, dec=dec,
                title=f"{target or did} (vocloud candidate {index + 1})", publisher_did=did,
                spectral_column=CUTOUT_SPECTRAL_COLUMN if cutout else None,
                flux_column=CUTOUT_FLUX_COLUMN if cutout else None,
                spectral_unit=CUTOUT_SPECTRAL_UNIT if cutout else None,
                spectral_ucd=_SPECTRAL_UCD, flux_ucd=_FLUX_UCD,
            )  # fmt: skip
            name = str(target or did or url)
            self._send(shown, MTYPE_SPECTRUM_LOAD, partial(samp.send_spectrum, url, meta, spectrum_id=did, name=name))
        if ra is not None and dec is not None:
            self._send(shown, MTYPE_POINT_AT_SKY, partial(samp.point_at, ra, dec))
        # Once the table was sent, only to the tools that loaded it: the others (Aladin) answer
        # every highlight of a table they do not hold with an error.
        targets: list[str | None] = [None] if highlight else []
        if highlight and self._holders is not None:
            try:
                targets = [*sorted(self._holders & set(samp.clients(MTYPE_HIGHLIGHT_ROW)))]
            except SampError as e:
                shown.failed[MTYPE_HIGHLIGHT_ROW] = str(e)
                targets = []
        for to in targets:
            send = partial(samp.highlight_row, self.table_id, self.candidates_url, index, to=to)
            self._send(shown, MTYPE_HIGHLIGHT_ROW, self._settled(send))
        return shown

    def _settled(self, send: Callable[[], Mapping[str, SampReply]]) -> Callable[[], Mapping[str, SampReply]]:
        """``send``, tried again for a moment after the table was loaded.

        TOPCAT answers ``samp.ok`` to a table load before it lists the table,
        and refuses a highlight of it in between ("No table with table-id"):
        the first candidate, shown at once, would never be highlighted.
        """

        def attempt() -> Mapping[str, SampReply]:
            while True:
                try:
                    return send()
                except SampReplyError:
                    if self._loaded_at is None or time.monotonic() - self._loaded_at > _SETTLE_S:
                        raise
                    time.sleep(_SETTLE_PAUSE_S)

        return attempt

    @staticmethod
    def _send(shown: Shown, mtype: str, send: Callable[[], Mapping[str, SampReply]]) -> None:
        try:
            replies = send()
        except SampError as e:
            shown.failed[mtype] = "; ".join(filter(None, [shown.failed.get(mtype), str(e)]))
            replies = getattr(e, "replies", {})
            logger.warning("%s", e)
        accepted = [r.name for r in replies.values() if r.ok]
        if accepted:
            shown.sent.setdefault(mtype, []).extend(accepted)

    def spectrum_url(self, row: Any) -> tuple[str, str | None, bool] | None:
        """The URL to send for a candidate: (URL, media type or None, whether it is a vocloud SODA cutout).

        The SODA cutout of `band` when the row's DataLink document offers a
        ``#cutout`` service whose BAND range meets it; else the ``#this`` link;
        else the row's ``access_url``. None when there is none of these.
        """
        did = _value(row, "id")
        if did is not None and str(did) in self._spectra:
            return self._spectra[str(did)]
        found: tuple[str, str | None, bool] | None = None
        try:
            found = self._from_datalink(row)
        except (DALServiceError, DALFormatError, DALAccessError, requests.RequestException, OSError) as e:
            logger.warning("No DataLink for candidate %s: %s", did, e)
        if found is None:
            access = _value(row, "access_url")
            found = (str(access), None, False) if access else None
        if found is not None and did is not None:
            self._spectra[str(did)] = found
        return found

    def _candidates(self) -> _Results:
        if self._results is None:
            parts = urlsplit(self.candidates_url)
            if parts.scheme in ("", "file"):
                path = Path(url2pathname(unquote(parts.path)))
                self._results = _Results(parse(path), url=self.candidates_url, session=self.http)
            else:
                self._results = _Results.from_result_url(self.candidates_url, session=self.http)
        return self._results

    def _from_datalink(self, row: Any) -> tuple[str, str | None, bool] | None:
        results = self._candidates()
        try:
            descriptor = results.get_adhocservice_by_ivoid(DATALINK_IVOID)
        except DALServiceError:
            return None  # A table without DataLink: the row's own access URL will do.
        # DataLink input parameters refer to FIELDs by their XML ID: give the row's values under both.
        values: dict[str, Any] = {}
        for column in results.votable.get_first_table().fields:
            value = _value(row, column.name)
            if value is not None:
                values[column.name] = value
                if column.ID:
                    values[column.ID] = value
        links = DatalinkQuery.from_resource(values, descriptor, session=self.http).execute()
        if self.band is not None:
            for cutout in links.bysemantics("#cutout", include_narrower=False):
                if not cutout.service_def:
                    continue
                soda = links.get_adhocservice_by_id(cutout.service_def)
                if not _band_overlaps(soda, self.band):
                    break
                query = SodaQuery.from_resource(cutout, soda, band=list(self.band) * u.m, session=self.http)
                url = f"{query.baseurl}?{urlencode(dict(query), quote_via=quote)}"
                return url, FITS_MIME, True
        for this in links.bysemantics("#this", include_narrower=False):
            if this.access_url:
                return str(this.access_url), this.content_type or None, False
        return None


def _band_overlaps(soda: Any, band: tuple[float, float]) -> bool:
    """Whether the SODA descriptor's BAND range (its VALUES, when it says) meets ``band``: else the cutout is empty."""
    for group in soda.groups:
        for param in group.entries:
            if getattr(param, "name", None) != "BAND" or param.values is None:
                continue
            low, high = param.values.min, param.values.max
            if low is not None and float(low) > band[1]:
                return False
            if high is not None and float(high) < band[0]:
                return False
    return True
