"""A session's selection of the archive: SSAP-style constraints, the ``preprocess`` parameters they become, and a test.

The selection is parsed by the SSA service's own reader (`vocloud.server.ssa.parse_query`),
so ``POS``, ``SIZE`` (a diameter, as in SSAP), ``BAND`` (metres, open ends
allowed), ``COLLECTION`` and ``TARGETNAME`` mean exactly what they mean at
``/ssa``. It is stored as the ``preprocess`` kind's parameters (``pos_ra``,
``radius``, ``band_min``, ...), which is what an iteration job selects with.

Whether a posted label's spectrum belongs to the selection is decided by
:meth:`Selection.matches` on the archive rows of the posted DIDs (found through
the unique index on the DID): the cost grows with the size of the post, not
with the archive or the selection, which may be millions of spectra. Storing
the selection's DIDs instead would cost a scan of the selection per session
and could go stale as spectra are ingested, while an iteration selects anew
each time. The test mirrors the SQL of `vocloud.server.archive.store.ArchiveStore.search`
term by term (same unit vectors, same comparisons), so a DID matches here
exactly when the iteration's query returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..archive.store import ConeQuery, SpectrumRecord, unit_vector
from ..errors import UsageError
from ..ml.preprocess_kind import PREPROCESS
from ..ssa import parse_query

__all__ = ["SELECTION_NAMES", "Selection"]

SELECTION_NAMES = ("pos", "size", "band", "collection", "targetname")
"""Request parameters (lower-case) that select spectra, as SSAP names them."""

_TO_PREPROCESS = {"collection": "COLLECTION", "target": "TARGETNAME"}
"""``preprocess`` string parameters and the request parameter each comes from."""


def _ascii_fold(text: str) -> str:
    # SQLite's NOCASE folds ASCII letters only; so must the test that mirrors it.
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The archive constraints of a session (``None``: unconstrained)."""

    query: ConeQuery

    @classmethod
    def from_request(cls, values: Mapping[str, str]) -> Selection:
        """Parse SSAP-style parameters (lower-case names of `SELECTION_NAMES`; absent ones unconstrained).

        Raises
        ------
        UsageError
            Raised if a value is invalid; the message names the parameter.
        """
        ssap = {name.upper(): value for name, value in values.items() if name in SELECTION_NAMES}
        query = parse_query({**ssap, "REQUEST": "queryData"}).search
        selection = cls(query=query)
        # The preprocess kind's declarations bound what an iteration job accepts.
        for name, value in selection.parameters().items():
            spec = PREPROCESS.parameter(name)
            if spec is not None and isinstance(value, str) and len(value) > spec.max_length:
                msg = f"{_TO_PREPROCESS.get(name, name)}: longer than {spec.max_length} characters"
                raise UsageError(msg)
        return selection

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> Selection:
        """The selection stored as ``preprocess`` parameters (the inverse of :meth:`parameters`)."""
        band_min, band_max = params.get("band_min"), params.get("band_max")
        return cls(
            query=ConeQuery(
                ra=params.get("pos_ra"),
                dec=params.get("pos_dec"),
                radius=params.get("radius"),
                band=None if band_min is None and band_max is None else (band_min, band_max),
                collection=params.get("collection"),
                target_name=params.get("target"),
            )
        )

    def parameters(self) -> dict[str, Any]:
        """The constraints as ``preprocess`` parameters; unconstrained ones are left out."""
        q = self.query
        values: dict[str, Any] = {}
        if q.ra is not None and q.dec is not None and q.radius is not None:
            values.update(pos_ra=q.ra, pos_dec=q.dec, radius=q.radius)
        if q.band is not None:
            if q.band[0] is not None:
                values["band_min"] = q.band[0]
            if q.band[1] is not None:
                values["band_max"] = q.band[1]
        if q.collection is not None:
            values["collection"] = q.collection
        if q.target_name is not None:
            values["target"] = q.target_name
        return values

    def matches(self, record: SpectrumRecord) -> bool:
        """Whether the archive's search with this selection returns ``record`` (see the module's docstring)."""
        q = self.query
        if q.ra is not None and q.dec is not None and q.radius is not None:
            if record.s_ra is None or record.s_dec is None:
                return False
            px, py, pz = unit_vector(record.s_ra, record.s_dec)
            cx, cy, cz = unit_vector(q.ra, q.dec)
            if px * cx + py * cy + pz * cz < math.cos(math.radians(min(q.radius, 180.0))):
                return False
        if q.band is not None:
            low, high = q.band
            if (low is not None and record.em_max < low) or (high is not None and record.em_min > high):
                return False
        if q.target_name is not None and (
            record.target_name is None or _ascii_fold(record.target_name) != _ascii_fold(q.target_name)
        ):
            return False
        return q.collection is None or record.obs_collection == q.collection
