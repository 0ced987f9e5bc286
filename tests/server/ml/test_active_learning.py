"""One active-learning iteration as pure compute, its candidate tables and its learning curve."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from astropy.io.votable import parse
from numpy.typing import NDArray
from PIL import Image

from vocloud.server.ml import bcnn
from vocloud.server.ml.active_learning import MIN_VALIDATION, IterationResult, labelled_rows, run_iteration
from vocloud.server.ml.candidates import SpectraMeta, candidates_document, ranked_candidates, write_candidates
from vocloud.server.ml.iteration import CANDIDATE_COLUMNS, IterationRecord, SessionSettings, probability_column
from vocloud.server.ml.learning_curve import (
    HEIGHT,
    WIDTH,
    learning_curve_document,
    render_learning_curve,
    write_learning_curve,
)

pytestmark = pytest.mark.timeout(90)

PIXELS = 120
CLASSES = ("absorption", "emission", "double-peak")
SMALL = {
    "channels": (8, 16),
    "kernel_sizes": (7, 5),
    "embedding_dim": 16,
    "head_hidden": 16,
    "learning_rate": 3e-3,
    "device": "cpu",
}
"""A network small enough for tests; the session's settings give the rest."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads, and two threads on two shared cores slow down many times."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spectra(n: int, *, seed: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Continuum 1 with an absorption line (0), an emission line (1) or two emission peaks (2), noisy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = np.arange(PIXELS)
    centre = PIXELS / 2 + rng.normal(0, 2, n)[:, None]

    def line(mu: Any) -> Any:
        return np.exp(-0.5 * ((x - mu) / 4.0) ** 2)

    kind = labels[:, None]
    profile = np.where(kind == 0, -0.5 * line(centre), 0.5 * line(centre))
    profile = np.where(kind == 2, 0.5 * (line(centre - 10) + line(centre + 10)), profile)
    flux = 1 + profile + rng.normal(0, 0.15, (n, PIXELS))
    return flux.astype(np.float32), labels.astype(np.int64)


def settings(**overrides: Any) -> SessionSettings:
    values: dict[str, Any] = {
        "classes": CLASSES,
        "positive_class": "emission",
        "strategy": "diverse",
        "batch_size": 12,
        "seed_size": 15,
        "precision_sample": 6,
        "mc_samples": 6,
        "max_candidates": 30,
        "max_epochs": 4,
        "seed": 3,
    }
    values.update(overrides)
    return SessionSettings(**values)


@pytest.fixture(scope="module")
def data() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    return spectra(400, seed=0)


@pytest.fixture(scope="module")
def labelled() -> NDArray[np.int64]:
    # Not sorted, to show that the order of the labels does not matter to the reads.
    return np.random.default_rng(1).permutation(400)[:90].astype(np.int64)


def iterate(features: Any, rows: NDArray[np.int64], labels: NDArray[np.int64], **kwargs: Any) -> IterationResult:
    options: dict[str, Any] = {"settings": settings(), "iteration": 2, "config_overrides": SMALL, "score_batch": 64}
    options.update(kwargs)
    return run_iteration(features, rows, labels, **options)


@pytest.fixture(scope="module")
def result(data: Any, labelled: NDArray[np.int64]) -> IterationResult:
    x, y = data
    return iterate(x, labelled, y[labelled])


def test_an_iteration_trains_scores_and_chooses(data, labelled, result):
    x, y = data
    unlabelled = np.setdiff1d(np.arange(len(x)), labelled)
    predictions = result.predictions
    assert predictions is not None and result.model is not None and not result.cold_start
    assert predictions.mean.shape == (400, 3) and predictions.embedding.shape == (400, 16)
    assert predictions.samples == 6
    # Training is seeded with the session seed in every iteration; the draws with seed + iteration.
    assert result.model.config.seed == 3 and result.model.config.max_epochs == 4
    assert 1 <= result.epochs == len(result.model.history) <= 4

    assert len(result.oracle) == 12 and len(set(result.oracle.tolist())) == 12
    assert set(result.oracle.tolist()) <= set(unlabelled.tolist())

    positives = unlabelled[predictions.predicted[unlabelled] == CLASSES.index("emission")]
    assert len(result.precision_sample) == min(6, len(positives))
    assert set(result.precision_sample.tolist()) <= set(positives.tolist())

    assert result.projection is not None and result.projection.shape == (400, 2)
    assert result.mean_bald == pytest.approx(float(np.mean(predictions.bald[unlabelled], dtype=np.float64)))
    assert result.mean_entropy == pytest.approx(float(np.mean(predictions.entropy[unlabelled], dtype=np.float64)))

    # Validation figures are those of the labels training held out, not of all labels.
    held_out = result.model.validation_indices
    assert len(held_out) >= MIN_VALIDATION
    truth = y[labelled][held_out]
    assert result.val_accuracy == pytest.approx(np.mean(predictions.predicted[labelled[held_out]] == truth))
    assert result.val_macro_f1 is not None and 0.0 <= result.val_macro_f1 <= 1.0


def test_the_validation_split_is_exposed_and_epochs_are_reported(data):
    x, y = data
    epochs: list[int] = []
    config = bcnn.BCNNConfig(n_inputs=PIXELS, n_classes=3, max_epochs=3, **SMALL)  # type: ignore[arg-type]
    model = bcnn.train(x[:100], y[:100], config=config, on_epoch=lambda record: epochs.append(record.epoch))
    assert epochs == [r.epoch for r in model.history] == list(range(1, len(model.history) + 1))
    held_out = model.validation_indices
    assert held_out.dtype == np.int64 and np.all(np.diff(held_out) > 0)
    for cls in range(3):
        members = np.count_nonzero(y[:100] == cls)
        assert np.count_nonzero(y[:100][held_out] == cls) == max(1, round(0.2 * members))


def test_the_same_input_gives_the_same_iteration(data, labelled, result):
    x, y = data
    again = iterate(x, labelled, y[labelled])
    assert again.predictions is not None and result.predictions is not None
    np.testing.assert_array_equal(again.oracle, result.oracle)
    np.testing.assert_array_equal(again.precision_sample, result.precision_sample)
    np.testing.assert_array_equal(again.predictions.mean, result.predictions.mean)
    assert again.val_accuracy == result.val_accuracy
    # The next iteration is seeded differently: other weights, other random draws.
    other = iterate(x, labelled, y[labelled], iteration=3, settings=settings(strategy="random"))
    random_again = iterate(x, labelled, y[labelled], iteration=4, settings=settings(strategy="random"))
    assert not np.array_equal(other.oracle, random_again.oracle)


class CountingDataset:
    """An h5py dataset that records the rows of every read, to show that scoring reads in chunks."""

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.reads: list[tuple[str, int]] = []

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def __getitem__(self, key: Any) -> Any:
        block = self.dataset[key]
        self.reads.append(("slice" if isinstance(key, slice) else "rows", len(block)))
        return block


def test_an_hdf5_dataset_gives_the_numpy_result_reading_in_chunks(data, labelled, result, tmp_path: Path):
    x, y = data
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=x, chunks=(64, PIXELS))
    with h5py.File(path, "r") as f:
        counting = CountingDataset(f["features"])
        from_store = iterate(counting, labelled, y[labelled])
    assert from_store.predictions is not None and result.predictions is not None
    np.testing.assert_array_equal(from_store.oracle, result.oracle)
    np.testing.assert_array_equal(from_store.predictions.mean, result.predictions.mean)
    np.testing.assert_array_equal(from_store.projection, result.projection)
    # One read of the labelled rows (h5py needs them sorted), then slices of at most score_batch rows.
    assert counting.reads[0] == ("rows", len(labelled))
    slices = counting.reads[1:]
    assert all(kind == "slice" and rows <= 64 for kind, rows in slices)
    assert sum(rows for _, rows in slices) == len(x)


def test_a_cold_start_draws_a_seeded_random_batch(data):
    x, _ = data
    rows = np.array([5, 9, 40], dtype=np.int64)
    first = iterate(x, rows, np.zeros(3, dtype=np.int64), iteration=1)
    assert first.cold_start and first.predictions is None and first.model is None and first.projection is None
    assert first.epochs == 0 and first.val_accuracy is None and first.mean_bald is None
    assert len(first.oracle) == 15 and not set(first.oracle.tolist()) & {5, 9, 40}
    assert len(set(first.oracle.tolist())) == 15 and first.precision_sample.size == 0
    np.testing.assert_array_equal(iterate(x, rows, np.zeros(3, dtype=np.int64), iteration=1).oracle, first.oracle)
    none = iterate(x, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), iteration=1)
    assert none.cold_start and len(none.oracle) == 15


def test_few_held_out_labels_give_no_validation_figures(data):
    x, y = data
    rows = np.array([i for cls in range(3) for i in np.flatnonzero(y == cls)[:3]], dtype=np.int64)
    small = iterate(x, rows, y[rows])
    assert small.model is not None and len(small.model.validation_indices) < MIN_VALIDATION
    assert small.val_accuracy is None and small.val_macro_f1 is None
    assert small.mean_bald is not None


@pytest.mark.parametrize(
    ("rows", "labels", "words"),
    [
        ([1, 1], [0, 1], "duplicates"),
        ([1, 400], [0, 1], "[0, 400)"),
        ([1, 2], [0, 3], "class indices"),
        ([1, 2], [0], "same length"),
    ],
)
def test_bad_labels_are_refused(data, rows, labels, words):
    x, _ = data
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace(")", r"\)")):
        iterate(x, np.asarray(rows), np.asarray(labels))


def test_labels_are_mapped_to_rows_and_strangers_counted():
    ids = ["a", "b", "c", "d"]
    rows, values, ignored = labelled_rows(ids, {"d": "emission", "b": "absorption", "zz": "emission"}, CLASSES)
    assert rows.tolist() == [1, 3] and values.tolist() == [0, 1] and ignored == 1
    with pytest.raises(ValueError, match="comet"):
        labelled_rows(ids, {"a": "comet"}, CLASSES)


# --- candidate tables ---------------------------------------------------------------------------------------


def _meta(n: int) -> SpectraMeta:
    ra = np.linspace(0.0, 359.0, n)
    ra[0] = np.nan  # a spectrum without a position
    return SpectraMeta(
        ids=[f"ivo://test/s{i}" for i in range(n)],
        ra=ra,
        dec=np.linspace(-80.0, 80.0, n),
        target=[None if i == 1 else f"HD {i} <&>" for i in range(n)],
    )


def _document(body: bytes) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(io.BytesIO(body), verify="exception")


def test_candidates_are_the_most_uncertain_plus_every_chosen_row(labelled, result):
    unlabelled = np.setdiff1d(np.arange(400), labelled)
    session = settings()
    ranked = ranked_candidates(result, unlabelled=unlabelled, settings=session)
    predictions = result.predictions
    assert predictions is not None
    assert len(set(ranked.tolist())) == len(ranked) and not set(ranked.tolist()) & set(labelled.tolist())
    top = unlabelled[np.argsort(-predictions.bald[unlabelled], kind="stable")][:30]
    assert set(top.tolist()) <= set(ranked.tolist())
    assert set(result.oracle.tolist()) | set(result.precision_sample.tolist()) <= set(ranked.tolist())
    assert len(ranked) <= 30 + len(result.oracle) + len(result.precision_sample)
    assert np.all(np.diff(predictions.bald[ranked]) <= 0)

    by_entropy = ranked_candidates(result, unlabelled=unlabelled, settings=settings(strategy="entropy"))
    assert np.all(np.diff(predictions.entropy[by_entropy]) <= 0)

    random_oracle = ranked_candidates(result, unlabelled=unlabelled, settings=settings(strategy="random"))
    assert random_oracle[: len(result.oracle)].tolist() == result.oracle.tolist()


def test_the_candidates_table_has_the_contract_columns_and_flags(result, labelled):
    session = settings()
    unlabelled = np.setdiff1d(np.arange(400), labelled)
    ranked = ranked_candidates(result, unlabelled=unlabelled, settings=session)
    ranks = {row: i + 1 for i, row in enumerate(ranked.tolist())}
    # Row 0 (no position) and row 1 (no target) are put in the table to see their nulls.
    rows = np.concatenate([[0, 1], ranked[:5]])
    ranks.update({0: 998, 1: 999})
    document = candidates_document(session, session_id="abc", iteration=2, public_url="http://h", description="test")
    body = write_candidates(
        document, rows, ranks=ranks, result=result, meta=_meta(400), settings=session, public_url="http://h"
    )
    table = _document(body).get_first_table()
    names = [f.name for f in table.fields]
    at = CANDIDATE_COLUMNS.index("predicted_class") + 1
    assert names == [*CANDIDATE_COLUMNS[:at], *(probability_column(c) for c in CLASSES), *CANDIDATE_COLUMNS[at:]]
    values = table.array
    assert [str(v) for v in values["id"]] == [f"ivo://test/s{i}" for i in rows.tolist()]
    assert np.ma.getmaskarray(values["ra"])[0] and not np.ma.getmaskarray(values["ra"])[1:].any()
    assert str(values["target"][2]) == f"HD {rows[2]} <&>" and str(values["target"][1]) == ""
    assert [int(r) for r in values["rank"]] == [ranks[r] for r in rows.tolist()]
    oracle = set(result.oracle.tolist())
    assert [bool(v) for v in values["oracle"]] == [r in oracle for r in rows.tolist()]
    assert result.predictions is not None
    np.testing.assert_allclose(np.asarray(values["bald"]), result.predictions.bald[rows], rtol=1e-6)
    assert str(values["access_url"][0]) == "http://h/data?ID=ivo%3A%2F%2Ftest%2Fs0"


# --- learning curve -----------------------------------------------------------------------------------------


def test_the_learning_curve_table_and_plot():
    records = [
        IterationRecord(iteration=1, labels_used=15),
        IterationRecord(iteration=2, labels_used=27, val_accuracy=0.6, val_macro_f1=0.5, mean_bald=0.1,
                        mean_entropy=0.5, precision=0.5, precision_low=0.2, precision_high=0.8, precision_n=6),
        IterationRecord(iteration=3, labels_used=39, val_accuracy=0.8, val_macro_f1=0.7),
    ]  # fmt: skip
    body = write_learning_curve(learning_curve_document(session_id="abc", positive_class="emission"), records)
    values = _document(body).get_first_table().array
    assert [int(v) for v in values["labels_used"]] == [15, 27, 39]
    assert np.ma.getmaskarray(values["val_accuracy"]).tolist() == [True, False, False]
    # The record's default interval (0 and 1 bounds are not set) is null where nothing was measured.
    assert np.ma.getmaskarray(values["precision_low"]).tolist() == [True, False, True]
    assert float(values["precision_high"][1]) == 0.8 and int(values["precision_n"][1]) == 6

    image = Image.open(io.BytesIO(render_learning_curve(records, title="session abc")))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    empty = Image.open(io.BytesIO(render_learning_curve([], title="empty")))
    assert empty.size == (WIDTH, HEIGHT)
    # Inside the axes (the legend is below them) the series are drawn in their colours only when there is data.
    assert _pixels_like(image, (31, 119, 180)) > 20 and _pixels_like(image, (44, 160, 44)) > 20
    assert _pixels_like(empty, (31, 119, 180)) == 0


def _pixels_like(image: Image.Image, colour: tuple[int, int, int]) -> int:
    """Pixels of about this colour in the upper three quarters of the image, where the axes are."""
    area = np.asarray(image.convert("RGB"), dtype=np.int64)[: HEIGHT * 3 // 4]
    return int(np.count_nonzero(np.all(np.abs(area - np.asarray(colour)) < 25, axis=-1)))
