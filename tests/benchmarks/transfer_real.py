"""Does a model learned on the demo archive classify real Ondřejov CCD700 spectra? The honest transfer check.

Why this exists: the active-learning benchmark (``active_learning.py``) runs on
synthetic demo spectra, whose classes the generator knows. Whether what the
network learns there means anything for the archive it imitates can only be
seen on real spectra with human labels: the 29 labelled CCD700 files in
``../shared/data/ondrejov-ccd700`` (21 absorption, 7 emission, 1 double-peak;
labels from ``labels/ondrejov-ids-labels.csv``: 0 emission, 1 absorption,
3 double-peak). This script trains the network as an active-learning
iteration would on the whole labelled demo pool (`run_iteration` with every
row labelled, the benchmark's full-pool reference) or loads a checkpoint the
benchmark saved (``--model``), preprocesses the real files with the SAME
pipeline settings (`active_learning.PREPROCESSING`, read by the server's own
readers, as the ``preprocess`` job reads archived files), and prints accuracy,
per-class recall, the confusion matrix and every spectrum's prediction. It
asserts nothing and reports whatever comes out; 29 spectra, a third of them
one star's repeated observations in some classes, are a sanity check, not a
measurement of accuracy (a 95 % interval on 29 spectra is ±15 points wide).

It reuses ``demo_vs_real.py``'s way to the real files: the ``manifest.csv``
beside them maps each FITS file to its publisher DID, and only files whose
label is one of the three classes count. Without ``../shared/data`` it says so
and exits 0.

Run::

    .venv/bin/python tests/benchmarks/transfer_real.py                 # trains on 4000 demo spectra
    .venv/bin/python tests/benchmarks/transfer_real.py --model M.pt    # a model saved by active_learning.py
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

# Started as a script, this file's folder heads sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from tests.benchmarks import active_learning as al
from tests.benchmarks import demo_vs_real
from tests.benchmarks.report import render_table, say
from vocloud.server.executor.local import threads_per_worker
from vocloud.server.ml import bcnn
from vocloud.server.ml.active_learning import run_iteration
from vocloud.server.ml.pipeline import Item, run_pipeline
from vocloud.server.ml.steps import Sample
from vocloud.server.spectra.readers import read_spectrum

__all__ = ["LABEL_CODES", "RealSpectrum", "default_data_dir", "main", "preprocess_real", "read_labelled", "train_demo"]

LABEL_CODES = {0: "emission", 1: "absorption", 3: "double-peak"}
"""Codes of ``ondrejov-ids-labels.csv`` (2, undecided, was dropped by the labels' authors, and is here)."""


@dataclass(frozen=True, kw_only=True)
class RealSpectrum:
    """One labelled real file: where it is, its DID, object and human label."""

    path: Path
    did: str
    target: str
    label: str


def default_data_dir() -> Path:
    """``../shared/data/ondrejov-ccd700`` beside the checkout, where ``demo_vs_real.py`` looks too."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "ondrejov-ccd700"


def read_labelled(data_dir: Path) -> list[RealSpectrum]:
    """The real files with a label of the three classes, as the manifest lists them, labelled from the label file.

    Raises
    ------
    ValueError
        Raised if the manifest's label of a file contradicts the label file.
    """
    with (data_dir / "labels" / "ondrejov-ids-labels.csv").open(encoding="utf-8") as f:
        codes = {row["id"]: int(row["label"]) for row in csv.DictReader(f)}
    out = []
    with (data_dir / "manifest.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = LABEL_CODES.get(codes.get(row["pubdid"], -1))
            if label is None or label not in demo_vs_real.CLASSES:
                continue
            if row.get("label_name") and row["label_name"] != label:
                msg = f"{row['file']}: the manifest says {row['label_name']!r}, the label file {label!r}"
                raise ValueError(msg)
            out.append(RealSpectrum(path=data_dir / row["file"], did=row["pubdid"], target=row["object"], label=label))
    return out


def preprocess_real(spectra: Sequence[RealSpectrum], out: Path) -> tuple[list[str], NDArray[np.float32], int]:
    """The real files through the benchmark's pipeline settings: (DIDs kept, features, skipped)."""

    def loader(path: Path) -> Sample:
        spectrum = read_spectrum(path)
        return Sample(
            wavelength=np.asarray(spectrum.wavelength, dtype=np.float64),
            flux=np.asarray(spectrum.flux, dtype=np.float64),
            medium=str(spectrum.meta.medium),
            header=spectrum.meta.header,
            resolving_power=spectrum.meta.em_res_power,
        )

    items = [Item(id=s.did, load=functools.partial(loader, s.path)) for s in spectra]
    report = run_pipeline(items, params=al.PREPROCESSING, out=out, total=len(items), provenance={})
    with h5py.File(out, "r") as f:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in f["ids"][:]]
        features = np.asarray(f["features"][:], dtype=np.float32)
    return ids, features, report.skipped


def train_demo(count: int, *, seed: int, workdir: Path) -> tuple[bcnn.TrainedModel, float, float]:
    """A model trained as an iteration trains, on a whole labelled demo pool; its figures on held-out stars."""
    config = dataclasses.replace(al.FULL, count=count, archive_seed=seed)
    say(f"rendering and preprocessing {count} demo spectra")
    data = al.prepare_demo(config, workdir)
    say(f"training on {len(data.pool)} labelled demo spectra")
    result = run_iteration(
        data.pool,
        np.arange(len(data.pool), dtype=np.int64),
        data.pool_labels,
        settings=al.session_settings(config, strategy="random", seed=0),
        iteration=2,
    )
    if result.model is None:
        msg = "run_iteration on the labelled demo pool trained no model"
        raise RuntimeError(msg)
    accuracy, macro_f1 = al.held_out_figures(result.model, data, samples=config.mc_samples)
    return result.model, accuracy, macro_f1


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or load), classify the real spectra, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="the real CCD700 files")
    parser.add_argument("--count", type=int, default=4000, help="demo spectra to train on (default 4000)")
    parser.add_argument("--seed", type=int, default=4, help="seed of the demo archive")
    parser.add_argument("--model", type=Path, help="a checkpoint (bcnn.save) instead of training")
    parser.add_argument("--samples", type=int, default=20, help="MC samples T")
    parser.add_argument("--threads", type=int, default=threads_per_worker(al.DEFAULT_WORKERS), help="torch threads")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        print(f"Real data not found at {args.data}; skipping the transfer check.", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    spectra = read_labelled(args.data)
    with tempfile.TemporaryDirectory(prefix="vocloud-transfer-") as tmp:
        workdir = Path(tmp)
        ids, features, skipped = preprocess_real(spectra, workdir / "real.h5")
        if args.model:
            model, source = bcnn.load(args.model), f"checkpoint {args.model}"
        else:
            model, accuracy, macro_f1 = train_demo(args.count, seed=args.seed, workdir=workdir)
            source = (
                f"trained on the labelled pool of {args.count} demo spectra (seed {args.seed}); on held-out demo"
                f" stars accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}"
            )
    if model.config.n_inputs != features.shape[1]:
        print(
            f"The model takes {model.config.n_inputs} pixels, the pipeline gives {features.shape[1]}", file=sys.stderr
        )
        return 2
    predictions = bcnn.predict_mc(model, features, samples=args.samples)
    by_did = {s.did: s for s in spectra}
    classes = al.CLASSES
    truth = np.array([classes.index(by_did[i].label) for i in ids], dtype=np.int64)
    predicted = predictions.predicted
    print(
        f"Transfer to real Ondřejov CCD700 spectra: {len(spectra)} labelled files from {args.data},"
        f" {len(ids)} preprocessed ({skipped} skipped) on {al.PREPROCESSING.wl_min:.0f}-"
        f"{al.PREPROCESSING.wl_max:.0f} Å vacuum, {al.PREPROCESSING.n_points} bins, continuum-normalised."
    )
    print(f"Model: {source}; T = {args.samples}; {(time.perf_counter() - started):.0f} s in all.")
    print()
    rows = [
        [
            s.path.name,
            s.target,
            s.label,
            classes[int(p)],
            "yes" if classes[int(p)] == s.label else "NO",
            *(f"{v:.2f}" for v in mean),
            f"{h:.3f}",
            f"{b:.3f}",
        ]
        for s, p, mean, h, b in zip(
            (by_did[i] for i in ids),
            predicted,
            predictions.mean,
            predictions.entropy,
            predictions.bald,
            strict=True,
        )
    ]
    header = ["file", "object", "true", "predicted", "right", *(f"p_{c}" for c in classes), "entropy", "BALD"]
    print(render_table(header, rows, right=set(range(5, len(header)))))
    print()
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    print(
        render_table(
            ["true \\ predicted", *classes, "recall"],
            [
                [
                    f"{c} ({confusion[k].sum()})",
                    *(str(v) for v in confusion[k]),
                    f"{confusion[k, k] / confusion[k].sum():.2f}" if confusion[k].sum() else "-",
                ]
                for k, c in enumerate(classes)
            ],
            right=set(range(1, len(classes) + 2)),
        )
    )
    print()
    right = int(np.trace(confusion))
    recalls = [confusion[k, k] / confusion[k].sum() for k in range(len(classes)) if confusion[k].sum()]
    print(
        f"Accuracy {right}/{len(ids)} = {right / max(len(ids), 1):.2f}; mean recall over the classes present"
        f" {np.mean(recalls):.2f}; mean entropy {float(np.mean(predictions.entropy)):.3f}, mean BALD"
        f" {float(np.mean(predictions.bald)):.3f} (what the model says of its own certainty on real spectra)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
