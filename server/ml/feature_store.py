"""The feature store: preprocessed spectra as one float32 matrix in HDF5, with ids, grid and provenance.

Layout (version :data:`FORMAT_VERSION`)::

    /ids              (N,)   variable-length UTF-8: publisher DIDs, in row order
    /wavelength       (n,)   float64: the grid's bin centres, Å (vacuum if air_to_vacuum ran)
    /features         (N, n) float32, chunked by rows (:data:`CHUNK_ROWS`), uncompressed
    /skipped/ids      (M,)   UTF-8: spectra of the selection that a step refused
    /skipped/reasons  (M,)   UTF-8: why
    /pca/...          optional: components (k, n), mean (n,), explained_variance_ratio (k,), scores (N, k) float32
    attrs: format_version, provenance (JSON: selection, steps in order, software, counts)

Uncompressed and chunked along rows because training reads batches of rows:
gzip makes such reads 10-25 times slower on these machines (STYLE.md), and a
row chunk is read whole. Rows are appended batch by batch, so writing never
holds more than one batch. Pure h5py/numpy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

__all__ = ["CHUNK_ROWS", "FORMAT_VERSION", "FeatureStore", "FeatureStoreWriter"]

FORMAT_VERSION = 1
"""Version of the layout above; part of the cache key."""

CHUNK_ROWS = 256
"""Rows per HDF5 chunk of ``features`` (256 rows of 2000 float32 are 2 MB)."""

_STRING = h5py.string_dtype(encoding="utf-8")


class FeatureStoreWriter:
    """Write a feature store row batch by row batch.

    Parameters
    ----------
    path
        The file to create (overwritten).
    wavelength
        The common grid's centres.
    """

    def __init__(self, path: Path, wavelength: NDArray[np.float64]) -> None:
        self.path = path
        self._file = h5py.File(path, "w")
        n = len(wavelength)
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.create_dataset("wavelength", data=np.asarray(wavelength, dtype=np.float64))
        self._features = self._file.create_dataset(
            "features", shape=(0, n), maxshape=(None, n), dtype=np.float32, chunks=(CHUNK_ROWS, n)
        )
        self._ids = self._file.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STRING, chunks=(1024,))
        skipped = self._file.create_group("skipped")
        self._skipped_ids = skipped.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STRING, chunks=(1024,))
        self._skipped_reasons = skipped.create_dataset(
            "reasons", shape=(0,), maxshape=(None,), dtype=_STRING, chunks=(1024,)
        )

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return int(self._features.shape[0])

    def append(self, ids: list[str], matrix: NDArray[np.floating]) -> None:
        """Append one batch of rows.

        Raises
        ------
        ValueError
            Raised if ids and rows differ in number or the rows have the wrong width.
        """
        if matrix.ndim != 2 or matrix.shape[0] != len(ids) or matrix.shape[1] != self._features.shape[1]:
            msg = f"a batch of {len(ids)} ids with a matrix of shape {matrix.shape} does not fit {self._features.shape}"
            raise ValueError(msg)
        if not ids:
            return
        start = self.rows
        self._features.resize(start + len(ids), axis=0)
        self._features[start:] = matrix.astype(np.float32, copy=False)
        _append(self._ids, ids)

    def skip(self, ids: list[str], reasons: list[str]) -> None:
        """Record spectra that a step refused."""
        _append(self._skipped_ids, ids)
        _append(self._skipped_reasons, reasons)

    def set_provenance(self, provenance: dict[str, Any]) -> None:
        """Store the provenance document (JSON)."""
        self._file.attrs["provenance"] = json.dumps(provenance, sort_keys=True)

    @property
    def file(self) -> h5py.File:
        """The open file, for a second pass (PCA) before closing."""
        return self._file

    def close(self) -> None:
        """Flush and close."""
        self._file.close()

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _append(dataset: h5py.Dataset, values: list[str]) -> None:
    if not values:
        return
    start = int(dataset.shape[0])
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = np.asarray(values, dtype=object)


class FeatureStore:
    """Read a feature store.

    Parameters
    ----------
    path
        The HDF5 file.
    """

    def __init__(self, path: Path) -> None:
        self._file = h5py.File(path, "r")

    @property
    def ids(self) -> list[str]:
        """Publisher DIDs of the rows."""
        return [v.decode() if isinstance(v, bytes) else str(v) for v in self._file["ids"][()]]

    @property
    def wavelength(self) -> NDArray[np.float64]:
        """The grid (Å)."""
        return np.asarray(self._file["wavelength"][()], dtype=np.float64)

    @property
    def features(self) -> h5py.Dataset:
        """The matrix, read lazily (slice it)."""
        dataset: h5py.Dataset = self._file["features"]
        return dataset

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(id, reason) of every spectrum that was left out."""
        ids = self._file["skipped/ids"].asstr()[()]
        reasons = self._file["skipped/reasons"].asstr()[()]
        return list(zip((str(i) for i in ids), (str(r) for r in reasons), strict=True))

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance document."""
        document: dict[str, Any] = json.loads(self._file.attrs["provenance"])
        return document

    def batches(self, size: int) -> Iterator[NDArray[np.float32]]:
        """The matrix in row batches of at most ``size`` rows."""
        features = self.features
        for start in range(0, int(features.shape[0]), size):
            yield np.asarray(features[start : start + size], dtype=np.float32)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
