"""MC-dropout scoring of the Bayesian CNN: throughput, overhead, and what dropout placement costs in accuracy.

Why this exists: the issue's acceptance asks for "MC-dropout scoring throughput
(spectra/s) relative to T bare forward passes (overhead ≤ 20 %)", and STYLE.md
notes that dropout only in the last layers is 6-30 times faster than dropout
everywhere, a modelling choice to measure rather than assume. This script
measures both placements side by side in one run and prints one table; it
asserts nothing, because the machines are shared and noisy.

1. Throughput, per placement (``"head"``: dropout only in the dense head, the
   trunk runs once per spectrum; ``"all"``: dropout in the trunk too, T full
   passes), on random spectra of ``--pixels`` pixels with the default
   architecture (weights do not change the arithmetic):
   (a) one deterministic forward pass; (b) T bare forward passes (dropout off,
   a loop of T calls per batch, the acceptance's reference); (c) ``predict_mc``
   with T samples, which adds the dropout masks, the summaries (mean, entropy,
   BALD, variation ratio) and the deterministic embedding. Spectra/s, (c)
   relative to (b) as an overhead, and (c) as a multiple of (a)'s cost. Each
   timing is the fastest of ``--rounds``: noise only ever slows a round.
2. Accuracy, per placement and seed: demo-archive spectra (``vocloud
   demo-data``'s generator, in memory: absorption, emission, double-peak in
   the real proportions), resampled to a common grid of ``--pixels`` pixels
   around H-alpha and divided by their median, trained with the default
   configuration; validation accuracy at the best epoch, accuracy and
   macro-averaged recall on held-out spectra, epochs and training time.

Run::

    .venv/bin/python tests/benchmarks/mc_dropout.py            # a few minutes on 2 cores
    .venv/bin/python tests/benchmarks/mc_dropout.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from vocloud.server.ml import bcnn
from vocloud.server.spectra import demo

Placement = Literal["head", "all"]
PLACEMENTS: tuple[Placement, ...] = ("head", "all")


def _best_time(fn: Callable[[], object], *, rounds: int) -> float:
    fn()  # warm-up: allocator and kernel selection
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _passes(model: bcnn.TrainedModel, x: torch.Tensor, *, repeats: int, batch_size: int) -> None:
    network = model.network.eval()
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            for _ in range(repeats):
                network(batch)


def throughput(args: argparse.Namespace) -> list[dict[str, float | str]]:
    """Spectra/s of one pass, T bare passes and MC scoring, per placement."""
    rng = np.random.default_rng(0)
    features = rng.normal(1.0, 0.05, (args.spectra, args.pixels)).astype(np.float32)
    device = bcnn.resolve_device(args.device)
    x = torch.from_numpy(features).to(device)
    rows: list[dict[str, float | str]] = []
    for placement in PLACEMENTS:
        config = bcnn.BCNNConfig(n_inputs=args.pixels, n_classes=3, dropout_placement=placement, device=args.device)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = bcnn.TrainedModel(network=bcnn.BCNN(config).to(device).eval(), config=config)
        one = _best_time(lambda m=model: _passes(m, x, repeats=1, batch_size=args.batch_size), rounds=args.rounds)
        bare = _best_time(
            lambda m=model: _passes(m, x, repeats=args.samples, batch_size=args.batch_size), rounds=args.rounds
        )
        mc = _best_time(
            lambda m=model: bcnn.predict_mc(m, features, samples=args.samples, batch_size=args.batch_size),
            rounds=args.rounds,
        )
        rows.append({"placement": placement, "one": one, "bare": bare, "mc": mc})
    return rows


def demo_features(count: int, *, pixels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Demo spectra on a common grid around H-alpha, divided by their median; and their classes."""
    # The generator's private draw and render steps give the flux without writing FITS files.
    param_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    draws = demo._draw(np.random.default_rng(param_seq), count)
    flux = demo._render(draws, slice(0, count), np.random.default_rng(noise_seq))
    grid = np.linspace(demo.HALPHA - 110.0, demo.HALPHA + 110.0, pixels)
    wave = draws.crval[:, None] + draws.cdelt[:, None] * np.arange(demo.N_PIXELS)[None, :]
    resampled = np.stack([np.interp(grid, w, f) for w, f in zip(wave, flux, strict=True)])
    resampled /= np.median(resampled, axis=1, keepdims=True)
    return (resampled - 1.0).astype(np.float32), draws.label.astype(np.int64)


def accuracy(args: argparse.Namespace) -> list[dict[str, float | str]]:
    """Validation and held-out accuracy of both placements trained on the same demo spectra."""
    features, labels = demo_features(args.train_count, pixels=args.pixels, seed=1)
    test_features, test_labels = demo_features(args.test_count, pixels=args.pixels, seed=2)
    rows: list[dict[str, float | str]] = []
    for placement in PLACEMENTS:
        for seed in range(args.seeds):
            config = bcnn.BCNNConfig(
                n_inputs=args.pixels,
                n_classes=len(demo.LABELS),
                dropout_placement=placement,
                max_epochs=args.max_epochs,
                seed=seed,
                device=args.device,
            )
            start = time.perf_counter()
            model = bcnn.train(features, labels, config=config)
            seconds = time.perf_counter() - start
            predicted = bcnn.predict_mc(model, test_features, samples=args.samples).predicted
            recalls = [np.mean(predicted[test_labels == k] == k) for k in np.unique(test_labels)]
            rows.append(
                {
                    "placement": placement,
                    "seed": seed,
                    "val_acc": model.history[model.best_epoch - 1].val_accuracy,
                    "test_acc": float(np.mean(predicted == test_labels)),
                    "macro_recall": float(np.mean(recalls)),
                    "epochs": f"{model.best_epoch}/{len(model.history)}",
                    "seconds": seconds,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixels", type=int, default=1000, help="pixels per spectrum (default 1000)")
    parser.add_argument("--spectra", type=int, default=512, help="spectra scored per timing (default 512)")
    parser.add_argument("--samples", type=int, default=20, help="MC samples T (default 20)")
    parser.add_argument("--batch-size", type=int, default=256, help="spectra per forward pass (default 256)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds, fastest counts (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--train-count", type=int, default=1000, help="demo spectra to train on; 0 skips accuracy")
    parser.add_argument("--test-count", type=int, default=600, help="held-out demo spectra (default 600)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per placement (default 1)")
    parser.add_argument("--max-epochs", type=int, default=30, help="training epoch limit (default 30)")
    parser.add_argument("--quick", action="store_true", help="256 spectra, 1 round, 400 training spectra")
    args = parser.parse_args()
    if args.quick:
        args.spectra, args.rounds, args.train_count, args.test_count = 256, 1, 400, 300
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__} on {bcnn.resolve_device(args.device)}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}; {args.spectra} spectra of {args.pixels} px, "
        f"T = {args.samples}, batch {args.batch_size}, fastest of {args.rounds}"
    )
    rows = throughput(args)
    print()
    print(
        f"{'placement':<10} {'1 pass /s':>10} {'T bare /s':>10} {'MC /s':>10} "
        f"{'MC vs T bare':>13} {'MC cost in passes':>18}"
    )
    for row in rows:
        one, bare, mc = (float(row[key]) for key in ("one", "bare", "mc"))
        print(
            f"{row['placement']:<10} {args.spectra / one:>10.0f} {args.spectra / bare:>10.0f} "
            f"{args.spectra / mc:>10.0f} {100 * (mc / bare - 1):>+12.0f}% {mc / one:>18.1f}"
        )
    by_placement = {row["placement"]: float(row["mc"]) for row in rows}
    print(f"MC scoring, head over all: {by_placement['all'] / by_placement['head']:.1f} times faster")

    if args.train_count:
        print()
        print(
            f"Accuracy on demo spectra: {args.train_count} to train (20 % of them validate), "
            f"{args.test_count} held out, T = {args.samples}"
        )
        print(
            f"{'placement':<10} {'seed':>4} {'val acc':>8} {'test acc':>9} {'macro recall':>13} "
            f"{'best/epochs':>12} {'train s':>8}"
        )
        for row in accuracy(args):
            print(
                f"{row['placement']:<10} {row['seed']:>4} {float(row['val_acc']):>8.3f} "
                f"{float(row['test_acc']):>9.3f} {float(row['macro_recall']):>13.3f} "
                f"{row['epochs']!s:>12} {float(row['seconds']):>8.1f}"
            )


if __name__ == "__main__":
    main()
