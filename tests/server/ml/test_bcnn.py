"""The Bayesian CNN learns synthetic spectra, is reproducible, and its MC-dropout figures obey their definitions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vocloud.server.ml import bcnn

pytestmark = pytest.mark.timeout(60)

PIXELS = 200


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads, and two threads on two shared cores slow down many times."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_spectra(
    n: int,
    *,
    seed: int,
    weights: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3),
    amplitude: float = 0.5,
    noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuum 1 with, at the line centre, absorption (class 0), emission (1) or a double emission peak (2)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=np.asarray(weights) / sum(weights))
    x = np.arange(PIXELS)
    centre = PIXELS / 2 + rng.normal(0, 3, n)[:, None]
    width = rng.uniform(3, 6, n)[:, None]
    amp = amplitude * rng.uniform(0.7, 1.3, n)[:, None]

    def line(mu: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((x - mu) / width) ** 2)

    kind = labels[:, None]
    profile = np.where(kind == 0, -amp * line(centre), amp * line(centre))
    profile = np.where(kind == 2, amp * (line(centre - 12) + line(centre + 12)), profile)
    flux = 1 + profile + rng.normal(0, noise, (n, PIXELS))
    return flux.astype(np.float32), labels


def small_config(**overrides: object) -> bcnn.BCNNConfig:
    values: dict[str, object] = {
        "n_inputs": PIXELS,
        "n_classes": 3,
        "channels": (8, 16),
        "kernel_sizes": (7, 5),
        "embedding_dim": 32,
        "head_hidden": 32,
        "learning_rate": 3e-3,
        "max_epochs": 25,
        "min_epochs": 1,
        "patience": 5,
        "device": "cpu",
    }
    values.update(overrides)
    return bcnn.BCNNConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_spectra(300, seed=0)


@pytest.fixture(scope="module")
def trained(data: tuple[np.ndarray, np.ndarray]) -> bcnn.TrainedModel:
    return bcnn.train(*data, config=small_config())


def test_learns_a_three_class_problem(trained: bcnn.TrainedModel) -> None:
    best = trained.history[trained.best_epoch - 1]
    assert best.val_accuracy >= 0.95
    features, labels = synthetic_spectra(300, seed=1)
    predictions = bcnn.predict_mc(trained, features, samples=10)
    assert (predictions.predicted == labels).mean() >= 0.9
    assert not trained.network.training


def test_early_stopping_keeps_the_best_epoch(data: tuple[np.ndarray, np.ndarray]) -> None:
    model = bcnn.train(*data, config=small_config(max_epochs=40, patience=2, learning_rate=1e-2))
    losses = [record.val_loss for record in model.history]
    best = losses[model.best_epoch - 1]
    assert len(losses) < 40 and len(losses) - model.best_epoch == 2
    assert all(loss >= best - 1e-4 for loss in losses[model.best_epoch :])
    assert best == pytest.approx(min(losses), abs=1e-3)
    features, _ = data
    with torch.no_grad():
        logits = model.network(torch.from_numpy(features))
    assert torch.isfinite(logits).all()  # the restored best weights are usable


@pytest.mark.parametrize(("min_epochs", "max_epochs"), [(12, 30), (12, 8)])
def test_early_stopping_waits_for_min_epochs(
    data: tuple[np.ndarray, np.ndarray], min_epochs: int, max_epochs: int
) -> None:
    """The kept epoch is never before min_epochs (nor after max_epochs), even when an early loss was lowest."""
    config = small_config(max_epochs=max_epochs, min_epochs=min_epochs, patience=2, learning_rate=1e-2)
    model = bcnn.train(*data, config=config)
    floor = min(min_epochs, max_epochs)
    losses = [record.val_loss for record in model.history]
    assert floor <= model.best_epoch <= max_epochs
    assert len(losses) >= floor
    assert losses[model.best_epoch - 1] == pytest.approx(min(losses[floor - 1 :]), abs=1e-3)


def test_averaged_weights_are_the_mean_of_the_epochs_from_min_epochs() -> None:
    """Weight averaging returns the mean of the end-of-epoch weights from min_epochs on, not the last epoch's."""
    data = synthetic_spectra(60, seed=3)
    common = {"min_epochs": 2, "validation_fraction": 0.0}
    # The same seed gives the same trajectory, so a run stopped at epoch m holds that epoch's weights.
    plain = [bcnn.train(*data, config=small_config(max_epochs=m, average_weights=False, **common)) for m in (2, 3, 4)]
    averaged = bcnn.train(*data, config=small_config(max_epochs=4, **common))
    for name, tensor in averaged.network.named_parameters():
        epochs = [dict(model.network.named_parameters())[name] for model in plain]
        torch.testing.assert_close(tensor, sum(epochs) / 3, msg=name)
        assert not torch.equal(tensor, epochs[-1]), name
    # Batch-norm statistics are recomputed for the averaged weights, so it still predicts.
    features, labels = synthetic_spectra(200, seed=5)
    assert (bcnn.predict_mc(averaged, features, samples=5).predicted == labels).mean() >= 0.8


def test_same_seed_same_weights_other_seed_other_weights(data: tuple[np.ndarray, np.ndarray]) -> None:
    config = small_config(max_epochs=3)
    first, second = (bcnn.train(*data, config=config) for _ in range(2))
    other = bcnn.train(*data, config=small_config(max_epochs=3, seed=1))
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name]), name
    assert not all(
        torch.equal(tensor, other.network.state_dict()[name]) for name, tensor in first.network.state_dict().items()
    )
    p1, p2, p3 = (bcnn.predict_mc(model, data[0][:50], samples=5) for model in (first, second, other))
    np.testing.assert_array_equal(p1.mean, p2.mean)
    np.testing.assert_array_equal(p1.embedding, p2.embedding)
    assert not np.array_equal(p1.mean, p3.mean)


def test_training_leaves_global_state_alone(data: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    bcnn.train(*data, config=small_config(max_epochs=1))
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_mc_outputs_lie_in_their_ranges(trained: bcnn.TrainedModel) -> None:
    features, _ = synthetic_spectra(200, seed=2, amplitude=0.15, noise=0.3)  # hard cases: real uncertainty
    p = bcnn.predict_mc(trained, features, samples=20, batch_size=64)
    k = trained.config.n_classes
    assert p.mean.shape == (200, k) and p.embedding.shape == (200, trained.config.embedding_dim)
    np.testing.assert_allclose(p.mean.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.predicted, p.mean.argmax(axis=1))
    assert (p.entropy >= 0).all() and (p.entropy <= math.log(k) + 1e-6).all()
    assert (p.bald >= 0).all() and (p.bald <= p.entropy).all()
    assert (p.variation_ratio >= 0).all() and (p.variation_ratio <= 1 - 1 / k + 1e-6).all()
    assert p.bald.max() > 0 and p.variation_ratio.max() > 0
    assert p.samples == 20


SAMPLED = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25]]
"""Four dropout samples of one spectrum; the modal class 0 gets three votes."""


def _expected_figures() -> tuple[list[float], float, float, float]:
    t = len(SAMPLED)
    mean = [sum(sample[j] for sample in SAMPLED) / t for j in range(3)]
    entropy = -sum(m * math.log(m) for m in mean)
    expected_entropy = sum(-sum(q * math.log(q) for q in sample) for sample in SAMPLED) / t
    return mean, entropy, entropy - expected_entropy, 1 - 3 / t


def test_summaries_match_their_formulas() -> None:
    mean, entropy, bald, variation_ratio = _expected_figures()
    got = bcnn.summarize_samples(torch.tensor(SAMPLED, dtype=torch.float64).unsqueeze(1))
    np.testing.assert_allclose(got[0][0].numpy(), mean, rtol=1e-12)
    assert got[1].item() == pytest.approx(entropy, rel=1e-12)
    assert got[2].item() == pytest.approx(bald, rel=1e-12)
    assert got[3].item() == pytest.approx(variation_ratio)


def test_summaries_of_agreeing_one_hot_samples_are_zero() -> None:
    certain = torch.tensor([[[0.0, 1.0, 0.0]]] * 5)
    mean, entropy, bald, variation_ratio = bcnn.summarize_samples(certain)
    assert entropy.item() == 0 and bald.item() == 0 and variation_ratio.item() == 0
    assert mean.tolist() == [[0.0, 1.0, 0.0]]


class _FixedHead(nn.Module):
    """A head whose T samples are known: it returns the log of SAMPLED whatever it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.log(torch.tensor(SAMPLED))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        assert embedding.shape[0] == len(SAMPLED)  # one spectrum repeated T times: the trunk ran once
        return self.logits


def test_predict_mc_turns_known_head_samples_into_the_formulas(trained: bcnn.TrainedModel) -> None:
    model = bcnn.TrainedModel(network=bcnn.BCNN(trained.config), config=trained.config)
    model.network.head = _FixedHead()
    features, _ = synthetic_spectra(1, seed=5)
    p = bcnn.predict_mc(model, features, samples=len(SAMPLED))
    mean, entropy, bald, variation_ratio = _expected_figures()
    np.testing.assert_allclose(p.mean[0], mean, rtol=1e-5)
    assert p.entropy[0] == pytest.approx(entropy, rel=1e-5)
    assert p.bald[0] == pytest.approx(bald, rel=1e-4)
    assert p.variation_ratio[0] == pytest.approx(variation_ratio)
    assert p.predicted[0] == 0


@pytest.mark.parametrize("placement", ["head", "all"])
def test_dropout_is_active_at_prediction_but_the_embedding_is_not(
    placement: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    model = bcnn.train(*data, config=small_config(max_epochs=2, dropout_placement=placement))
    features = data[0][:20]
    first = bcnn.predict_mc(model, features, samples=5, seed=1)
    second = bcnn.predict_mc(model, features, samples=5, seed=2)
    again = bcnn.predict_mc(model, features, samples=5, seed=1)
    unseeded = bcnn.predict_mc(model, features, samples=5, seed=None)
    assert not np.array_equal(first.mean, second.mean)
    assert not np.array_equal(first.mean, unseeded.mean)
    np.testing.assert_array_equal(first.mean, again.mean)
    np.testing.assert_array_equal(first.embedding, second.embedding)
    with torch.no_grad():
        np.testing.assert_allclose(first.embedding, model.network.embed(torch.from_numpy(features)).numpy(), atol=1e-6)
    assert not model.network.training
    assert not any(m.training for m in model.network.modules())


def test_class_balancing_rescues_the_minority_class() -> None:
    def sample(n: int, *, seed: int, weights: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        return synthetic_spectra(n, seed=seed, weights=weights, amplitude=0.25, noise=0.4)

    features, labels = sample(400, seed=3, weights=(0.9, 0.1))
    test_features, test_labels = sample(600, seed=4, weights=(0.5, 0.5))
    recall = {}
    for balance in (True, False):
        model = bcnn.train(features, labels, config=small_config(n_classes=2, balance_classes=balance))
        predicted = bcnn.predict_mc(model, test_features, samples=10).predicted
        recall[balance] = (predicted[test_labels == 1] == 1).mean()
    assert recall[True] >= recall[False] + 0.3
    assert recall[True] >= 0.6


def test_class_weights_are_inverse_frequencies() -> None:
    weights = bcnn.class_weights(np.array([0] * 9 + [1]), 3)
    np.testing.assert_allclose(weights, [10 / 18, 10 / 2, 0.0])


def test_validation_split_is_stratified() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [2])
    train_idx, val_idx = bcnn.stratified_split(labels, fraction=0.2, rng=np.random.default_rng(0))
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[val_idx], minlength=3).tolist() == [18, 2, 0]


def test_checkpoint_round_trip_predicts_identically(trained: bcnn.TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    bcnn.save(trained, path)
    loaded = bcnn.load(path)
    assert loaded.config == trained.config
    assert loaded.history == trained.history and loaded.best_epoch == trained.best_epoch
    features, _ = synthetic_spectra(40, seed=6)
    before = bcnn.predict_mc(trained, features, samples=8)
    after = bcnn.predict_mc(loaded, features, samples=8)
    for name in ("mean", "entropy", "bald", "variation_ratio", "embedding", "predicted"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_loading_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": "{}", "state_dict": _Payload()}, path)
    with pytest.raises(ValueError, match="not a BCNN checkpoint"):
        bcnn.load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a BCNN checkpoint"):
        bcnn.load(tmp_path / "junk.pt")


def test_auto_picks_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch, trained: bcnn.TrainedModel) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bcnn.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no GPU"):
        bcnn.resolve_device("cuda")
    assert trained.device == torch.device("cpu")


def test_config_round_trips_and_refuses_nonsense() -> None:
    config = small_config(dropout_placement="all", seed=7)
    assert bcnn.BCNNConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="dropout_placement"):
        small_config(dropout_placement="trunk")
    with pytest.raises(ValueError, match="kernel sizes"):
        small_config(kernel_sizes=(6, 5))
    with pytest.raises(ValueError, match="Not a BCNN configuration"):
        bcnn.BCNNConfig.from_json('{"n_inputs": 3}')


def test_bad_inputs_are_refused(trained: bcnn.TrainedModel, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = data
    with pytest.raises(ValueError, match="shape"):
        bcnn.predict_mc(trained, features[:, :100])
    with pytest.raises(ValueError, match="lie in"):
        bcnn.train(features, labels + 1, config=small_config())
    with pytest.raises(ValueError, match="two classes"):
        bcnn.train(features, np.zeros(len(labels), dtype=int), config=small_config())
    nan_features = features.copy()
    nan_features[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bcnn.predict_mc(trained, nan_features)
    empty = bcnn.predict_mc(trained, np.empty((0, PIXELS), dtype=np.float32))
    assert empty.mean.shape == (0, 3) and empty.embedding.shape == (0, trained.config.embedding_dim)


@pytest.mark.parametrize(
    ("n", "batch_size", "min_steps", "expected"), [(20, 64, 7, 7), (20, 2, 7, 10), (40, 8, 12, 15)]
)
def test_an_epoch_makes_at_least_min_steps(
    monkeypatch: pytest.MonkeyPatch, n: int, batch_size: int, min_steps: int, expected: int
) -> None:
    """A few dozen labels still get enough optimiser steps: small sets are passed over several times an epoch."""
    steps = 0
    original = torch.optim.Adam.step

    def counting_step(self: torch.optim.Adam, *args: object, **kwargs: object) -> object:
        nonlocal steps
        steps += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    rng = np.random.default_rng(0)
    config = bcnn.BCNNConfig(
        n_inputs=32, n_classes=2, channels=(4,), kernel_sizes=(3,), pool_length=2, embedding_dim=4, head_hidden=4,
        batch_size=batch_size, min_steps_per_epoch=min_steps, max_epochs=1, validation_fraction=0.0, device="cpu",
    )  # fmt: skip

    bcnn.train(rng.normal(size=(n, 32)).astype(np.float32), np.arange(n) % 2, config=config)

    # Whole passes until min_steps is reached: ceil(min_steps / batches per pass) passes of ceil(n / batch_size).
    assert steps == expected
