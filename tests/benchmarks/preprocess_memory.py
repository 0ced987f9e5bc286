"""Does preprocessing stream? Resident memory while 500, then 2000 (or --count) spectra go through the pipeline.

Why this exists: issue 4 asks that memory not grow with the number of spectra.
The pipeline holds one batch (512 spectra) at a time; this script prints the
resident set size sampled after every batch for a small and a large run over
the same demo FITS files (read from disk as the job reads them), so a leak or
an accidental accumulation shows up as growth between the two. It asserts
nothing: the numbers depend on the machine. Run::

    .venv/bin/python -m tests.benchmarks.preprocess_memory --count 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vocloud.server.ml.pipeline import Item, PreprocessParameters, run_pipeline
from vocloud.server.ml.steps import Sample, Scaling
from vocloud.server.spectra.demo import generate_demo_archive
from vocloud.server.spectra.readers import read_spectrum

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def _items(files: list[Path], count: int):
    for i in range(count):
        path = files[i % len(files)]

        def load(path: Path = path) -> Sample:
            spectrum = read_spectrum(path)
            return Sample(
                wavelength=spectrum.wavelength,
                flux=np.asarray(spectrum.flux, dtype=np.float64),
                medium=str(spectrum.meta.medium),
                header=spectrum.meta.header,
            )

        yield Item(id=f"{path.stem}#{i}", load=load)


def measure(files: list[Path], count: int, out: Path) -> tuple[float, float, float]:
    """(RSS before, peak RSS during, seconds) for one run over ``count`` spectra."""
    before = rss_mib()
    peak = before

    def progress(_fraction: float, _message: str) -> None:
        nonlocal peak
        peak = max(peak, rss_mib())

    params = PreprocessParameters(
        wl_min=6300.0, wl_max=6700.0, n_points=1000, scaling=Scaling.ZSCORE, pca_components=10
    )
    start = time.perf_counter()
    run_pipeline(_items(files, count), params=params, out=out, total=count, provenance={}, progress=progress)
    return before, max(peak, rss_mib()), time.perf_counter() - start


def main() -> None:
    """Print RSS for a small and a large run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--files", type=int, default=500, help="distinct demo files (reused cyclically)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = generate_demo_archive(Path(tmp) / "demo", count=args.files, seed=3)
        files = sorted(demo.spectra_dir.glob("*.fit"))
        for count in (min(500, args.count), args.count):
            before, peak, seconds = measure(files, count, Path(tmp) / f"f{count}.h5")
            print(
                f"{count:>7} spectra: RSS before {before:7.1f} MiB, peak {peak:7.1f} MiB"
                f" (+{peak - before:5.1f}), {seconds:6.1f} s, {count / seconds:6.0f} spectra/s"
            )


if __name__ == "__main__":
    main()
