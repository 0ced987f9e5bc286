"""The demo archive: reproducible bytes, real-archive class proportions, CCD700-like files, class signatures."""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from numpy.typing import NDArray

from vocloud.server.spectra.demo import (
    CLASS_WEIGHTS,
    DEMO_DID_PREFIX,
    LABELS,
    N_PIXELS,
    DemoSummary,
    _rotational_kernels,
    generate_demo_archive,
)

C_KM_S = 299_792.458
HALPHA = 6562.80
VOCLOUD = Path(sys.executable).with_name("vocloud")

HEADER_KEYWORDS = (
    "OBJECT", "DATE", "OBSERVAT", "OBSERVER", "FILENAME", "TELESCOP", "EXPTIME", "DATE-OBS", "UT", "INSTRUME",
    "DETECTOR", "CHIPID", "BUNIT", "GAIN", "READNOIS", "GRATANG", "DICHMIR", "SPECFILT", "SLITWID", "RA", "DEC",
    "EQUINOX", "ST", "ZD", "JD", "HJD", "AIRMASS", "UTMIDDLE", "APNUM1", "WAT1_001", "CTYPE1", "CRVAL1", "CRPIX1",
    "CDELT1", "CD1_1", "DC-FLAG", "VHELIO", "VLSR", "DS_IDPUB",
)  # fmt: skip


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """One small archive shared by the read-only tests."""
    return generate_demo_archive(tmp_path_factory.mktemp("demo"), count=150, seed=3)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _spectrum(summary: DemoSummary, did: str) -> tuple[fits.Header, NDArray[np.float64], NDArray[np.float64]]:
    """Header, wavelengths and flux of a demo spectrum, read back with astropy."""
    with fits.open(summary.spectra_dir / f"{did.rsplit('/', 1)[1]}.fit", memmap=False) as hdus:
        header = hdus[0].header
        flux = np.asarray(hdus[0].data, dtype=np.float64)
    wave = header["CRVAL1"] + header["CDELT1"] * (np.arange(flux.size) + 1.0 - header["CRPIX1"])
    return header, wave, flux


def _normalised(wave: NDArray[np.float64], flux: NDArray[np.float64]) -> NDArray[np.float64]:
    """Flux over a straight continuum through two line-poor windows (6380-6440 Å, 6620-6660 Å)."""
    blue = np.median(flux[(wave > 6380) & (wave < 6440)])
    red = np.median(flux[(wave > 6620) & (wave < 6660)])
    return np.asarray(flux / (blue + (red - blue) * (wave - 6410.0) / 230.0), dtype=np.float64)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = _digest(generate_demo_archive(tmp_path / "a", count=40, seed=11).out_dir)
    again = _digest(generate_demo_archive(tmp_path / "b", count=40, seed=11).out_dir)
    other = _digest(generate_demo_archive(tmp_path / "c", count=40, seed=12).out_dir)
    assert len(first) == 40 + 2
    assert first == again
    assert first["labels.csv"] != other["labels.csv"]
    assert not set(first.values()) & set(other.values())


def test_classes_keep_the_real_archives_proportions(archive: DemoSummary) -> None:
    labels = [row["label"] for row in _rows(archive.labels_path)]
    counts = {label: labels.count(label) for label in LABELS}
    assert counts == archive.classes
    assert sum(counts.values()) == archive.count == 150
    total = sum(CLASS_WEIGHTS)
    for label, weight in zip(LABELS, CLASS_WEIGHTS, strict=True):
        assert abs(counts[label] - 150 * weight / total) <= 1.0


def test_labels_csv_names_every_file_by_its_ds_idpub(archive: DemoSummary) -> None:
    assert archive.labels_path.read_text(encoding="utf-8").splitlines()[0] == "id,label"
    rows = _rows(archive.labels_path)
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert {row["label"] for row in rows} <= set(LABELS)
    files = sorted(p.stem for p in archive.spectra_dir.glob("*.fit"))
    assert files == sorted(did.removeprefix(DEMO_DID_PREFIX) for did in ids)
    for did in ids[:25]:
        header, _, _ = _spectrum(archive, did)
        assert header["DS_IDPUB"] == did
        assert header["FILENAME"] == did.rsplit("/", 1)[1] + ".fit"
        # Real CCD700 names are tg160037 or a201504150031; demo names cannot be mistaken for them.
        assert re.fullmatch(r"ivo://vocloud\.demo/ccd700/demo\d{12}", did)
    truth = _rows(archive.truth_path)
    assert [row["id"] for row in truth] == ids
    assert [row["label"] for row in truth] == [row["label"] for row in rows]


def test_headers_are_ccd700_like_and_the_wcs_spans_the_halpha_setup(archive: DemoSummary) -> None:
    for row in _rows(archive.labels_path)[:30]:
        path = archive.spectra_dir / (row["id"].rsplit("/", 1)[1] + ".fit")
        with fits.open(path, memmap=False) as hdus:
            hdus.verify("exception")
            header, data = hdus[0].header, hdus[0].data
        assert data.dtype == np.dtype(">f4")
        assert data.shape == (N_PIXELS,)
        assert np.all(np.isfinite(data))
        for key in HEADER_KEYWORDS:
            assert key in header, key
        assert (header["BITPIX"], header["NAXIS"], header["NAXIS1"]) == (-32, 1, N_PIXELS)
        assert header["CTYPE1"] == "LINEAR"
        assert header["BUNIT"] == "ADU"
        assert header["CDELT1"] == header["CD1_1"]
        assert header["CDELT1"] == pytest.approx(0.2567, abs=2e-4)
        end = header["CRVAL1"] + header["CDELT1"] * (N_PIXELS - header["CRPIX1"])
        assert 6250.0 < header["CRVAL1"] < 6268.0
        assert 6760.0 < end < 6781.0
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}\.\d{3}", header["RA"])
        assert re.fullmatch(r"[+-]\d{2}:\d{2}:\d{2}\.\d{2}", header["DEC"])
        assert -15.0 <= float(header["DEC"][:3]) <= 75.0
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", header["UT"])
        # JD is the middle of the exposure; HJD differs by the light time across Earth's orbit.
        day = np.datetime64(f"{header['DATE-OBS']}T{header['UT']}")
        start_jd = (day - np.datetime64("2000-01-01T12:00:00")) / np.timedelta64(1, "s") / 86400.0 + 2451545.0
        assert header["JD"] == pytest.approx(start_jd + header["EXPTIME"] / 2.0 / 86400.0, abs=2e-5)
        assert abs(header["HJD"] - header["JD"]) < 0.0058
        assert abs(header["VHELIO"]) < 31.0
        assert 1.0 <= header["AIRMASS"] < 6.0
        # No wall clock: the file's DATE is a few days after the observation.
        written = np.datetime64(header["DATE"])
        assert np.timedelta64(0, "D") < written - day < np.timedelta64(5, "D")


def test_each_class_has_its_halpha_signature(archive: DemoSummary) -> None:
    truth = _rows(archive.truth_path)
    core_means: dict[str, list[float]] = {label: [] for label in LABELS}
    peaks: dict[str, list[float]] = {label: [] for label in LABELS}
    troughs: dict[str, list[float]] = {label: [] for label in LABELS}
    two_peaks: dict[str, list[bool]] = {label: [] for label in LABELS}
    for row in truth:
        _, wave, flux = _spectrum(archive, row["id"])
        norm = _normalised(wave, flux)
        smooth = np.convolve(norm, np.ones(5) / 5.0, mode="same")
        centre = HALPHA * (1.0 + float(row["rv_km_s"]) / C_KM_S)
        core = np.abs(wave - centre) < 3.0
        near = np.abs(wave - centre) < 12.0
        label = row["label"]
        core_means[label].append(float(norm[core].mean()))
        peaks[label].append(float(smooth[near].max()))
        troughs[label].append(float(smooth[core].min()))
        # Two maxima, one on each side of the line centre, with a dip between them.
        seg, x = smooth[near], wave[near]
        left = int(np.argmax(np.where(x < centre, seg, -np.inf)))
        right = int(np.argmax(np.where(x > centre, seg, -np.inf)))
        lower = min(seg[left], seg[right])
        dip = seg[left : right + 1].min()
        two_peaks[label].append(bool(lower > 1.05 and dip < lower - 0.1 * (lower - 1.0) and right - left >= 4))

    assert np.mean(core_means["emission"]) > 1.3
    assert np.mean(core_means["double-peak"]) > 1.2
    assert np.mean(core_means["absorption"]) < 0.8
    assert np.mean(np.asarray(peaks["emission"]) > 1.1) > 0.7  # the rest: weak emission filling the line in
    assert np.mean(np.asarray(troughs["absorption"]) < 0.85) > 0.95
    assert np.mean(np.asarray(peaks["absorption"]) < 1.05) > 0.95
    assert np.mean(two_peaks["double-peak"]) > 0.7
    assert np.mean(two_peaks["emission"]) < 0.25
    assert not any(two_peaks["absorption"])


def test_telluric_lines_stay_in_the_observer_frame(archive: DemoSummary) -> None:
    """Stacked in the topocentric frame a water line is deep; stacked in the stars' frames it smears out."""
    truth = _rows(archive.truth_path)
    line = 6552.63  # H2O, topocentric air wavelength
    offsets = np.linspace(-1.5, 1.5, 61)
    topocentric, stellar = [], []
    for row in truth:
        if row["label"] != "absorption":
            continue
        header, wave, flux = _spectrum(archive, row["id"])
        norm = flux / np.median(flux[np.abs(wave - line) < 6.0])
        vhelio, rv = header["VHELIO"], float(row["rv_km_s"])
        topocentric.append(np.interp(line * (1.0 + vhelio / C_KM_S) + offsets, wave, norm))
        stellar.append(np.interp(line * (1.0 + rv / C_KM_S) + offsets, wave, norm))
    depth_topo = 1.0 - np.median(topocentric, axis=0)[30]
    depth_star = 1.0 - np.median(stellar, axis=0)[30]
    assert depth_topo > 0.03
    assert depth_topo > 2.0 * depth_star


def test_rotational_kernel_is_normalised_and_as_wide_as_vsini() -> None:
    kernels = _rotational_kernels(np.array([0.2, 5.0, 20.0]), np.array([0.6, 0.6, 0.6]))
    assert np.allclose(kernels.sum(axis=1), 1.0)
    centre = kernels.shape[1] // 2
    assert kernels[0, centre] == pytest.approx(1.0)  # narrower than a pixel: all of it in one pixel
    wide = np.flatnonzero(kernels[2] > 0) - centre
    assert (wide.min(), wide.max()) == (-20, 20)
    assert np.allclose(kernels[1], kernels[1][::-1])


def test_bad_arguments_and_a_used_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count"):
        generate_demo_archive(tmp_path / "x", count=0)
    with pytest.raises(ValueError, match="seed"):
        generate_demo_archive(tmp_path / "x", count=5, seed=-1)
    generate_demo_archive(tmp_path / "y", count=5)
    with pytest.raises(ValueError, match="already holds"):
        generate_demo_archive(tmp_path / "y", count=5)
    again = generate_demo_archive(tmp_path / "y", count=3, overwrite=True)
    assert len(list(again.spectra_dir.glob("*.fit"))) == 3


def test_cli_writes_the_archive_and_rejects_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    done = subprocess.run(
        [str(VOCLOUD), "demo-data", "--count", "30", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "30 demo spectra" in lines[0]
    assert "files/s" in lines[0]
    assert len(list((out / "spectra").glob("*.fit"))) == 30
    assert len(_rows(out / "labels.csv")) == 30
    for bad in (["--count", "0", "--out", str(out)], ["--count", "ten", "--out", str(out)], ["--count", "5"]):
        refused = subprocess.run(
            [str(VOCLOUD), "demo-data", *bad], capture_output=True, text=True, timeout=60, check=False
        )
        assert refused.returncode == 2, bad
    used = subprocess.run(
        [str(VOCLOUD), "demo-data", "--count", "5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert used.returncode == 2
    assert "already holds" in used.stderr


def test_the_archive_readers_read_demo_files(archive: DemoSummary) -> None:
    from vocloud.server.spectra.readers import read_spectrum

    did = _rows(archive.labels_path)[0]["id"]
    spectrum = read_spectrum(archive.spectra_dir / f"{did.rsplit('/', 1)[1]}.fit")
    assert spectrum.meta.publisher_did == did
    assert len(spectrum.wavelength) == N_PIXELS
    assert 6250.0 < spectrum.wavelength[0] < spectrum.wavelength[-1] < 6781.0
