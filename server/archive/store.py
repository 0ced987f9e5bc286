"""The spectra archive's metadata in SQLite: an ObsCore 1.1-shaped table plus a positional index.

Positions are indexed in an SQLite R-tree over unit vectors (x, y, z): a cone
on the sky is a ball in 3-D, whose bounding box the R-tree answers without the
special cases of RA wrap-around and the poles; an exact angular test then
trims the box's corners. Each spectrum is added in one transaction (row and
index entry together), keyed by its publisher DID, so adding the same DID twice
changes nothing and a failure never leaves half a row. Many spectra known at once
(a large catalogue of metadata, the benchmark's million rows) go in through
:meth:`ArchiveStore.add_many`, in one transaction.

This module does no HTTP and is used by the web server and by ingest workers
alike (SQLite in WAL mode with a busy timeout lets them share the file).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spectra.model import SpectrumMeta
from ..sqlite import open_database, transaction

__all__ = ["ArchiveStore", "ConeQuery", "NewSpectrum", "SpectrumRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spectra (
    id INTEGER PRIMARY KEY,
    obs_publisher_did TEXT NOT NULL UNIQUE,
    obs_collection TEXT,
    facility_name TEXT,
    instrument_name TEXT,
    target_name TEXT,
    s_ra REAL,
    s_dec REAL,
    t_min REAL,
    t_max REAL,
    t_exptime REAL,
    em_min REAL NOT NULL,
    em_max REAL NOT NULL,
    em_res_power REAL,
    n_points INTEGER NOT NULL,
    flux_unit TEXT,
    flux_calibration TEXT NOT NULL,
    medium TEXT NOT NULL,
    access_format TEXT NOT NULL,
    access_estsize INTEGER NOT NULL,
    file TEXT NOT NULL,
    source TEXT,
    header TEXT NOT NULL,
    ingested REAL NOT NULL,
    px REAL,
    py REAL,
    pz REAL
);
CREATE INDEX IF NOT EXISTS spectra_by_collection ON spectra (obs_collection);
CREATE INDEX IF NOT EXISTS spectra_by_target ON spectra (target_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS spectra_by_time ON spectra (t_min);
CREATE VIRTUAL TABLE IF NOT EXISTS spectra_position USING rtree(id, x0, x1, y0, y1, z0, z1);
"""
# The R-tree keeps 32-bit bounds (rounded outwards); the exact angular test uses
# the double-precision unit vector kept in px, py, pz.

_COLUMNS = (
    "id, obs_publisher_did, obs_collection, facility_name, instrument_name, target_name, s_ra, s_dec,"
    " t_min, t_max, t_exptime, em_min, em_max, em_res_power, n_points, flux_unit, flux_calibration,"
    " medium, access_format, access_estsize, file, source, header, ingested"
)


@dataclass(frozen=True, kw_only=True)
class SpectrumRecord:
    """One archived spectrum's metadata (em_* in metres, t_* in MJD, s_* in degrees)."""

    id: int
    obs_publisher_did: str
    obs_collection: str | None
    facility_name: str | None
    instrument_name: str | None
    target_name: str | None
    s_ra: float | None
    s_dec: float | None
    t_min: float | None
    t_max: float | None
    t_exptime: float | None
    em_min: float
    em_max: float
    em_res_power: float | None
    n_points: int
    flux_unit: str | None
    flux_calibration: str
    medium: str
    access_format: str
    access_estsize: int
    file: str
    """Path of the stored file, relative to the archive directory (server-made, never from a request)."""
    source: str | None
    header: dict[str, str]
    ingested: float


@dataclass(frozen=True, kw_only=True)
class NewSpectrum:
    """One spectrum for :meth:`ArchiveStore.add_many`: the arguments of :meth:`ArchiveStore.add`."""

    meta: SpectrumMeta
    em_min: float
    em_max: float
    n_points: int
    access_format: str
    size: int
    file: str
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class ConeQuery:
    """Constraints of an archive search; ``None`` means unconstrained.

    Parameters
    ----------
    ra, dec, radius
        Cone centre and radius in degrees.
    band
        Spectral interval in metres; a spectrum matches if it overlaps it.
        Either end may be ``None`` (open interval).
    time
        Time interval in MJD; a spectrum matches if its exposure overlaps it.
    target_name
        Case-insensitive exact target name.
    collection
        Exact collection name.
    publisher_did
        Exact publisher DID.
    limit
        Most rows to return (the caller asks one more to detect overflow).
    """

    ra: float | None = None
    dec: float | None = None
    radius: float | None = None
    band: tuple[float | None, float | None] | None = None
    time: tuple[float | None, float | None] | None = None
    target_name: str | None = None
    collection: str | None = None
    publisher_did: str | None = None
    limit: int | None = None


def unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    """Cartesian unit vector of an ICRS position in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


class ArchiveStore:
    """SQLite storage of archived spectra.

    Parameters
    ----------
    path
        The database file; created with its schema if absent.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def add(
        self,
        meta: SpectrumMeta,
        *,
        em_min: float,
        em_max: float,
        n_points: int,
        access_format: str,
        size: int,
        file: str,
        source: str | None,
    ) -> tuple[int, bool]:
        """Add a spectrum unless its publisher DID is already archived.

        Returns
        -------
        tuple
            The row id and whether the spectrum was new.
        """
        with transaction(self._db) as db:
            existing = db.execute(
                "SELECT id FROM spectra WHERE obs_publisher_did = ?", (meta.publisher_did,)
            ).fetchone()
            if existing is not None:
                return int(existing[0]), False
            values = _values(
                NewSpectrum(
                    meta=meta, em_min=em_min, em_max=em_max, n_points=n_points, access_format=access_format,
                    size=size, file=file, source=source,
                ),
                ingested=time.time(),
            )  # fmt: skip
            cursor = db.execute(_INSERT, values)
            row_id = int(cursor.lastrowid or 0)
            if values[-1] is not None:
                x, y, z = values[-3:]
                db.execute("INSERT INTO spectra_position VALUES (?, ?, ?, ?, ?, ?, ?)", (row_id, x, x, y, y, z, z))
            return row_id, True

    def add_many(self, spectra: Iterable[NewSpectrum]) -> int:
        """Add many spectra in one transaction, skipping publisher DIDs already archived; returns how many were new.

        :meth:`add` commits each spectrum on its own, which suits ingest (a
        failure loses one file, never a batch) but fills an archive at a few
        thousand rows a second; here the rows go in through one statement and
        the positional index is built from them in another, several times
        faster. All or nothing: an error rolls the whole batch back.
        ``spectra`` is consumed lazily, so a generator keeps memory flat.
        """
        with transaction(self._db) as db:
            before = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM spectra").fetchone()[0])
            ingested = time.time()
            db.executemany(
                f"{_INSERT} ON CONFLICT (obs_publisher_did) DO NOTHING",
                (_values(s, ingested=ingested) for s in spectra),
            )
            # Row ids grow and the write lock is held: the new rows, and only they, lie above ``before``.
            db.execute(
                "INSERT INTO spectra_position SELECT id, px, px, py, py, pz, pz FROM spectra"
                " WHERE id > ? AND px IS NOT NULL",
                (before,),
            )
            return int(db.execute("SELECT COUNT(*) FROM spectra WHERE id > ?", (before,)).fetchone()[0])

    def get(self, publisher_did: str) -> SpectrumRecord | None:
        """The spectrum of that publisher DID, if archived."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM spectra WHERE obs_publisher_did = ?", (publisher_did,)
        ).fetchone()
        return None if row is None else _record(row)

    def get_many(self, publisher_dids: Sequence[str]) -> dict[str, SpectrumRecord]:
        """The archived spectra among ``publisher_dids``, by DID."""
        found: dict[str, SpectrumRecord] = {}
        for start in range(0, len(publisher_dids), 500):
            chunk = list(publisher_dids[start : start + 500])
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM spectra WHERE obs_publisher_did IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                record = _record(row)
                found[record.obs_publisher_did] = record
        return found

    def count(self) -> int:
        """Number of archived spectra."""
        return int(self._db.execute("SELECT COUNT(*) FROM spectra").fetchone()[0])

    def search(self, query: ConeQuery) -> list[SpectrumRecord]:
        """Spectra matching every constraint of ``query``, in id order."""
        sql = f"SELECT {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))} FROM spectra AS s"
        where: list[str] = []
        args: list[Any] = []
        if query.ra is not None and query.dec is not None and query.radius is not None:
            # The cone is inside the ball of radius 2 sin(r/2) (the chord) around
            # the centre's unit vector; the R-tree answers the ball's box.
            cx, cy, cz = unit_vector(query.ra, query.dec)
            chord = 2 * math.sin(math.radians(min(query.radius, 180.0)) / 2)
            sql += " JOIN spectra_position AS p ON p.id = s.id"
            where += ["p.x1 >= ? AND p.x0 <= ?", "p.y1 >= ? AND p.y0 <= ?", "p.z1 >= ? AND p.z0 <= ?"]
            args += [cx - chord, cx + chord, cy - chord, cy + chord, cz - chord, cz + chord]
            where.append("(s.px * ? + s.py * ? + s.pz * ?) >= ?")
            args += [cx, cy, cz, math.cos(math.radians(min(query.radius, 180.0)))]
        if query.band is not None:
            low, high = query.band
            if low is not None:
                where.append("s.em_max >= ?")
                args.append(low)
            if high is not None:
                where.append("s.em_min <= ?")
                args.append(high)
        if query.time is not None:
            start, end = query.time
            if start is not None:
                where.append("COALESCE(s.t_max, s.t_min) >= ?")
                args.append(start)
            if end is not None:
                where.append("s.t_min <= ?")
                args.append(end)
        if query.target_name is not None:
            where.append("s.target_name = ? COLLATE NOCASE")
            args.append(query.target_name)
        if query.collection is not None:
            where.append("s.obs_collection = ?")
            args.append(query.collection)
        if query.publisher_did is not None:
            where.append("s.obs_publisher_did = ?")
            args.append(query.publisher_did)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.id"
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit)
        return [_record(row) for row in self._db.execute(sql, args)]


_INSERT = f"INSERT INTO spectra ({_COLUMNS}, px, py, pz) VALUES (NULL{', ?' * 26})"


def _values(spectrum: NewSpectrum, *, ingested: float) -> tuple[Any, ...]:
    """The row of ``_INSERT`` (after its NULL id), ending with the unit vector or three NULLs."""
    meta = spectrum.meta
    vector = unit_vector(meta.ra, meta.dec) if meta.ra is not None and meta.dec is not None else None
    return (
        meta.publisher_did, meta.obs_collection, meta.facility_name, meta.instrument_name, meta.target_name,
        meta.ra, meta.dec, meta.t_min, meta.t_max, meta.exposure, spectrum.em_min, spectrum.em_max,
        meta.em_res_power, spectrum.n_points, meta.flux_unit, meta.flux_calibration.value, meta.medium.value,
        spectrum.access_format, spectrum.size, spectrum.file, spectrum.source,
        json.dumps(meta.header, sort_keys=True), ingested, *(vector or (None, None, None)),
    )  # fmt: skip


_NAMES = tuple(c.strip() for c in _COLUMNS.split(","))
_HEADER_INDEX = _NAMES.index("header")


def _record(row: Any) -> SpectrumRecord:
    values = list(row)
    values[_HEADER_INDEX] = json.loads(values[_HEADER_INDEX])
    return SpectrumRecord(**dict(zip(_NAMES, values, strict=True)))
