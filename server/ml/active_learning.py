"""One iteration of active learning as pure compute: train on the labels, score every spectrum, choose the next batch.

Shared by the ``active_learning`` job (:mod:`.active_learning_job`) and the
benchmark, which calls `run_iteration` directly on numpy matrices with a
simulated expert; nothing here touches files, the archive or the web stack.

Memory does not grow with the archive beyond per-row figures: the labelled
rows are read once for training (sorted fancy indexing, which h5py needs), and
the rest is scored ``score_batch`` rows at a time, so an h5py ``Dataset`` of the
feature store can be passed as it is and is never read whole. What stays is
(N, K) probabilities, a few (N,) scores and the (N, D) embedding, which the
diverse strategy and the projection need together.

With fewer than two classes labelled no classifier can be trained, so the
iteration is a *cold start*: the oracle gets a seeded random sample of
``seed_size`` spectra and nothing is predicted.

Every random choice is seeded from ``settings.seed + iteration`` (weights,
validation split, dropout masks, random batches), so the same input gives the
same oracle batch on the same device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score

from . import bcnn, strategies
from .bcnn import BCNNConfig, EpochRecord, Predictions, TrainedModel
from .iteration import SessionSettings

__all__ = [
    "MIN_VALIDATION",
    "FeatureMatrix",
    "IterationResult",
    "labelled_rows",
    "run_iteration",
]

MIN_VALIDATION = 5
"""Fewest held-out labels on which validation accuracy and macro-F1 are reported; below it they are noise."""

_TRAINING_SHARE = 0.5
"""Share of the core's progress given to training; scoring takes the rest (it reads every row)."""


class FeatureMatrix(Protocol):
    """What `run_iteration` needs of its features: a numpy array or an h5py ``Dataset`` fits."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class IterationResult:
    """What one iteration computed, as row indices into the features and per-row arrays.

    Attributes
    ----------
    predictions
        MC-dropout predictions of all N rows (labelled ones included); None on a cold start.
    model
        The trained network; None on a cold start.
    oracle
        Rows to label next, in the order the strategy chose them (the first is the most
        uncertain; drawing order for ``random`` and on a cold start).
    precision_sample
        A seeded random sample of unlabelled rows predicted as the positive class, drawn
        independently of the oracle batch (a row may be in both); empty on a cold start.
    projection
        (N, 2) projection of the embedding (`strategies.projection_2d`); None on a cold start.
    val_accuracy, val_macro_f1
        On the labels held out by training; None on a cold start or when fewer than
        `MIN_VALIDATION` were held out.
    mean_bald, mean_entropy
        Means over the unlabelled rows; None on a cold start or when every row is labelled.
    epochs
        Training epochs run (0 on a cold start).
    cold_start
        Whether fewer than two classes were labelled.
    """

    predictions: Predictions | None
    model: TrainedModel | None
    oracle: NDArray[np.int64]
    precision_sample: NDArray[np.int64]
    projection: NDArray[np.float64] | None
    val_accuracy: float | None
    val_macro_f1: float | None
    mean_bald: float | None
    mean_entropy: float | None
    epochs: int
    cold_start: bool = False


def labelled_rows(
    ids: list[str], labels: Mapping[str, str], classes: tuple[str, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Map labels by identifier onto rows of the features.

    Parameters
    ----------
    ids
        The identifier (publisher DID) of every row, in row order.
    labels
        Class name by identifier.
    classes
        The class names, in the order of the network's outputs.

    Returns
    -------
    tuple
        Sorted row indices, their class indices, and how many labels named identifiers
        that are not rows (spectra left out of the selection or refused by preprocessing).

    Raises
    ------
    ValueError
        Raised if a label names a class that is not one of ``classes``.
    """
    class_index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({name for name in labels.values() if name not in class_index})
    if unknown:
        msg = f"Labels name classes that are not among {list(classes)}: {unknown}"
        raise ValueError(msg)
    rows, values = [], []
    for row, identifier in enumerate(ids):
        name = labels.get(identifier)
        if name is not None:
            rows.append(row)
            values.append(class_index[name])
    return np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=np.int64), len(labels) - len(rows)


def run_iteration(
    features: FeatureMatrix,
    labelled: NDArray[np.int64],
    labels: NDArray[np.int64],
    *,
    settings: SessionSettings,
    iteration: int,
    progress: Callable[[float, str], None] | None = None,
    score_batch: int = 2048,
    config_overrides: Mapping[str, Any] | None = None,
) -> IterationResult:
    """Train on the labelled rows, score all rows with MC dropout, and choose the oracle batch and precision sample.

    Parameters
    ----------
    features
        (N, P) float32 preprocessed spectra: a numpy array or an h5py ``Dataset`` (read in
        slices, never whole).
    labelled
        Row indices of the labelled spectra; distinct.
    labels
        Their class indices into ``settings.classes``.
    settings
        The session's settings (strategy, batch sizes, MC samples, seed, epochs).
    iteration
        The iteration's number; the random choices (seed batch, oracle, precision sample, MC
        masks) are seeded with ``settings.seed + iteration``, training with ``settings.seed``.
    progress
        Called with the share of this function's work done (0 to 1) and a short message.
    score_batch
        Rows read and scored at a time; bounds the memory taken by feature rows.
    config_overrides
        `BCNNConfig` fields to change from the defaults (a smaller network in tests, a
        device); ``n_inputs``, ``n_classes``, ``max_epochs`` and ``seed`` come from the settings.

    Returns
    -------
    IterationResult
        Predictions, model, oracle batch, precision sample, projection and metrics.

    Raises
    ------
    ValueError
        Raised if the features are not a 2-D matrix, the labelled rows are out of range or
        repeated, the labels do not match them or name no class, or ``score_batch`` is below 1.
    """
    report = progress or _ignore
    n, n_inputs = _shape(features)
    labelled, labels = _checked_labels(labelled, labels, n=n, n_classes=len(settings.classes))
    if score_batch < 1:
        msg = f"score_batch must be at least 1, not {score_batch}"
        raise ValueError(msg)
    seed = settings.seed + iteration
    unlabelled = np.setdiff1d(np.arange(n, dtype=np.int64), labelled, assume_unique=True)

    if len(np.unique(labels)) < 2:
        classes = len(np.unique(labels))
        report(1.0, f"cold start: {classes} of {len(settings.classes)} classes labelled, drawing a random seed batch")
        oracle = _random(unlabelled, settings.seed_size, seed)
        return IterationResult(
            predictions=None,
            model=None,
            oracle=oracle,
            precision_sample=np.zeros(0, dtype=np.int64),
            projection=None,
            val_accuracy=None,
            val_macro_f1=None,
            mean_bald=None,
            mean_entropy=None,
            epochs=0,
            cold_start=True,
        )

    config = BCNNConfig(
        **{
            "device": "auto",
            **(config_overrides or {}),
            "n_inputs": n_inputs,
            "n_classes": len(settings.classes),
            "max_epochs": settings.max_epochs,
            # The same initial weights and shuffles in every iteration: successive models differ by
            # their labels, not by a new draw, so the learning curve shows what the labels did.
            "seed": settings.seed,
        }
    )
    x_labelled = _read_rows(features, labelled)

    def on_epoch(record: EpochRecord) -> None:
        report(
            _TRAINING_SHARE * record.epoch / config.max_epochs,
            f"training on {len(labelled)} labels: epoch {record.epoch} (at most {config.max_epochs})",
        )

    report(0.0, f"training on {len(labelled)} labels")
    model = bcnn.train(x_labelled, labels, config=config, on_epoch=on_epoch)
    del x_labelled

    predictions = _score(
        features, model, samples=settings.mc_samples, seed=seed, score_batch=score_batch, report=report
    )
    val_accuracy, val_macro_f1 = _validation_metrics(model, predictions, labelled, labels)

    report(1.0, "choosing the oracle batch")
    oracle = strategies.select_batch(
        settings.strategy,
        unlabelled=unlabelled,
        batch_size=settings.batch_size,
        rng_seed=seed,
        entropy=predictions.entropy,
        bald=predictions.bald,
        embedding=predictions.embedding,
        probabilities=predictions.mean,
    )
    positive = settings.classes.index(settings.positive_class)
    positives = unlabelled[predictions.predicted[unlabelled] == positive]
    # A seed of its own: with the "random" strategy the same seed would tie the two samples together.
    precision_sample = _random(positives, settings.precision_sample, _derived_seed(seed, 1))
    return IterationResult(
        predictions=predictions,
        model=model,
        oracle=oracle,
        precision_sample=precision_sample,
        projection=strategies.projection_2d(predictions.embedding, seed=seed),
        val_accuracy=val_accuracy,
        val_macro_f1=val_macro_f1,
        mean_bald=float(np.mean(predictions.bald[unlabelled], dtype=np.float64)) if unlabelled.size else None,
        mean_entropy=float(np.mean(predictions.entropy[unlabelled], dtype=np.float64)) if unlabelled.size else None,
        epochs=len(model.history),
    )


def _ignore(fraction: float, message: str) -> None:
    """The progress callback used when the caller gives none."""


def _shape(features: FeatureMatrix) -> tuple[int, int]:
    shape = tuple(int(d) for d in features.shape)
    if len(shape) != 2 or shape[1] < 1:
        msg = f"features must be a 2-D matrix (spectra, pixels), not of shape {shape}"
        raise ValueError(msg)
    return shape[0], shape[1]


def _checked_labels(
    labelled: NDArray[np.int64], labels: NDArray[np.int64], *, n: int, n_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    rows = np.asarray(labelled)
    values = np.asarray(labels)
    if rows.ndim != 1 or values.shape != rows.shape:
        msg = f"labelled rows {rows.shape} and labels {values.shape} must be 1-D arrays of the same length"
        raise ValueError(msg)
    if rows.size and not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(values.dtype, np.integer)):
        msg = "labelled rows and labels must be integers"
        raise ValueError(msg)
    rows, values = rows.astype(np.int64), values.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        msg = f"labelled rows must lie in [0, {n})"
        raise ValueError(msg)
    if rows.size and (values.min() < 0 or values.max() >= n_classes):
        msg = f"labels must be class indices in [0, {n_classes})"
        raise ValueError(msg)
    if np.unique(rows).size != rows.size:
        msg = "labelled rows hold duplicates"
        raise ValueError(msg)
    return rows, values


def _read_rows(features: FeatureMatrix, rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """The given rows, in the given order; h5py's fancy indexing needs them increasing, so read sorted."""
    order = np.argsort(rows, kind="stable")
    block = np.asarray(features[rows[order]], dtype=np.float32)
    out = np.empty_like(block)
    out[order] = block
    return out


def _derived_seed(seed: int, stream: int) -> int:
    """An independent seed for the ``stream``-th use of one iteration's seed (negative seeds allowed)."""
    return int(np.random.SeedSequence([abs(seed), int(seed < 0), stream]).generate_state(1)[0])


def _random(candidates: NDArray[np.int64], size: int, seed: int) -> NDArray[np.int64]:
    if size < 1 or not candidates.size:
        return np.zeros(0, dtype=np.int64)
    return strategies.select_batch("random", unlabelled=candidates, batch_size=size, rng_seed=seed)


def _score(
    features: FeatureMatrix,
    model: TrainedModel,
    *,
    samples: int,
    seed: int,
    score_batch: int,
    report: Callable[[float, str], None],
) -> Predictions:
    """MC-dropout predictions of every row, read and scored ``score_batch`` rows at a time."""
    n = _shape(features)[0]
    parts: list[Predictions] = []
    for number, start in enumerate(range(0, n, score_batch)):
        stop = min(start + score_batch, n)
        report(_TRAINING_SHARE + (1 - _TRAINING_SHARE) * start / max(n, 1), f"scoring spectra {start}-{stop} of {n}")
        chunk = np.asarray(features[start:stop], dtype=np.float32)
        # Each chunk its own masks, so no two chunks share a dropout pattern row for row.
        parts.append(bcnn.predict_mc(model, chunk, samples=samples, seed=_derived_seed(seed, 2 + number)))
    if not parts:
        parts.append(bcnn.predict_mc(model, np.zeros((0, model.config.n_inputs), np.float32), samples=samples))
    first = parts[0]
    return replace(
        first,
        mean=np.concatenate([p.mean for p in parts]),
        predicted=np.concatenate([p.predicted for p in parts]),
        entropy=np.concatenate([p.entropy for p in parts]),
        bald=np.concatenate([p.bald for p in parts]),
        variation_ratio=np.concatenate([p.variation_ratio for p in parts]),
        embedding=np.concatenate([p.embedding for p in parts]),
    )


def _validation_metrics(
    model: TrainedModel, predictions: Predictions, labelled: NDArray[np.int64], labels: NDArray[np.int64]
) -> tuple[float | None, float | None]:
    """Accuracy and macro-F1 of the MC mean prediction on the labels training held out.

    Macro-F1 averages over the classes present among those labels: a class absent from
    them has no recall to measure, and counting it as 0 would punish the model for the
    sample rather than for its mistakes.
    """
    held_out = model.validation_indices
    if held_out.size < MIN_VALIDATION:
        return None, None
    truth = labels[held_out]
    predicted = predictions.predicted[labelled[held_out]]
    accuracy = float(accuracy_score(truth, predicted))
    macro_f1 = float(f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0))
    return accuracy, macro_f1
