"""The runner of the ``preprocess`` job kind: archive selection → steps → cached HDF5 feature store.

Runs in a worker process (no web stack). The selection is made in the
archive's metadata (as SSAP would); spectra are read one batch at a time by
:func:`.pipeline.run_pipeline`. Feature stores are cached under the server's
data directory (``features/<key>.h5``, a server-made name), keyed by the
selection's archive rows, the canonical step parameters and the software
version; an identical request hard-links (or copies) the cached file as its
result and says ``reused``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..archive.service import Archive
from ..archive.store import ConeQuery, SpectrumRecord
from ..kinds import JobContext, JobUsageError
from ..kinds.context import ServerPaths
from ..spectra.readers import read_spectrum
from ..votable import FieldSpec, ResultDocument
from .feature_store import FeatureStore
from .pipeline import Item, PreprocessParameters, cache_key, run_pipeline
from .preprocess_kind import HDF5_MIME
from .steps import AirToVacuum, GridKind, Sample, Scaling, VelocityShift

__all__ = ["FEATURES_DIR", "FeatureSelection", "build_features", "parameters_from", "run_preprocess"]

FEATURES_DIR = "features"
"""Directory under the server's data directory holding cached feature stores."""

_M_TO_ANGSTROM = 1e10


@dataclass(frozen=True, kw_only=True)
class FeatureSelection:
    """A selection of the archive and its preprocessed feature store (cached, shared by identical requests).

    Attributes
    ----------
    path
        The cached HDF5 feature store; read it, never write it (other jobs may be reading it).
    key
        Its cache key (selection rows, step parameters, software version).
    reused
        Whether an earlier job had made it.
    records
        The archive rows of the selection, in the store's input order.
    """

    path: Path
    key: str
    reused: bool
    records: list[SpectrumRecord]


def build_features(
    params: dict[str, Any], server: ServerPaths, *, job_id: str, progress: Callable[[float, str], None]
) -> FeatureSelection:
    """Select archived spectra as the ``preprocess`` kind's parameters say, and preprocess them (or reuse the cache).

    Shared by the ``preprocess`` and ``active_learning`` kinds, so the same
    selection and steps give the same cached store whichever job asked first.

    Raises
    ------
    JobUsageError
        Raised if the selection is empty or the parameters contradict each other.
    """
    query = _query(params)
    archive = Archive(server.archive_dir)
    try:
        records = archive.store.search(query)
        files_dir = archive.files_dir
    finally:
        archive.close()
    if not records:
        msg = "The selection is empty: no archived spectrum matches pos_ra/pos_dec/radius, band, collection, target"
        raise JobUsageError(msg)
    settings = parameters_from(params, records)
    key = cache_key(((r.id, r.obs_publisher_did) for r in records), settings)
    cache_dir = server.data_dir / FEATURES_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"{key}.h5"
    reused = cached.is_file()
    if not reused:
        partial = cache_dir / f"{key}.h5.{job_id}.partial"
        provenance = {
            "selection": _selection(params),
            "input_count": len(records),
            "cache_key": key,
        }
        try:
            run_pipeline(
                _items(records, files_dir),
                params=settings,
                out=partial,
                total=len(records),
                provenance=provenance,
                progress=progress,
            )
        except ValueError as e:
            partial.unlink(missing_ok=True)
            raise JobUsageError(str(e)) from e
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # Atomic: a concurrent identical job sees the whole file or none.
        partial.replace(cached)
    return FeatureSelection(path=cached, key=key, reused=reused, records=records)


def run_preprocess(params: dict[str, Any], context: JobContext) -> None:
    """Select, preprocess (or reuse) and write the ``features`` and ``result`` results."""
    if context.server is None:
        msg = "This server has no archive to preprocess"
        raise JobUsageError(msg)
    selection = build_features(params, context.server, job_id=context.job_id, progress=context.progress)
    _link(selection.path, context.result_path("features", mime_type=HDF5_MIME))
    with FeatureStore(selection.path) as store:
        skipped = dict(store.skipped)
        kept = len(store.ids)
    state = "reused" if selection.reused else "new"
    message = f"{state} feature store {selection.key[:16]}: {kept} kept, {len(skipped)} skipped"
    context.result_path("result").write_bytes(_summary(selection.records, skipped, message))
    context.progress(1.0, message)


def parameters_from(params: dict[str, Any], records: list[SpectrumRecord]) -> PreprocessParameters:
    """The typed step parameters of a job; the grid defaults to the range the whole selection covers.

    Raises
    ------
    JobUsageError
        Raised if the values contradict each other (wl_min not below wl_max) or
        the selection has no wavelength range in common.
    """
    wl_min, wl_max = params.get("wl_min"), params.get("wl_max")
    if wl_min is None or wl_max is None:
        common_min, common_max = _common_range(records, params)
        wl_min = common_min if wl_min is None else wl_min
        wl_max = common_max if wl_max is None else wl_max
    if not wl_min < wl_max:
        msg = f"wl_min ({wl_min:g} Å) must be below wl_max ({wl_max:g} Å)"
        raise JobUsageError(msg)
    degree = int(params.get("continuum_degree", -1))
    resolving_power = float(params.get("resolving_power", 0.0))
    try:
        return PreprocessParameters(
            wl_min=float(wl_min),
            wl_max=float(wl_max),
            n_points=int(params.get("n_points", 1000)),
            grid=GridKind(params.get("grid", "linear")),
            air_to_vacuum=bool(params.get("air_to_vacuum", True)),
            rv_correction=bool(params.get("rv_correction", False)),
            normalise=bool(params.get("normalise", True)),
            continuum_degree=None if degree < 0 else degree,
            clip_low=float(params.get("clip_low", 2.0)),
            clip_high=float(params.get("clip_high", 3.0)),
            resolving_power=resolving_power or None,
            scaling=Scaling(params.get("scaling", "none")),
            pca_components=int(params.get("pca_components", 0)),
        )
    except ValueError as e:
        raise JobUsageError(str(e)) from e


def _common_range(records: list[SpectrumRecord], params: dict[str, Any]) -> tuple[float, float]:
    """The wavelength interval (Å, after the wavelength steps) every selected spectrum covers."""
    steps: list[AirToVacuum | VelocityShift] = []
    if params.get("air_to_vacuum", True):
        steps.append(AirToVacuum())
    if params.get("rv_correction", False):
        steps.append(VelocityShift())
    low, high = 0.0, float("inf")
    for record in records:
        # The record's end points go through the same steps as the spectrum's pixels will.
        ends = Sample(
            wavelength=np.array([record.em_min, record.em_max]) * _M_TO_ANGSTROM,
            flux=np.ones(2),
            medium=record.medium,
            header=record.header,
        )
        for step in steps:
            ends = step.apply(ends)
        low, high = max(low, float(ends.wavelength[0])), min(high, float(ends.wavelength[-1]))
    if not low < high:
        msg = "The selected spectra have no wavelength range in common; give wl_min and wl_max, or narrow the selection"
        raise JobUsageError(msg)
    return low, high


def _query(params: dict[str, Any]) -> ConeQuery:
    cone = [params.get(name) for name in ("pos_ra", "pos_dec", "radius")]
    if any(v is not None for v in cone) and any(v is None for v in cone):
        msg = "A cone needs all of pos_ra, pos_dec and radius"
        raise JobUsageError(msg)
    band_min, band_max = params.get("band_min"), params.get("band_max")
    if band_min is not None and band_max is not None and band_min > band_max:
        msg = f"band_min ({band_min:g} m) must not exceed band_max ({band_max:g} m)"
        raise JobUsageError(msg)
    return ConeQuery(
        ra=cone[0],
        dec=cone[1],
        radius=cone[2],
        band=None if band_min is None and band_max is None else (band_min, band_max),
        target_name=params.get("target"),
        collection=params.get("collection"),
    )


def _selection(params: dict[str, Any]) -> dict[str, Any]:
    names = ("pos_ra", "pos_dec", "radius", "band_min", "band_max", "collection", "target")
    return {name: params.get(name) for name in names}


def _items(records: list[SpectrumRecord], files_dir: Path) -> Iterator[Item]:
    for record in records:
        yield Item(id=record.obs_publisher_did, load=_loader(record, files_dir))


def _loader(record: SpectrumRecord, files_dir: Path) -> Callable[[], Sample]:
    def load() -> Sample:
        spectrum = read_spectrum(files_dir / record.file)
        return Sample(
            wavelength=np.asarray(spectrum.wavelength, dtype=np.float64),
            flux=np.asarray(spectrum.flux, dtype=np.float64),
            medium=record.medium,
            header=record.header,
            resolving_power=record.em_res_power,
        )

    return load


def _link(source: Path, target: Path) -> None:
    """Hard-link the cached store as a result (instant, no second copy); copy across file systems."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


_SUMMARY = ResultDocument(
    fields=(
        FieldSpec(name="publisher_did", datatype="char", arraysize="*", ucd="meta.ref.ivoid",
                  description="Publisher DID of the selected spectrum"),
        FieldSpec(name="status", datatype="char", arraysize="*",
                  description="kept (a row of the feature matrix) or skipped"),
        FieldSpec(name="reason", datatype="unicodeChar", arraysize="*", description="Why a spectrum was skipped"),
    ),
    description="Summary of a preprocess job: one row per selected spectrum",
)  # fmt: skip


def _summary(records: list[SpectrumRecord], skipped: dict[str, str], message: str) -> bytes:
    dids = [r.obs_publisher_did for r in records]
    return _SUMMARY.write(
        {
            "publisher_did": dids,
            "status": ["skipped" if did in skipped else "kept" for did in dids],
            "reason": [skipped.get(did) for did in dids],
        },
        rows=len(dids),
        message=message,
    )
