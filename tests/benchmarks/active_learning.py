"""Active learning with a simulated expert: learning curves, labels saved, MC-dropout cost, memory, precision coverage.

Why this exists: issue 4's acceptance asks whether vocloud's active learning
earns its keep, i.e. whether choosing what the astronomer labels (entropy,
BALD, a diverse batch by BADGE) reaches a given accuracy
with fewer labels than labelling at random (Walmsley et al. 2020 saw BALD save
35-60 % of the labels; vocloud aims at a ratio to random of 0.5 or less);
whether MC-dropout scoring costs at most 20 % more than T plain forward passes;
whether an iteration's memory stays flat as the archive grows; and whether the
precision interval a session reports covers the truth in at least 90 % of
iterations. This script measures all of it on the server's own code and prints
one table and a short summary. It asserts nothing: the machines are shared and
the figures are for the issue note.

How, step by step:

1. **Archive.** Demo spectra from the demo archive's generator
   (`vocloud.server.spectra.demo`, three classes in the real Ondřejov
   proportions; its true classes are the simulated expert's answers), rendered
   in memory rather than written as FITS and read back: the generator's FITS
   writer and the readers are tested elsewhere, and the round trip would cost
   minutes without changing a pixel the learner sees (the flux is float32
   either way). Held out for testing: every spectrum of a random fifth of the
   *stars* (``--test-fraction``), so that no star is both learned and tested
   (the demo observes stars several times).
2. **Preprocessing** with the project's pipeline (`pipeline.run_pipeline`
   into an HDF5 feature store: air to vacuum, cutout, flux-conserving
   resampling, iteratively clipped continuum fit). The grid is the H-alpha
   region only, 6500-6630 Å in 400 bins (`PREPROCESSING`): the classes differ
   there, and the continuum fit, most of the cost, is about a third cheaper
   than on 1000 bins over the whole range. `transfer_real.py` uses the same
   settings on the real spectra.
3. **The simulated expert** runs a session per strategy by calling
   `active_learning.run_iteration`, the function the ``active_learning`` job
   runs, with `SessionSettings`: iteration 1 is the server's cold start (a
   seeded random seed batch; the same batch for every strategy, because it
   depends only on the session's seed); each later iteration trains on the
   labels so far, scores the whole pool, and the expert labels the oracle
   batch with the true classes, until ``--budget`` labels. Only oracle labels
   train the model. The precision sample of each iteration is labelled too,
   but only to estimate precision (as a session does with the labels of its
   precision sample); it is not added to training, so the four strategies'
   learning curves count the same labels. Batches are small (20, from a seed
   batch of 20): random labelling reaches 95 % of the full-pool accuracy
   within about a hundred labels here, so batches of 50 or 100 would measure
   the grid, not the strategies. Sessions run in ``--workers`` processes side
   by side (default 2, the server's default workers), each with the torch
   threads a worker gets.
4. **Learning curves**: accuracy and macro-F1 on the held-out stars of each
   iteration's model (MC mean prediction with T samples), against the number
   of training labels. The reference is the same network and settings trained
   on the whole labelled pool (`run_iteration` with every row labelled), and
   the figure asked for is the number of labels at which a curve first reaches
   95 % of that accuracy, interpolated linearly between iterations, as a ratio
   to random's. A second target, 99 %, is printed too. With ``--seeds`` above
   1 every session is repeated with other session seeds (other seed batches,
   weights and masks); the figures are those of the strategy's mean curve over
   the seeds, because a single curve jumps by a few per cent between
   neighbouring iterations and where it first crosses a line is partly luck.
   The single seeds' figures follow in brackets.
5. **Precision**: in every trained iteration, the Wilson interval of
   `precision.precision_estimate` from the labelled precision sample (random
   unlabelled spectra predicted ``double-peak``, the rare class of the three,
   the kind an astronomer hunts) against the true precision over all
   unlabelled spectra predicted ``double-peak``; the share of intervals that
   cover it.
6. **MC-dropout throughput**: `mc_dropout.throughput` (one pass, T bare
   passes, MC scoring) on spectra of the benchmark's width, both dropout
   placements; the server uses ``head``.
7. **Peak memory** of one iteration (the diverse strategy, trained on
   ``--budget`` labels) on an h5py feature store of the pool size N, 2N and 4N
   (the pool's rows repeated), each in a fresh Python process: ``ru_maxrss``
   after the iteration, and the resident size before it (imports done, store
   open), whose difference is what the iteration added. Training reads only
   the labelled rows, and its peak can hide what scoring adds, so the peak is
   also split: training's, then (after resetting it when scoring starts) that
   of scoring, projection and selection, the part that grows with N.

torch runs with the threads a server worker gets (`threads_per_worker`: the
CPUs shared out among the default 2 workers, 1 on these machines), because
that is what an iteration job gets, and because two threads on two shared
cores trained 2.7-3.7 times slower than one whenever another process held a
core (``--threads`` changes it).

Run::

    .venv/bin/python tests/benchmarks/active_learning.py --quick   # about 4 minutes on 2 cores
    .venv/bin/python tests/benchmarks/active_learning.py           # 20,000 spectra, 3 seeds, about 40 minutes
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

# Started as a script, this file's folder heads sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from sklearn.metrics import f1_score

from tests.benchmarks import mc_dropout
from tests.benchmarks.report import load_average, positive_ints, render_table, say
from vocloud.server.executor.local import threads_per_worker
from vocloud.server.ml import bcnn
from vocloud.server.ml.active_learning import run_iteration
from vocloud.server.ml.feature_store import FeatureStoreWriter
from vocloud.server.ml.iteration import SessionSettings
from vocloud.server.ml.pipeline import Item, PreprocessParameters, run_pipeline
from vocloud.server.ml.precision import precision_estimate
from vocloud.server.ml.steps import Sample
from vocloud.server.spectra import demo

__all__ = [
    "CLASSES",
    "DEFAULT_WORKERS",
    "FULL",
    "POSITIVE_CLASS",
    "PREPROCESSING",
    "QUICK",
    "ROW_LABELS",
    "STRATEGY_ORDER",
    "CurvePoint",
    "DemoData",
    "RunConfig",
    "demo_items",
    "full_pool",
    "held_out_figures",
    "labels_to_reach",
    "main",
    "prepare_demo",
    "session_settings",
    "simulate",
]

DEFAULT_WORKERS = 2
"""The server's default worker processes; the benchmark's torch gets the threads one of them would (see below)."""

CLASSES: tuple[str, ...] = tuple(demo.LABELS)
"""Class names in the network's output order: the demo generator's (absorption, emission, double-peak)."""

POSITIVE_CLASS = "double-peak"
"""The class whose precision is estimated: the rarest of the three (12 %), what an astronomer would hunt."""

STRATEGY_ORDER: tuple[str, ...] = ("random", "entropy", "bald", "diverse")
"""Strategies compared, random first: every ratio is to random."""

PREPROCESSING = PreprocessParameters(wl_min=6500.0, wl_max=6630.0, n_points=400)
"""Pipeline settings (vacuum Å): H-alpha ±65 Å in 400 bins, continuum-normalised; shared with transfer_real.py."""

TARGETS = (0.95, 0.99)
"""Shares of the full-pool accuracy whose label cost is reported; 0.95 is the issue's."""

ROW_LABELS = (
    "labels to 95 % of full-pool accuracy",
    "ratio to random (95 %)",
    "labels to 99 % of full-pool accuracy",
    "ratio to random (99 %)",
    "precision interval covers truth",
    "seconds per iteration",
    "full-pool accuracy / macro-F1",
    "MC-dropout head",
    "MC-dropout all",
    "peak RSS of one iteration",
)
"""Row labels of the table that do not depend on the label grid (the smoke test checks they are all printed)."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Sizes of one benchmark run (``--quick`` and the full run differ only here).

    Attributes
    ----------
    count
        Demo spectra generated (pool and test set together).
    test_fraction
        Share of the spectra held out for testing, as whole stars.
    seed_size, batch_size, budget
        The session's seed batch and oracle batch sizes, and the labels the expert gives in all.
    seeds
        Simulated sessions per strategy, each with other session seeds.
    mc_samples, max_epochs, precision_sample
        The session settings of the same names.
    memory_factors
        Multiples of the pool size at which one iteration's peak memory is measured.
    throughput_spectra, throughput_rounds
        Spectra per timing and timing rounds of the MC-dropout throughput.
    archive_seed
        Seed of the demo archive (and of the star split).
    baseline_seeds
        Full-pool trainings (the reference accuracy is their median).
    """

    count: int
    test_fraction: float
    seed_size: int
    batch_size: int
    budget: int
    seeds: int
    mc_samples: int
    max_epochs: int
    precision_sample: int
    memory_factors: tuple[int, ...]
    throughput_spectra: int
    throughput_rounds: int
    archive_seed: int = 4
    baseline_seeds: int = 1


FULL = RunConfig(
    count=20_000,
    test_fraction=0.2,
    seed_size=20,
    batch_size=20,
    budget=300,
    seeds=3,
    mc_samples=20,
    max_epochs=60,
    precision_sample=30,
    memory_factors=(1, 2, 4),
    throughput_spectra=1024,
    throughput_rounds=2,
)
QUICK = dataclasses.replace(FULL, count=1500, budget=120, seeds=1, throughput_spectra=256, throughput_rounds=1)


# --- the archive ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DemoData:
    """The preprocessed demo archive, split by star into a pool (for the expert) and a test set."""

    pool_path: Path
    pool: NDArray[np.float32]
    pool_labels: NDArray[np.int64]
    test: NDArray[np.float32]
    test_labels: NDArray[np.int64]
    skipped: int
    render_seconds: float
    preprocess_seconds: float


def demo_items(count: int, *, seed: int, timer: list[float] | None = None) -> Iterator[tuple[Item, int, int]]:
    """Demo spectra as pipeline items, rendered lazily a batch at a time; with each its class and star.

    The generator's private draw and render steps give the flux the FITS files would hold
    (float32, air wavelengths on the CCD700 grid, ``VHELIO`` in the header) without writing them.
    ``timer[0]`` accumulates the rendering time, so that it can be told apart from preprocessing.
    """
    param_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    draws = demo._draw(np.random.default_rng(param_seq), count)
    noise = np.random.default_rng(noise_seq)
    pixels = np.arange(demo.N_PIXELS, dtype=np.float64)
    batch = 256
    for lo in range(0, count, batch):
        start = time.perf_counter()
        flux = demo._render(draws, slice(lo, min(lo + batch, count)), noise)
        if timer is not None:
            timer[0] += time.perf_counter() - start
        for i in range(lo, min(lo + batch, count)):
            sample = Sample(
                wavelength=draws.crval[i] + draws.cdelt[i] * pixels,
                flux=flux[i - lo].astype(np.float64),
                medium="air",
                header={"VHELIO": f"{draws.vhelio[i]:.6f}"},
                resolving_power=demo.RESOLVING_POWER,
            )
            item = Item(id=demo.DEMO_DID_PREFIX + draws.names[i], load=functools.partial(_same, sample))
            yield item, int(draws.label[i]), int(draws.star[i])


def _same(sample: Sample) -> Sample:
    return sample


def prepare_demo(config: RunConfig, workdir: Path) -> DemoData:
    """Render and preprocess the demo archive into ``workdir/all.h5``, then split it by star.

    The pool is also written as a feature store of its own (``pool.h5``), the file an
    ``active_learning`` job would read.
    """
    timer = [0.0]
    classes: dict[str, int] = {}
    stars: dict[str, int] = {}

    def items() -> Iterator[Item]:
        for item, label, star in demo_items(config.count, seed=config.archive_seed, timer=timer):
            classes[item.id], stars[item.id] = label, star
            yield item

    reported = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction >= reported[0] + 0.25 or fraction >= 1.0:
            reported[0] = fraction
            say(f"preprocessing: {message}")

    all_path = workdir / "all.h5"
    start = time.perf_counter()
    report = run_pipeline(
        items(), params=PREPROCESSING, out=all_path, total=config.count, provenance={}, progress=progress
    )
    elapsed = time.perf_counter() - start
    with h5py.File(all_path, "r") as f:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in f["ids"][:]]
        features = np.asarray(f["features"][:], dtype=np.float32)
        wavelength = np.asarray(f["wavelength"][:], dtype=np.float64)
    labels = np.array([classes[i] for i in ids], dtype=np.int64)
    star = np.array([stars[i] for i in ids], dtype=np.int64)
    test_mask = _held_out_stars(star, config.test_fraction, seed=config.archive_seed)
    pool_path = workdir / "pool.h5"
    with FeatureStoreWriter(pool_path, wavelength) as writer:
        writer.append([i for i, t in zip(ids, test_mask, strict=True) if not t], features[~test_mask])
    return DemoData(
        pool_path=pool_path,
        pool=np.ascontiguousarray(features[~test_mask]),
        pool_labels=labels[~test_mask],
        test=np.ascontiguousarray(features[test_mask]),
        test_labels=labels[test_mask],
        skipped=report.skipped,
        render_seconds=timer[0],
        preprocess_seconds=elapsed - timer[0],
    )


def _held_out_stars(star: NDArray[np.int64], fraction: float, *, seed: int) -> NDArray[np.bool_]:
    """Rows of whole stars, drawn in random order until they hold ``fraction`` of the rows."""
    rng = np.random.default_rng(seed)
    unique, counts = np.unique(star, return_counts=True)
    order = rng.permutation(len(unique))
    taken = np.cumsum(counts[order]) <= fraction * len(star)
    return np.isin(star, unique[order][taken])


# --- the simulated expert -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CurvePoint:
    """One trained iteration of a simulated session: its labels, test figures and precision check."""

    strategy: str
    seed: int
    iteration: int
    labels: int
    accuracy: float
    macro_f1: float
    precision: float | None
    precision_low: float
    precision_high: float
    precision_n: int
    true_precision: float | None
    seconds: float

    @property
    def covered(self) -> bool | None:
        """Whether the interval covers the true precision; None without a sample or without positives."""
        if self.precision_n == 0 or self.true_precision is None:
            return None
        return self.precision_low <= self.true_precision <= self.precision_high


def session_settings(config: RunConfig, *, strategy: str, seed: int) -> SessionSettings:
    """The settings of one simulated session."""
    return SessionSettings(
        classes=CLASSES,
        positive_class=POSITIVE_CLASS,
        strategy=strategy,
        batch_size=config.batch_size,
        seed_size=config.seed_size,
        precision_sample=config.precision_sample,
        mc_samples=config.mc_samples,
        seed=seed,
        max_epochs=config.max_epochs,
    )


def held_out_figures(model: bcnn.TrainedModel, data: DemoData, *, samples: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the three classes) of a model's MC mean prediction on the held-out stars."""
    predicted = bcnn.predict_mc(model, data.test, samples=samples, seed=0).predicted
    accuracy = float(np.mean(predicted == data.test_labels))
    # A class never predicted has no precision: its F1 counts as 0, as the model earned (no warning).
    macro_f1 = float(
        f1_score(data.test_labels, predicted, labels=list(range(len(CLASSES))), average="macro", zero_division=0)
    )
    return accuracy, macro_f1


def cold_start(data: DemoData, config: RunConfig, *, seed: int) -> NDArray[np.int64]:
    """Iteration 1 of a session without labels: the server's random seed batch (the same for every strategy)."""
    empty = np.zeros(0, dtype=np.int64)
    result = run_iteration(
        data.pool, empty, empty, settings=session_settings(config, strategy="random", seed=seed), iteration=1
    )
    if not result.cold_start or result.oracle.size == 0:
        msg = "run_iteration without labels did not answer with a cold-start seed batch"
        raise RuntimeError(msg)
    return np.asarray(result.oracle, dtype=np.int64)


def simulate(
    strategy: str, data: DemoData, config: RunConfig, *, seed: int, seed_batch: NDArray[np.int64]
) -> tuple[list[CurvePoint], bcnn.TrainedModel]:
    """One session: the expert labels each oracle batch with the true class until the budget; every point.

    Returns the curve and the last iteration's model.
    """
    settings = session_settings(config, strategy=strategy, seed=seed)
    positive = CLASSES.index(POSITIVE_CLASS)
    labelled = seed_batch[: config.budget].copy()
    points: list[CurvePoint] = []
    iteration = 2
    while True:
        start = time.perf_counter()
        result = run_iteration(data.pool, labelled, data.pool_labels[labelled], settings=settings, iteration=iteration)
        seconds = time.perf_counter() - start
        if result.predictions is None or result.model is None:
            msg = f"{strategy}: iteration {iteration} on {len(labelled)} labels trained no model"
            raise RuntimeError(msg)
        model = result.model
        accuracy, macro_f1 = held_out_figures(model, data, samples=config.mc_samples)
        sample = np.asarray(result.precision_sample, dtype=np.int64)
        correct = int(np.sum(data.pool_labels[sample] == positive))
        estimate = precision_estimate(correct, len(sample))
        unlabelled = np.ones(len(data.pool), dtype=bool)
        unlabelled[labelled] = False
        predicted_positive = unlabelled & (result.predictions.predicted == positive)
        truth = float(np.mean(data.pool_labels[predicted_positive] == positive)) if predicted_positive.any() else None
        points.append(
            CurvePoint(
                strategy=strategy,
                seed=seed,
                iteration=iteration,
                labels=len(labelled),
                accuracy=accuracy,
                macro_f1=macro_f1,
                precision=estimate.value,
                precision_low=estimate.low,
                precision_high=estimate.high,
                precision_n=estimate.n,
                true_precision=truth,
                seconds=seconds,
            )
        )
        say(
            f"{strategy} seed {seed}: {len(labelled)} labels, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f},"
            f" {result.epochs} epochs, {seconds:.1f} s"
        )
        oracle = np.asarray(result.oracle, dtype=np.int64)[: config.budget - len(labelled)]
        if len(labelled) >= config.budget or oracle.size == 0:
            return points, model
        labelled = np.concatenate([labelled, oracle])
        iteration += 1


def full_pool(data: DemoData, config: RunConfig, *, seed: int) -> tuple[float, float, float]:
    """Accuracy, macro-F1 and seconds of the same network and settings trained on every pool label."""
    everything = np.arange(len(data.pool), dtype=np.int64)
    start = time.perf_counter()
    result = run_iteration(
        data.pool,
        everything,
        data.pool_labels,
        settings=session_settings(config, strategy="random", seed=seed),
        iteration=2,
    )
    seconds = time.perf_counter() - start
    if result.model is None:
        msg = "run_iteration on the whole labelled pool trained no model"
        raise RuntimeError(msg)
    accuracy, macro_f1 = held_out_figures(result.model, data, samples=config.mc_samples)
    return accuracy, macro_f1, seconds


def labels_to_reach(points: Sequence[tuple[int, float]], target: float) -> tuple[float, bool] | None:
    """Labels at which a curve of (labels, accuracy) first reaches ``target``, interpolated linearly between iterations.

    Returns (labels, at_first_point) — the second says the first trained iteration already
    reached it, so the figure is an upper bound — or None when the curve never does.
    """
    ordered = sorted(points)
    for i, (labels, accuracy) in enumerate(ordered):
        if accuracy >= target:
            if i == 0:
                return float(labels), True
            before_labels, before_accuracy = ordered[i - 1]
            share = (target - before_accuracy) / (accuracy - before_accuracy)
            return before_labels + share * (labels - before_labels), False
    return None


def mean_curve(
    curves: dict[tuple[str, int], list[CurvePoint]], strategy: str, seeds: Sequence[int]
) -> list[tuple[int, float]]:
    """(labels, accuracy averaged over the seeds) at every label count that all of the strategy's seeds reached.

    One seed's curve jumps by a few per cent between neighbouring iterations (a few dozen
    labels decide where the emission/double-peak boundary falls), so where it first crosses
    a target is partly luck; the mean over seeds is the curve a strategy earns.
    """
    by_labels: dict[int, list[float]] = {}
    for seed in seeds:
        for point in curves[strategy, seed]:
            by_labels.setdefault(point.labels, []).append(point.accuracy)
    return [(labels, statistics.fmean(accs)) for labels, accs in sorted(by_labels.items()) if len(accs) == len(seeds)]


def _pairs(points: Sequence[CurvePoint]) -> list[tuple[int, float]]:
    return [(p.labels, p.accuracy) for p in points]


_WORKER: dict[str, Any] = {}
"""The demo data and run configuration of a session worker process, set once by `_start_worker`."""


def _start_worker(data: DemoData, config: RunConfig, threads: int) -> None:
    """Keep the data and configuration, and give torch the threads a server worker gets."""
    torch.set_num_threads(threads)
    _WORKER.update(data=data, config=config)


def _session_job(strategy: str, seed: int, seed_batch: NDArray[np.int64], save_to: Path | None) -> list[CurvePoint]:
    """One simulated session in a worker; the last model is saved to ``save_to`` when given."""
    points, model = simulate(strategy, _WORKER["data"], _WORKER["config"], seed=seed, seed_batch=seed_batch)
    if save_to is not None:
        bcnn.save(model, save_to)
    return points


def _full_pool_job(seed: int) -> tuple[float, float, float]:
    """`full_pool` in a worker."""
    say(f"seed {seed}: training on the whole labelled pool")
    return full_pool(_WORKER["data"], _WORKER["config"], seed=seed)


# --- throughput and memory ------------------------------------------------------------------------------


def mc_throughput(config: RunConfig, *, pixels: int) -> dict[str, tuple[float, float, float]]:
    """Spectra/s of one pass, T bare passes and MC scoring per dropout placement (`mc_dropout.throughput`)."""
    args = argparse.Namespace(
        spectra=config.throughput_spectra,
        pixels=pixels,
        samples=config.mc_samples,
        batch_size=256,
        rounds=config.throughput_rounds,
        device="auto",
    )
    rows = mc_dropout.throughput(args)
    n = config.throughput_spectra
    return {
        str(row["placement"]): (n / float(row["one"]), n / float(row["bare"]), n / float(row["mc"])) for row in rows
    }


def _tiled_store(pool_path: Path, factor: int, out: Path) -> Path:
    """A feature store of ``factor`` copies of the pool's rows, written a copy at a time."""
    if factor == 1:
        return pool_path
    with h5py.File(pool_path, "r") as source:
        features = np.asarray(source["features"][:], dtype=np.float32)
        wavelength = np.asarray(source["wavelength"][:], dtype=np.float64)
    ids = [f"row{i}" for i in range(len(features))]
    with FeatureStoreWriter(out, wavelength) as writer:
        for copy in range(factor):
            writer.append([f"{i}#{copy}" for i in ids], features)
    return out


def peak_memory(data: DemoData, config: RunConfig, workdir: Path, *, threads: int) -> list[dict[str, float]]:
    """Peak RSS of one diverse iteration on an h5py store of N, 2N, 4N rows, each in a fresh process."""
    rng = np.random.default_rng(config.archive_seed)
    labelled = np.sort(rng.choice(len(data.pool), size=min(config.budget, len(data.pool)), replace=False))
    labels_path = workdir / "memory-labels.npz"
    np.savez(labels_path, rows=labelled, labels=data.pool_labels[labelled])
    settings = dataclasses.asdict(session_settings(config, strategy="diverse", seed=0))
    out: list[dict[str, float]] = []
    for factor in config.memory_factors:
        store = _tiled_store(data.pool_path, factor, workdir / f"pool-x{factor}.h5")
        say(f"memory: one iteration on {factor} x {len(data.pool)} rows in a fresh process")
        command = [sys.executable, __file__, "--memory-child", str(store), str(labels_path), json.dumps(settings)]
        completed = subprocess.run([*command, "--threads", str(threads)], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            msg = f"the memory child failed ({completed.returncode}): {completed.stderr[-2000:]}"
            raise RuntimeError(msg)
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        out.append({"factor": float(factor), "rows": float(factor * len(data.pool)), **figures})
        if store != data.pool_path:
            store.unlink()
    return out


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _hwm_mib() -> float:
    """Peak RSS of this process's memory map since it began or was last reset (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    msg = "no VmHWM in /proc/self/status"
    raise OSError(msg)


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5), so the next phase's peak can be read alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_child(store: Path, labels_path: Path, settings_json: str) -> None:
    """Run one iteration on the store's h5py dataset and print its RSS figures as one JSON line.

    Training reads only the labelled rows, so its peak cannot depend on N, and it may hide
    what scoring adds; the peak is therefore also read per phase: when scoring starts the
    training peak is taken and the peak reset, and what is left at the end is the peak of
    scoring, projection and selection, the part that grows with N.
    """
    raw = json.loads(settings_json)
    settings = SessionSettings(**{**raw, "classes": tuple(raw["classes"])})
    saved = np.load(labels_path)
    phases: dict[str, float] = {}

    def progress(_fraction: float, message: str) -> None:
        if "training" not in phases and message.startswith("scoring"):
            phases["training"] = _max_rss_mib()
            phases["reset"] = float(_reset_peak())

    with h5py.File(store, "r") as f:
        features = f["features"]
        before = _rss_mib()
        start = time.perf_counter()
        run_iteration(features, saved["rows"], saved["labels"], settings=settings, iteration=2, progress=progress)
        seconds = time.perf_counter() - start
    figures = {"before_mib": before, "peak_mib": max(_max_rss_mib(), phases.get("training", 0.0)), "seconds": seconds}
    if phases.get("reset"):
        # Not ru_maxrss: it also keeps the peak of exited threads, which the reset does not clear.
        figures["training_mib"], figures["scoring_mib"] = phases["training"], _hwm_mib()
    print(json.dumps(figures))


# --- the report -----------------------------------------------------------------------------------------


def _spread(values: Sequence[float], fmt: str) -> str:
    """One value, or the median with the range over seeds."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


Reach = tuple[float, bool] | None
"""What `labels_to_reach` returns: (labels, reached at the first trained iteration) or None."""


def _labels_text(reach: Reach, budget: int) -> str:
    if reach is None:
        return f"> {budget}"
    return f"≤ {reach[0]:.0f}" if reach[1] else f"{reach[0]:.0f}"


def _ratio(mine: Reach, base: Reach, budget: int) -> tuple[str, float | None]:
    """A strategy's labels over random's, as text and (when both are measured, not bounds) as a number."""
    if base is not None and base[1]:
        return "seed batch enough", None  # random reached it at once, so did every strategy (same first model)
    if mine is None and base is None:
        return "n/a", None
    if base is None:
        return f"< {mine[0] / budget:.2f}" if mine is not None else "n/a", None
    if mine is None:
        return f"> {budget / base[0]:.2f}", None
    if mine[1]:
        return f"≤ {mine[0] / base[0]:.2f}", None
    return f"{mine[0] / base[0]:.2f}", mine[0] / base[0]


def _joined(texts: Sequence[str], values: Sequence[float | None], fmt: str) -> str:
    """The spread of the values when every seed gave one, else each seed's text."""
    exact = [v for v in values if v is not None]
    return _spread(exact, fmt) if len(exact) == len(values) else "; ".join(texts)


def _reach_cells(
    curves: dict[tuple[str, int], list[CurvePoint]], seeds: Sequence[int], target: float, budget: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Per strategy: labels to reach ``target`` and the ratio to random's, as text.

    The figure is that of the mean curve over the seeds; with several seeds, the spread of the
    single seeds' figures follows in brackets.
    """
    labels_text: dict[str, str] = {}
    ratio_text: dict[str, str] = {}
    base = labels_to_reach(mean_curve(curves, "random", seeds), target)
    for strategy in STRATEGY_ORDER:
        mine = labels_to_reach(mean_curve(curves, strategy, seeds), target)
        labels_text[strategy] = _labels_text(mine, budget)
        ratio_text[strategy] = _ratio(mine, base, budget)[0]
        if len(seeds) > 1:
            reached = [labels_to_reach(_pairs(curves[strategy, s]), target) for s in seeds]
            numbers = [None if r is None or r[1] else r[0] for r in reached]
            labels_text[strategy] += f" (seeds {_joined([_labels_text(r, budget) for r in reached], numbers, '.0f')})"
            if strategy != "random":
                bases = [labels_to_reach(_pairs(curves["random", s]), target) for s in seeds]
                pairs = [_ratio(m, b, budget) for m, b in zip(reached, bases, strict=True)]
                ratio_text[strategy] += f" (seeds {_joined([t for t, _ in pairs], [v for _, v in pairs], '.2f')})"
    return labels_text, ratio_text


def build_table(
    *,
    config: RunConfig,
    seeds: Sequence[int],
    curves: dict[tuple[str, int], list[CurvePoint]],
    full: list[tuple[float, float, float]],
    throughput: dict[str, tuple[float, float, float]],
    memory: list[dict[str, float]],
) -> tuple[str, list[str]]:
    """The one table, and the lines of the summary below it."""
    header = ["measure", *STRATEGY_ORDER, "overall", "target"]
    rows: list[list[str]] = []
    blank = {s: "" for s in STRATEGY_ORDER}

    def row(label: str, cells: dict[str, str], overall: str = "", target: str = "") -> None:
        rows.append([label, *(cells.get(s, "") for s in STRATEGY_ORDER), overall, target])

    grid = sorted({p.labels for points in curves.values() for p in points})
    for labels in grid:
        cells = {}
        for strategy in STRATEGY_ORDER:
            hits = [p for s in seeds for p in curves[strategy, s] if p.labels == labels]
            if hits:
                acc = statistics.fmean(p.accuracy for p in hits)
                f1 = statistics.fmean(p.macro_f1 for p in hits)
                cells[strategy] = f"{acc:.3f} / {f1:.3f}"
        row(f"accuracy / macro-F1 at {labels} labels", cells)
    full_acc = statistics.median(a for a, _, _ in full)
    summary: list[str] = []
    for target in TARGETS:
        goal = target * full_acc
        labels_text, ratio_text = _reach_cells(curves, seeds, goal, config.budget)
        percent = round(target * 100)
        row(f"labels to {percent} % of full-pool accuracy", labels_text, f"accuracy {goal:.3f}")
        row(f"ratio to random ({percent} %)", ratio_text, "", "≤ 0.50" if target == 0.95 else "")
        summary.append(
            f"Labels to {percent} % of the full-pool accuracy ({goal:.3f}), as a ratio to random's: "
            + ", ".join(f"{s} {ratio_text[s]}" for s in STRATEGY_ORDER if s != "random")
            + f"; random needed {labels_text['random']} of a {config.budget}-label budget."
        )
    covered_all = total_all = 0
    cells = {}
    for strategy in STRATEGY_ORDER:
        checks = [p.covered for s in seeds for p in curves[strategy, s] if p.covered is not None]
        covered, total = sum(checks), len(checks)
        covered_all += covered
        total_all += total
        cells[strategy] = f"{covered}/{total}"
    coverage = covered_all / total_all if total_all else float("nan")
    row(
        "precision interval covers truth",
        cells,
        f"{covered_all}/{total_all} = {100 * coverage:.0f} %" if total_all else "no sample",
        "≥ 90 %",
    )
    seconds = {s: _spread([p.seconds for seed in seeds for p in curves[s, seed]], ".1f") for s in STRATEGY_ORDER}
    row("seconds per iteration", seconds, "train + score the pool")
    row(
        "full-pool accuracy / macro-F1",
        blank,
        f"{_spread([a for a, _, _ in full], '.3f')} / {_spread([f for _, f, _ in full], '.3f')}",
        f"{len(full)} seed(s), {statistics.median(t for _, _, t in full):.0f} s",
    )
    for placement in ("head", "all"):
        _, bare, mc = throughput[placement]
        overhead = 100 * (bare / mc - 1)
        row(
            f"MC-dropout {placement}" + (" (server's)" if placement == "head" else ""),
            blank,
            f"{mc:.0f} spectra/s; T bare {bare:.0f}/s; {overhead:+.0f} % vs T bare",
            "≤ +20 %",
        )
    base = memory[0]["peak_mib"]
    row(
        "peak RSS of one iteration",
        blank,
        " / ".join(f"{m['peak_mib']:.0f}" for m in memory)
        + " MiB at "
        + " / ".join(f"{int(m['factor'])}N" for m in memory)
        + " (ratios "
        + " / ".join(f"{m['peak_mib'] / base:.2f}" for m in memory)
        + ")",
        "flat",
    )
    row(
        "RSS added by the iteration",
        blank,
        " / ".join(f"{m['peak_mib'] - m['before_mib']:.0f}" for m in memory) + " MiB",
        "",
    )
    if all("scoring_mib" in m for m in memory):
        scoring_ratios = " / ".join(f"{m['scoring_mib'] / memory[0]['scoring_mib']:.2f}" for m in memory)
        row(
            "peak RSS training / scoring + choosing",
            blank,
            " ; ".join(f"{m['training_mib']:.0f} / {m['scoring_mib']:.0f}" for m in memory)
            + " MiB at "
            + " / ".join(f"{int(m['factor'])}N" for m in memory)
            + f" (scoring ratios {scoring_ratios})",
            "",
        )
    summary.append(
        f"Precision of '{POSITIVE_CLASS}' (Wilson 95 %, samples of {config.precision_sample}): the interval covered"
        f" the true precision in {covered_all} of {total_all} trained iterations"
        + (f" ({100 * coverage:.0f} %)." if total_all else ".")
    )
    head = throughput["head"]
    summary.append(
        f"MC-dropout scoring (head, T = {config.mc_samples}): {head[2]:.0f} spectra/s, "
        f"{100 * (head[1] / head[2] - 1):+.0f} % against T bare passes ({head[1]:.0f}/s); "
        f"peak memory at {int(memory[-1]['factor'])}N {memory[-1]['peak_mib'] / base:.2f} times that at N."
    )
    return render_table(header, rows, right=set(range(1, len(header) - 1))), summary


def write_csv(path: Path, curves: dict[tuple[str, int], list[CurvePoint]]) -> None:
    """Every curve point, for plots."""
    fields = [f.name for f in dataclasses.fields(CurvePoint)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for points in curves.values():
            for p in points:
                writer.writerow([getattr(p, name) for name in fields])


def _config(args: argparse.Namespace) -> RunConfig:
    """The run's sizes: ``--quick`` or the full run, with any size given on the command line."""
    config = QUICK if args.quick else FULL
    overrides = {
        "count": args.count,
        "seed_size": args.seed_size,
        "batch_size": args.batch_size,
        "budget": args.budget,
        "seeds": args.seeds,
        "max_epochs": args.max_epochs,
        "memory_factors": args.memory_factors,
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1500 spectra, budget 120, one seed (under 5 min)")
    parser.add_argument("--count", type=int, help="demo spectra in the archive (full 20,000)")
    parser.add_argument("--seed-size", type=int, help="labels in the cold-start seed batch")
    parser.add_argument("--batch-size", type=int, help="oracle batch size")
    parser.add_argument("--budget", type=int, help="labels the expert gives per session")
    parser.add_argument("--seeds", type=int, help="session seeds per strategy")
    parser.add_argument("--max-epochs", type=int, help="training epoch limit (SessionSettings.max_epochs)")
    parser.add_argument(
        "--memory-factors", type=positive_ints("pool multiple"), help="pool multiples for the memory check (1,2,4)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=threads_per_worker(DEFAULT_WORKERS),
        help="torch threads (default: what a server worker gets with the default 2 workers on this machine)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="processes running sessions side by side (default: the server's default workers, 2)",
    )
    parser.add_argument("--csv", type=Path, help="also write every learning-curve point to this CSV file")
    parser.add_argument("--save-model", type=Path, help="save the last diverse model (for transfer_real.py)")
    parser.add_argument("--memory-child", nargs=3, metavar=("STORE", "LABELS", "SETTINGS"), help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(Path(args.memory_child[0]), Path(args.memory_child[1]), args.memory_child[2])
        return 0
    config = _config(args)
    load_before = load_average()
    started = time.perf_counter()
    seeds = [1000 * k for k in range(config.seeds)]
    with tempfile.TemporaryDirectory(prefix="vocloud-al-") as tmp:
        workdir = Path(tmp)
        say(f"rendering and preprocessing {config.count} demo spectra")
        data = prepare_demo(config, workdir)
        say(
            f"pool {len(data.pool)}, test {len(data.test)} (held-out stars), skipped {data.skipped};"
            f" render {data.render_seconds:.0f} s, preprocess {data.preprocess_seconds:.0f} s"
        )
        seed_batches = {seed: cold_start(data, config, seed=seed) for seed in seeds}
        say(f"{len(seeds) * len(STRATEGY_ORDER)} sessions and the full-pool training in {args.workers} processes")
        model_path = workdir / "last-diverse.pt"
        context = multiprocessing.get_context("spawn")  # no fork of a process whose torch has started threads
        with ProcessPoolExecutor(
            args.workers, mp_context=context, initializer=_start_worker, initargs=(data, config, args.threads)
        ) as workers:
            full_jobs = [workers.submit(_full_pool_job, seed) for seed in seeds[: config.baseline_seeds]]
            session_jobs = {
                (strategy, seed): workers.submit(
                    _session_job,
                    strategy,
                    seed,
                    seed_batches[seed],
                    model_path if (strategy, seed) == ("diverse", seeds[-1]) else None,
                )
                for seed in seeds
                for strategy in STRATEGY_ORDER
            }
            full = [job.result() for job in full_jobs]
            curves = {key: job.result() for key, job in session_jobs.items()}
        if args.save_model:
            shutil.copyfile(model_path, args.save_model)
        say("MC-dropout throughput")
        throughput = mc_throughput(config, pixels=PREPROCESSING.n_points)
        memory = peak_memory(data, config, workdir, threads=args.threads)
    if args.csv:
        write_csv(args.csv, curves)
    table, summary = build_table(
        config=config, seeds=seeds, curves=curves, full=full, throughput=throughput, memory=memory
    )
    counts = zip(
        CLASSES,
        np.bincount(data.pool_labels, minlength=len(CLASSES)),
        np.bincount(data.test_labels, minlength=len(CLASSES)),
        strict=True,
    )
    print(
        f"Active learning with a simulated expert{' (--quick)' if args.quick else ''}: {config.count} demo spectra"
        f" (seed {config.archive_seed}), pool {len(data.pool)} + test {len(data.test)} of held-out stars"
        f" ({', '.join(f'{c} {p}+{t}' for c, p, t in counts)}); grid {PREPROCESSING.wl_min:.0f}-"
        f"{PREPROCESSING.wl_max:.0f} Å vacuum in {PREPROCESSING.n_points} bins, continuum-normalised;"
        f" render {data.render_seconds:.0f} s, preprocess {data.preprocess_seconds:.0f} s, {data.skipped} skipped."
    )
    print(
        f"Sessions: seed batch {config.seed_size}, batch {config.batch_size}, budget {config.budget} labels,"
        f" T = {config.mc_samples}, max {config.max_epochs} epochs, {len(seeds)} session seed(s); only oracle labels"
        f" train; the precision sample ({config.precision_sample} predicted '{POSITIVE_CLASS}') is labelled for"
        " the estimate only. Curve cells: mean over seeds; labels to a target and ratios: those of the mean curve,"
        " then (seeds: median [range] of single seeds)."
    )
    print(
        f"torch {torch.__version__} on {bcnn.resolve_device('auto')}, {torch.get_num_threads()} threads;"
        f" {platform.processor() or platform.machine()}, python {platform.python_version()}, {os.cpu_count()} cores;"
        f" load average before {load_before}, after {load_average()}; {(time.perf_counter() - started) / 60:.1f} min"
        " in all."
    )
    print()
    print(table)
    print()
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
