"""A Bayesian 1-D CNN for spectra: MC dropout at prediction gives class probabilities and their uncertainty.

Pure compute (torch and numpy), importable by worker processes; nothing here
imports the web stack. Active learning needs more than a label per spectrum:
it needs to know which spectra the network is unsure about, and why. Dropout
kept on at prediction turns one network into T sampled networks (Gal &
Ghahramani 2016); from their T class-probability vectors come

* the predictive mean, the probabilities to report;
* the predictive entropy H[mean p], total uncertainty;
* BALD, the mutual information H[mean p] - mean H[p_t] between the label and
  the weights: high only where the sampled networks disagree, i.e. where a
  label would teach the model something (Houlsby et al. 2011);
* the variation ratio 1 - (votes of the modal class) / T, a cruder vote count.

Where dropout sits is a modelling choice with a large cost. ``"head"`` puts it
only in the dense layers after the convolutional trunk, so the trunk (nearly
all the arithmetic) runs once per spectrum and only the small head runs T
times; ``"all"`` also drops whole channels inside the trunk and needs T full
passes. ``"head"`` is the default: on 1000-pixel spectra with T = 20 it scores
about 20 times faster (one MC scoring costs about one plain forward pass) and
classified demo spectra as well in our comparison (``tests/benchmarks/mc_dropout.py``).

The trunk's output, the embedding, is deterministic (dropout off) and is
returned with the predictions for 2-D projections and diversity-aware batch
selection (BADGE, k-means++ over gradient embeddings).

Training is class-balanced (loss weights inverse to class frequency, because
the classes of interest in an archive are rare), stops early on the loss over
a stratified validation split, and is deterministic for a given seed on a given
device: same seed, same weights. It runs on the GPU when one is present
(``device="auto"``), else on the CPU.

Inputs are float matrices of shape (spectra, pixels), already resampled to a
common grid and normalised (continuum-divided or standardised); this module
does no preprocessing.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn

__all__ = [
    "BCNN",
    "BCNNConfig",
    "DeviceChoice",
    "DropoutPlacement",
    "EpochRecord",
    "Predictions",
    "TrainedModel",
    "class_weights",
    "load",
    "predict_mc",
    "resolve_device",
    "save",
    "stratified_split",
    "summarize_samples",
    "train",
]

_log = logging.getLogger(__name__)

DropoutPlacement = Literal["head", "all"]
DeviceChoice = Literal["auto", "cpu", "cuda"]

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by `save`; `load` refuses others."""


@dataclass(frozen=True, kw_only=True)
class BCNNConfig:
    """Architecture and training settings of a Bayesian 1-D CNN; JSON-serialisable, stored in checkpoints.

    Parameters
    ----------
    n_inputs
        Pixels per spectrum.
    n_classes
        Number of classes; labels are integers in ``[0, n_classes)``.
    channels
        Output channels of each convolutional block (convolution, batch norm, ReLU, max-pool by 2).
    kernel_sizes
        Kernel width of each block; as many as ``channels``, odd so that padding keeps lengths.
    pool_length
        Length the last block's output is average-pooled to before the dense embedding layer; keeps
        coarse positions (where a line sits matters for spectra) at a size independent of ``n_inputs``.
    embedding_dim
        Width of the embedding, the trunk's output used for projections and diversity.
    head_hidden
        Width of the hidden dense layer of the head.
    dropout
        Dropout probability, in training and in MC prediction.
    dropout_placement
        ``"head"``: dropout only in the dense head, so MC prediction runs the trunk once;
        ``"all"``: also channel dropout (whole channels) after every convolutional block and
        ordinary dropout before the embedding layer.
    balance_classes
        Weight the loss inversely to class frequency.
    learning_rate, weight_decay
        Adam's step size and L2 penalty.
    batch_size
        Spectra per training step.
    min_steps_per_epoch
        Least optimiser steps in an epoch: a small training set is passed over
        several times per epoch. Active learning starts from a few dozen labels,
        where one pass is a single step and ``max_epochs`` passes left the network
        barely trained (models collapsed to ~0.5 accuracy at 40-60 labels).
    max_epochs
        Upper bound on epochs.
    min_epochs
        Epochs trained before early stopping may choose or stop (at most ``max_epochs``):
        the epoch of lowest validation loss is looked for from this epoch on. On a few
        dozen labels the validation split holds a handful of spectra and its loss is
        noisy; without this guard training often kept the weights of epoch 4 or 5, barely
        fitted (0.77-0.85 training accuracy and 0.74-0.83 on held-out demo spectra, where
        the same labels reach 0.93-0.95 when trained on).
    patience
        Epochs without improvement of the validation loss before stopping.
    min_delta
        Smallest decrease of the validation loss that counts as an improvement.
    validation_fraction
        Share of each class held out for early stopping; 0 trains ``max_epochs`` on everything.
    average_weights
        Return the average of the weights at the end of each epoch from ``min_epochs`` on
        (up to the epoch early stopping chooses), stochastic weight averaging (Izmailov et
        al. 2018, `torch.optim.swa_utils`), with batch-norm statistics recomputed on the
        training set. On a few dozen labels the weights of any single epoch depend on the
        last few steps: the same 80 labels gave held-out accuracies of 0.74-0.92 over five
        training seeds, and 0.91-0.92 averaged.
    seed
        Seeds weights, the split, shuffling and training-time dropout.
    device
        ``"auto"`` (the GPU when present), ``"cpu"`` or ``"cuda"``.
    """

    n_inputs: int
    n_classes: int
    channels: tuple[int, ...] = (16, 32, 64)
    kernel_sizes: tuple[int, ...] = (7, 5, 5)
    pool_length: int = 8
    embedding_dim: int = 64
    head_hidden: int = 64
    dropout: float = 0.3
    dropout_placement: DropoutPlacement = "head"
    balance_classes: bool = True
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    min_steps_per_epoch: int = 10
    max_epochs: int = 100
    min_epochs: int = 20
    patience: int = 10
    min_delta: float = 1e-4
    validation_fraction: float = 0.2
    average_weights: bool = True
    seed: int = 0
    device: DeviceChoice = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.n_inputs < 1:
            problems.append(f"n_inputs must be positive, not {self.n_inputs}")
        if self.n_classes < 2:
            problems.append(f"n_classes must be at least 2, not {self.n_classes}")
        if not self.channels or len(self.channels) != len(self.kernel_sizes):
            problems.append("channels and kernel_sizes must be non-empty and of equal length")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            problems.append(f"kernel sizes must be odd and positive, not {self.kernel_sizes}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), not {self.dropout}")
        if self.dropout_placement not in ("head", "all"):
            problems.append(f"dropout_placement must be 'head' or 'all', not {self.dropout_placement!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(f"validation_fraction must be in [0, 1), not {self.validation_fraction}")
        if (
            min(self.batch_size, self.max_epochs, self.min_epochs, self.patience, self.pool_length, self.embedding_dim)
            < 1
        ):
            problems.append(
                "batch_size, max_epochs, min_epochs, patience, pool_length and embedding_dim must be positive"
            )
        if self.min_steps_per_epoch < 1:
            problems.append(f"min_steps_per_epoch must be positive, not {self.min_steps_per_epoch}")
        if problems:
            raise ValueError("Invalid BCNN configuration: " + "; ".join(problems))

    def to_json(self) -> str:
        """The configuration as JSON, as stored in checkpoints."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BCNNConfig:
        """Read a configuration written by `to_json`.

        Raises
        ------
        ValueError
            Raised if the JSON is malformed or holds unknown or invalid settings.
        """
        try:
            values = json.loads(text)
            for key in ("channels", "kernel_sizes"):
                values[key] = tuple(values[key])
            return cls(**values)
        except (TypeError, KeyError, json.JSONDecodeError) as e:
            msg = f"Not a BCNN configuration: {e}"
            raise ValueError(msg) from e


def resolve_device(choice: DeviceChoice | str) -> torch.device:
    """The device to use: the GPU for ``"auto"`` when torch sees one, else the CPU.

    Raises
    ------
    ValueError
        Raised if ``"cuda"`` is asked for and no GPU is available, or the choice is unknown.
    """
    match choice:
        case "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        case "cpu":
            return torch.device("cpu")
        case "cuda":
            if not torch.cuda.is_available():
                msg = "device 'cuda' was asked for but torch sees no GPU"
                raise ValueError(msg)
            return torch.device("cuda")
        case _:
            msg = f"Unknown device {choice!r}: use 'auto', 'cpu' or 'cuda'"
            raise ValueError(msg)


class BCNN(nn.Module):
    """Convolutional trunk to a deterministic embedding, then a dense head with dropout that gives logits.

    Parameters
    ----------
    config
        Architecture; only the architecture fields are read.
    """

    def __init__(self, config: BCNNConfig) -> None:
        super().__init__()
        trunk_dropout = config.dropout if config.dropout_placement == "all" else 0.0
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels, kernel in zip(config.channels, config.kernel_sizes, strict=True):
            layers += [
                nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(),
                nn.MaxPool1d(2, ceil_mode=True),
            ]
            if trunk_dropout:
                # Whole channels: neighbouring pixels are correlated, and one mask per channel costs
                # far less to draw than one per pixel in T full passes.
                layers.append(nn.Dropout1d(trunk_dropout))
            in_channels = out_channels
        layers += [nn.AdaptiveAvgPool1d(config.pool_length), nn.Flatten()]
        if trunk_dropout:
            layers.append(nn.Dropout(trunk_dropout))
        layers += [nn.Linear(in_channels * config.pool_length, config.embedding_dim), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(config.embedding_dim, config.head_hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, config.n_classes),
        )

    def embed(self, x: Tensor) -> Tensor:
        """Embedding of spectra of shape (batch, pixels)."""
        out: Tensor = self.trunk(x.unsqueeze(1))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Logits of spectra of shape (batch, pixels)."""
        out: Tensor = self.head(self.embed(x))
        return out


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """Losses of one training epoch; the validation figures are NaN without a validation split."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass(kw_only=True)
class TrainedModel:
    """A trained network with the configuration that built it and its training history.

    ``validation_indices`` are the rows of the training input that `train` held out for early
    stopping (sorted; empty without a split, and after `load`), so that a caller can report
    metrics on exactly the labels the weights were not fitted to.
    """

    network: BCNN
    config: BCNNConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    validation_indices: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def device(self) -> torch.device:
        """Where the network's weights live."""
        return next(self.network.parameters()).device


@dataclass(frozen=True, kw_only=True)
class Predictions:
    """MC-dropout predictions of N spectra over K classes from T samples; natural logarithms throughout.

    Attributes
    ----------
    mean
        (N, K) predictive mean of the class probabilities; rows sum to 1.
    predicted
        (N,) class of highest mean probability.
    entropy
        (N,) predictive entropy H[mean p], in [0, log K].
    bald
        (N,) mutual information H[mean p] - mean_t H[p_t], in [0, entropy].
    variation_ratio
        (N,) 1 - (samples voting for the modal class) / T, in [0, 1 - 1/K].
    embedding
        (N, D) deterministic trunk output, for projections and diversity-aware selection.
    samples
        T, the number of MC samples behind the figures.
    """

    mean: NDArray[np.float32]
    predicted: NDArray[np.int64]
    entropy: NDArray[np.float32]
    bald: NDArray[np.float32]
    variation_ratio: NDArray[np.float32]
    embedding: NDArray[np.float32]
    samples: int


# --- training ---------------------------------------------------------------------------------------------


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators and turn on deterministic algorithms, restoring both afterwards.

    The caller's global random state and determinism setting are left as they were, so that
    training a model does not perturb unrelated code in the same process.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    if device.type == "cuda":
        # cuBLAS is only deterministic with a fixed workspace; it reads this when its handle is made.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        # Some CUDA kernels (adaptive pooling's backward) have no deterministic version: warn, do not fail.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _as_inputs(features: ArrayLike, n_inputs: int) -> NDArray[np.float32]:
    array = np.ascontiguousarray(features, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != n_inputs:
        msg = f"features must have shape (spectra, {n_inputs}), not {array.shape}"
        raise ValueError(msg)
    if not np.isfinite(array).all():
        msg = "features hold NaN or infinite values; fill or mask them in preprocessing"
        raise ValueError(msg)
    return array


def _as_labels(labels: ArrayLike, n: int, n_classes: int) -> NDArray[np.int64]:
    array = np.asarray(labels)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        msg = f"labels must be {n} integers, not an array of {array.dtype} with shape {array.shape}"
        raise ValueError(msg)
    if n and (array.min() < 0 or array.max() >= n_classes):
        msg = f"labels must lie in [0, {n_classes})"
        raise ValueError(msg)
    return array.astype(np.int64)


def stratified_split(
    labels: NDArray[np.int64], *, fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of a training and a validation set holding each class in the same proportion.

    Every class with at least two members gives at least one to validation, so that early
    stopping also watches rare classes; a class seen once stays in training.
    """
    train_parts, val_parts = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = 0 if fraction == 0 or len(members) < 2 else max(1, round(fraction * len(members)))
        n_val = min(n_val, len(members) - 1)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


def class_weights(labels: NDArray[np.int64], n_classes: int) -> NDArray[np.float32]:
    """Loss weights inverse to class frequency, n / (K_present * n_k); absent classes get 0.

    A balanced set gets weight 1 everywhere, so the loss keeps its usual scale.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _weighted_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    per_sample = nn.functional.cross_entropy(logits, targets, reduction="none")
    return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)


def _evaluate(network: BCNN, x: Tensor, y: Tensor, w: Tensor, *, batch_size: int) -> tuple[float, float]:
    """Weighted loss and accuracy with dropout off."""
    network.eval()
    loss_sum, weight_sum, correct = 0.0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            logits = network(x[sl])
            per_sample = nn.functional.cross_entropy(logits, y[sl], reduction="none")
            loss_sum += float((per_sample * w[sl]).sum())
            weight_sum += float(w[sl].sum())
            correct += int((logits.argmax(dim=1) == y[sl]).sum())
    return loss_sum / max(weight_sum, 1e-12), correct / max(len(x), 1)


def train(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    config: BCNNConfig,
    sample_weight: ArrayLike | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainedModel:
    """Train a Bayesian CNN with a class-balanced loss and early stopping on a stratified validation split.

    Parameters
    ----------
    features
        (N, ``config.n_inputs``) preprocessed spectra.
    labels
        (N,) integer classes in ``[0, config.n_classes)``.
    config
        Architecture and training settings; its seed makes the result reproducible on a device.
    sample_weight
        Optional (N,) non-negative per-spectrum weights (e.g. label confidence), multiplied
        into the class weights.
    on_epoch
        Called after every epoch with its record, e.g. to report a job's progress; training
        cannot tell in advance when early stopping will end it, so ``config.max_epochs`` is
        the only upper bound a caller can show.

    Returns
    -------
    TrainedModel
        The network with the weights of the epoch of lowest validation loss (the last epoch
        without a validation split), or with ``average_weights`` their average from
        ``min_epochs`` up to that epoch; in eval mode, on the configured device.

    Raises
    ------
    ValueError
        Raised if the shapes, labels or weights are invalid, or fewer than two classes are present.
    """
    x_all = _as_inputs(features, config.n_inputs)
    y_all = _as_labels(labels, len(x_all), config.n_classes)
    if len(np.unique(y_all)) < 2:
        msg = "training needs spectra of at least two classes"
        raise ValueError(msg)
    w_all = _loss_weights(y_all, sample_weight, config)
    device = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = stratified_split(y_all, fraction=config.validation_fraction, rng=rng)

    def on_device(idx: NDArray[np.int64]) -> tuple[Tensor, Tensor, Tensor]:
        return (
            torch.from_numpy(x_all[idx]).to(device),
            torch.from_numpy(y_all[idx]).to(device),
            torch.from_numpy(w_all[idx]).to(device),
        )

    x_tr, y_tr, w_tr = on_device(train_idx)
    x_va, y_va, w_va = on_device(val_idx)

    with _seeded(config.seed, device):
        network = BCNN(config).to(device)
        optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        shuffler = torch.Generator().manual_seed(config.seed)
        history: list[EpochRecord] = []
        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(network.state_dict())
        averaged = AveragedModel(network) if config.average_weights else None
        for epoch in range(1, config.max_epochs + 1):
            train_loss = _train_epoch(
                network,
                optimiser,
                x_tr,
                y_tr,
                w_tr,
                batch_size=config.batch_size,
                min_steps=config.min_steps_per_epoch,
                shuffler=shuffler,
            )
            if len(x_va):
                val_loss, val_acc = _evaluate(network, x_va, y_va, w_va, batch_size=4 * config.batch_size)
            else:
                val_loss, val_acc = math.nan, math.nan
            history.append(EpochRecord(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_accuracy=val_acc))
            if on_epoch is not None:
                on_epoch(history[-1])
            if epoch < min(config.min_epochs, config.max_epochs):
                continue
            if averaged is not None:
                averaged.update_parameters(network)
            if not len(x_va) or val_loss < best_loss - config.min_delta:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy((averaged.module if averaged is not None else network).state_dict())
            elif epoch - best_epoch >= config.patience:
                break
        network.load_state_dict(best_state)
        if averaged is not None:
            # Averaged weights need batch-norm statistics of their own (Izmailov et al. 2018, sec. 3.2).
            update_bn((x_tr[i : i + config.batch_size] for i in range(0, len(x_tr), config.batch_size)), network)
    network.eval()
    _log.debug("Trained BCNN for %d epochs, best %d (validation loss %.4g)", len(history), best_epoch, best_loss)
    return TrainedModel(
        network=network, config=config, history=history, best_epoch=best_epoch, validation_indices=val_idx
    )


def _loss_weights(
    labels: NDArray[np.int64], sample_weight: ArrayLike | None, config: BCNNConfig
) -> NDArray[np.float32]:
    """Per-spectrum loss weights: the caller's (checked), times the class weights when balancing."""
    weights = np.ones(len(labels), dtype=np.float32)
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float32)
        if weights.shape != labels.shape or not np.isfinite(weights).all() or (weights < 0).any():
            msg = f"sample_weight must be {len(labels)} finite non-negative numbers"
            raise ValueError(msg)
    if config.balance_classes:
        weights = weights * class_weights(labels, config.n_classes)[labels]
    return weights


def _train_epoch(
    network: BCNN,
    optimiser: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    w: Tensor,
    *,
    batch_size: int,
    min_steps: int,
    shuffler: torch.Generator,
) -> float:
    """One epoch: passes over the training set, each in an order drawn from ``shuffler``, until at least
    ``min_steps`` optimiser steps are made; returns the mean weighted loss."""
    network.train()
    passes = max(1, math.ceil(min_steps / max(1, math.ceil(len(x) / batch_size))))
    batches = [
        order[start : start + batch_size]
        for order in (torch.randperm(len(x), generator=shuffler).to(x.device) for _ in range(passes))
        for start in range(0, len(x), batch_size)
    ]
    total, weight_total = 0.0, 0.0
    for idx in batches:
        if len(idx) < 2:
            continue  # batch norm cannot train on a single spectrum
        loss = _weighted_loss(network(x[idx]), y[idx], w[idx])
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # Tensor.backward is untyped in torch's stubs
        optimiser.step()
        batch_weight = float(w[idx].sum())
        total += float(loss.detach()) * batch_weight
        weight_total += batch_weight
    return total / max(weight_total, 1e-12)


# --- prediction -------------------------------------------------------------------------------------------


def summarize_samples(probs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Predictive mean, entropy, BALD and variation ratio from (T, N, K) sampled class probabilities.

    BALD is clipped to [0, entropy]: it is non-negative and at most the entropy in exact
    arithmetic, and rounding must not put a spectrum outside that range.
    """
    n_samples, _, n_classes = probs.shape
    mean = probs.mean(dim=0)
    entropy = -torch.special.xlogy(mean, mean).sum(dim=-1)
    expected_entropy = -torch.special.xlogy(probs, probs).sum(dim=-1).mean(dim=0)
    bald = torch.minimum((entropy - expected_entropy).clamp_min(0.0), entropy)
    votes = nn.functional.one_hot(probs.argmax(dim=-1), n_classes).sum(dim=0)
    variation_ratio = 1.0 - votes.max(dim=-1).values.to(probs.dtype) / n_samples
    return mean, entropy, bald, variation_ratio


def _set_dropout(network: nn.Module, *, active: bool) -> None:
    """Switch only the dropout layers; batch norm keeps its running statistics."""
    network.eval()
    for module in network.modules():
        if isinstance(module, nn.Dropout | nn.Dropout1d):
            module.train(active)


def _mc_probs(model: TrainedModel, x: Tensor, *, samples: int) -> tuple[Tensor, Tensor]:
    """(T, B, K) sampled probabilities and the (B, D) deterministic embedding of one batch."""
    network = model.network
    _set_dropout(network, active=False)
    embedding = network.embed(x)
    if model.config.dropout_placement == "head":
        # The trunk has no dropout: its output is the same for every sample, so only the head runs T times.
        _set_dropout(network, active=True)
        logits = network.head(embedding.repeat(samples, 1)).view(samples, len(x), -1)
    else:
        _set_dropout(network, active=True)
        logits = torch.stack([network(x) for _ in range(samples)])
    _set_dropout(network, active=False)
    return torch.softmax(logits.float(), dim=-1), embedding


def predict_mc(
    model: TrainedModel,
    features: ArrayLike,
    *,
    samples: int = 20,
    batch_size: int = 256,
    seed: int | None = 0,
) -> Predictions:
    """Class probabilities and uncertainties of spectra from T forward passes with dropout on.

    Parameters
    ----------
    model
        A trained model; it is used on its own device.
    features
        (N, ``n_inputs``) spectra, preprocessed as for training.
    samples
        T, the number of dropout samples; more give steadier uncertainties at linear cost.
    batch_size
        Spectra per forward pass (the head sees ``batch_size * samples`` rows).
    seed
        Seeds the dropout masks so that scoring is reproducible; None draws from torch's global
        generator instead.

    Returns
    -------
    Predictions
        Mean probabilities, predicted class, entropy, BALD, variation ratio and embedding.

    Raises
    ------
    ValueError
        Raised if the features do not fit the model or ``samples`` or ``batch_size`` is not positive.
    """
    if samples < 1 or batch_size < 1:
        msg = f"samples and batch_size must be positive, not {samples} and {batch_size}"
        raise ValueError(msg)
    x_all = _as_inputs(features, model.config.n_inputs)
    device = model.device
    parts: list[tuple[Tensor, ...]] = []
    with _maybe_seeded(seed, device), torch.inference_mode():
        for start in range(0, len(x_all), batch_size):
            x = torch.from_numpy(x_all[start : start + batch_size]).to(device)
            probs, batch_embedding = _mc_probs(model, x, samples=samples)
            parts.append((*summarize_samples(probs), batch_embedding))
    if not parts:
        k, d = model.config.n_classes, model.config.embedding_dim
        empty = torch.empty(0)
        parts.append((empty.view(0, k), empty, empty, empty, empty.view(0, d)))
    mean, entropy, bald, variation, embedding = (torch.cat(column).cpu().numpy() for column in zip(*parts, strict=True))
    return Predictions(
        mean=mean.astype(np.float32),
        predicted=mean.argmax(axis=1).astype(np.int64),
        entropy=entropy.astype(np.float32),
        bald=bald.astype(np.float32),
        variation_ratio=variation.astype(np.float32),
        embedding=embedding.astype(np.float32),
        samples=samples,
    )


@contextmanager
def _maybe_seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# --- checkpoints ------------------------------------------------------------------------------------------


def save(model: TrainedModel, path: Path | str) -> None:
    """Write weights, configuration and history to one file that `load` reads without unpickling code."""
    state = {name: tensor.detach().cpu() for name, tensor in model.network.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_json(),
        "history": json.dumps([asdict(record) for record in model.history]),
        "best_epoch": model.best_epoch,
        "state_dict": state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    Path(path).write_bytes(buffer.getvalue())


def load(path: Path | str, *, device: DeviceChoice | None = None) -> TrainedModel:
    """Read a checkpoint written by `save`, in eval mode.

    ``weights_only=True`` makes torch refuse anything but tensors and plain containers, so a
    checkpoint from an untrusted source cannot run code.

    Parameters
    ----------
    path
        The checkpoint file.
    device
        Where to put the network; the checkpoint's configured device when None.

    Raises
    ------
    ValueError
        Raised if the file is not a checkpoint of this format.
    """
    try:
        payload: Any = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        msg = f"{path} is not a BCNN checkpoint: {e}"
        raise ValueError(msg) from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        msg = f"{path} is not a BCNN checkpoint of format {CHECKPOINT_FORMAT}"
        raise ValueError(msg)
    config = BCNNConfig.from_json(payload["config"])
    network = BCNN(config)
    network.load_state_dict(payload["state_dict"])
    network.to(resolve_device(device or config.device)).eval()
    history = [EpochRecord(**record) for record in json.loads(payload["history"])]
    return TrainedModel(network=network, config=config, history=history, best_epoch=int(payload["best_epoch"]))
