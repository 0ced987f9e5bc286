"""Preprocessing a selection of spectra into a feature store, in batches so memory stays flat.

Pure compute (numpy, h5py, scikit-learn). The steps run in a fixed, documented
order (:func:`build_steps`); each spectrum is loaded only when its batch is
processed, and each batch of at most ``batch_size`` rows is appended to the
HDF5 file before the next is read. PCA is a second pass over the stored
matrix with :class:`~sklearn.decomposition.IncrementalPCA`, again batch by
batch. A spectrum a step refuses is skipped and its reason kept.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import IncrementalPCA

from .feature_store import CHUNK_ROWS, FORMAT_VERSION, FeatureStoreWriter
from .steps import (
    AirToVacuum,
    ContinuumNormalise,
    Cutout,
    GaussianConvolution,
    Grid,
    GridKind,
    Resample,
    Sample,
    Scale,
    Scaling,
    Step,
    StepError,
    VelocityShift,
)

__all__ = [
    "BATCH_SIZE",
    "Item",
    "PipelineReport",
    "PreprocessParameters",
    "build_steps",
    "cache_key",
    "run_pipeline",
    "software_version",
]

BATCH_SIZE = 512
"""Spectra processed and written together; the most rows held in memory at once."""

ProgressCallback = Callable[[float, str], None]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, kw_only=True)
class PreprocessParameters:
    """The step parameters of one preprocessing (plain typed values, JSON-serialisable).

    Parameters
    ----------
    wl_min, wl_max
        The grid's (and cutout's) interval in Å, in the frame after the
        wavelength steps (vacuum when ``air_to_vacuum``).
    n_points
        Bins of the common grid.
    grid
        ``linear`` or ``log`` spacing.
    air_to_vacuum
        Convert air wavelengths to vacuum first.
    rv_correction
        Apply the header's heliocentric velocity (``VHELIO``); see :class:`.steps.VelocityShift`.
    normalise
        Divide by a fitted continuum.
    continuum_degree
        Chebyshev degree; ``None`` chooses from the span.
    clip_low, clip_high
        Sigma-clipping thresholds of the continuum fit.
    resolving_power
        Target λ/Δλ of a Gaussian convolution; ``None`` for none.
    scaling
        Per-spectrum scaling.
    pca_components
        Principal components to compute; 0 for none.
    """

    wl_min: float
    wl_max: float
    n_points: int = 1000
    grid: GridKind = GridKind.LINEAR
    air_to_vacuum: bool = True
    rv_correction: bool = False
    normalise: bool = True
    continuum_degree: int | None = None
    clip_low: float = 2.0
    clip_high: float = 3.0
    resolving_power: float | None = None
    scaling: Scaling = Scaling.NONE
    pca_components: int = 0

    def __post_init__(self) -> None:
        if not self.wl_min < self.wl_max:
            msg = f"wl_min ({self.wl_min} Å) must be below wl_max ({self.wl_max} Å)"
            raise ValueError(msg)
        if self.pca_components > self.n_points:
            msg = f"pca_components ({self.pca_components}) cannot exceed n_points ({self.n_points})"
            raise ValueError(msg)

    @property
    def grid_spec(self) -> Grid:
        """The common grid."""
        return Grid(wl_min=self.wl_min, wl_max=self.wl_max, n_points=self.n_points, kind=self.grid)

    def canonical(self) -> dict[str, Any]:
        """The parameters as plain JSON values (enums as text), for the cache key and provenance."""
        return {k: (str(v) if isinstance(v, GridKind | Scaling) else v) for k, v in asdict(self).items()}


def build_steps(params: PreprocessParameters) -> list[Step]:
    """The steps, in their fixed order: air→vacuum, velocity, cutout, resample, continuum, convolution, scaling.

    The cutout comes before resampling so the continuum is fitted on the
    interval that is kept; convolution comes after normalisation so that it
    smooths the normalised lines, and scaling last so its ranges are those of
    the stored rows.
    """
    steps: list[Step] = []
    if params.air_to_vacuum:
        steps.append(AirToVacuum())
    if params.rv_correction:
        steps.append(VelocityShift())
    steps.append(Cutout(wl_min=params.wl_min, wl_max=params.wl_max))
    steps.append(Resample(grid=params.grid_spec))
    if params.normalise:
        steps.append(
            ContinuumNormalise(degree=params.continuum_degree, low_sigma=params.clip_low, high_sigma=params.clip_high)
        )
    if params.resolving_power:
        steps.append(GaussianConvolution(resolving_power=params.resolving_power))
    if params.scaling is not Scaling.NONE:
        steps.append(Scale(scaling=params.scaling))
    return steps


def software_version() -> str:
    """vocloud's version and the feature-store format, as written into provenance and the cache key."""
    try:
        package = version("vocloud")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        package = "unknown"
    return f"vocloud {package}; feature store format {FORMAT_VERSION}"


def cache_key(selection: Iterable[tuple[int, str]], params: PreprocessParameters) -> str:
    """SHA-256 of the sorted (archive row id, DID) pairs, the canonical parameters and the software version.

    The row id is part of the key because a DID deleted and ingested again
    (possibly a different file) gets a new row.
    """
    digest = hashlib.sha256()
    digest.update(software_version().encode())
    digest.update(json.dumps(params.canonical(), sort_keys=True, separators=(",", ":")).encode())
    for row_id, did in sorted(selection):
        digest.update(f"\n{row_id}\t{did}".encode())
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Item:
    """One spectrum of the selection: its id and how to load it (only when its batch runs)."""

    id: str
    load: Callable[[], Sample]


@dataclass(frozen=True, kw_only=True)
class PipelineReport:
    """What a run did: counts for the summary, per-reason skip counts for provenance."""

    kept: int
    skipped: int
    reasons: dict[str, int]
    seconds: float
    largest_batch: int


def run_pipeline(
    items: Iterable[Item],
    *,
    params: PreprocessParameters,
    out: Path,
    total: int,
    provenance: dict[str, Any],
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> PipelineReport:
    """Preprocess ``items`` into a new feature store at ``out``.

    Parameters
    ----------
    items
        The spectra, consumed lazily.
    params
        Step parameters.
    out
        The HDF5 file to write.
    total
        Number of items, for progress.
    provenance
        Extra provenance (the selection, the input count); the steps, software
        version and counts are added here.
    batch_size
        Rows processed and written together.
    progress
        Called with (fraction, message) after each batch.

    Raises
    ------
    ValueError
        Raised if no spectrum survives the steps (the message gives the commonest reasons).
    """
    start = time.perf_counter()
    steps = build_steps(params)
    grid = params.grid_spec
    reasons: Counter[str] = Counter()
    kept = skipped = largest = 0
    pca_fraction = 0.3 if params.pca_components else 0.0
    with FeatureStoreWriter(out, grid.centres) as writer:
        for batch in _batches(items, batch_size):
            ids: list[str] = []
            rows = np.empty((len(batch), params.n_points), dtype=np.float32)
            skipped_ids: list[str] = []
            skipped_reasons: list[str] = []
            for item in batch:
                try:
                    row = _process(item, steps)
                except StepError as e:
                    skipped_ids.append(item.id)
                    skipped_reasons.append(str(e))
                    reasons[_reason_class(str(e))] += 1
                    continue
                rows[len(ids)] = row
                ids.append(item.id)
            writer.append(ids, rows[: len(ids)])
            writer.skip(skipped_ids, skipped_reasons)
            kept += len(ids)
            skipped += len(skipped_ids)
            largest = max(largest, len(batch))
            if progress is not None:
                done = kept + skipped
                progress((1.0 - pca_fraction) * done / max(total, 1), f"{done} of {total} spectra preprocessed")
        if kept == 0:
            common = "; ".join(f"{n} times {r}" for r, n in reasons.most_common(3))
            msg = f"none of the {skipped} selected spectra survived preprocessing ({common or 'empty selection'})"
            raise ValueError(msg)
        pca: dict[str, Any] | None = None
        if params.pca_components:
            pca = _pca(writer, params.pca_components, batch_size=batch_size, progress=progress, start=1 - pca_fraction)
        writer.set_provenance(
            {
                **provenance,
                "software": software_version(),
                "parameters": params.canonical(),
                "grid": grid.describe(),
                "steps": [step.describe() for step in steps],
                "pca": pca,
                "kept": kept,
                "skipped": skipped,
                "skip_reasons": dict(reasons),
                "batch_size": batch_size,
            }
        )
    return PipelineReport(
        kept=kept, skipped=skipped, reasons=dict(reasons), seconds=time.perf_counter() - start, largest_batch=largest
    )


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _process(item: Item, steps: list[Step]) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        sample = item.load()
    except (OSError, ValueError) as e:
        msg = f"cannot read the spectrum: {e}"
        raise StepError(msg) from e
    for step in steps:
        sample = step.apply(sample)
    if not bool(np.all(np.isfinite(sample.flux))):
        msg = "non-finite values after preprocessing"
        raise StepError(msg)
    return sample.flux


def _reason_class(reason: str) -> str:
    """The reason with its numbers replaced by ``#``, so that counts group alike failures."""
    return _NUMBER.sub("#", reason)


def _pca(
    writer: FeatureStoreWriter,
    components: int,
    *,
    batch_size: int,
    progress: ProgressCallback | None,
    start: float,
) -> dict[str, Any]:
    """Fit IncrementalPCA over the stored rows in batches, then store components and scores.

    Each ``partial_fit`` batch needs at least ``components`` rows, so a short
    last batch is merged into the one before it.
    """
    features = writer.file["features"]
    n_rows = int(features.shape[0])
    if n_rows < components:
        msg = f"PCA with {components} components needs at least as many spectra; {n_rows} survived preprocessing"
        raise ValueError(msg)
    step = max(batch_size, components)
    bounds = [*range(0, n_rows, step), n_rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < components:
        del bounds[-2]
    model = IncrementalPCA(n_components=components)
    for lo, hi in itertools.pairwise(bounds):
        model.partial_fit(np.asarray(features[lo:hi], dtype=np.float64))
        if progress is not None:
            progress(start + (1 - start) * 0.5 * hi / n_rows, "PCA: fitting")
    group = writer.file.create_group("pca")
    group.create_dataset("components", data=model.components_.astype(np.float32))
    group.create_dataset("mean", data=model.mean_.astype(np.float64))
    group.create_dataset("explained_variance_ratio", data=model.explained_variance_ratio_.astype(np.float64))
    scores = group.create_dataset(
        "scores", shape=(n_rows, components), dtype=np.float32, chunks=(min(CHUNK_ROWS, n_rows), components)
    )
    for lo in range(0, n_rows, step):
        hi = min(lo + step, n_rows)
        scores[lo:hi] = model.transform(np.asarray(features[lo:hi], dtype=np.float64)).astype(np.float32)
        if progress is not None:
            progress(start + (1 - start) * (0.5 + 0.5 * hi / n_rows), "PCA: projecting")
    return {
        "method": "sklearn IncrementalPCA over the stored features in row batches",
        "components": components,
        "explained_variance_ratio": [float(v) for v in model.explained_variance_ratio_],
    }
