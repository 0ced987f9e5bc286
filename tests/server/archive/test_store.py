"""The archive store: idempotent adds, and cone/band/time searches that agree with brute force."""

import math

import numpy as np
import pytest

from vocloud.server.archive.store import ArchiveStore, ConeQuery
from vocloud.server.spectra.model import SpectrumMeta


def _add(store, did, ra, dec, *, em=(6.25e-7, 6.78e-7), t=(55000.0, 55000.1), target="HD 1", collection="c"):
    meta = SpectrumMeta(
        publisher_did=did, ra=ra, dec=dec, t_min=t[0], t_max=t[1], target_name=target, obs_collection=collection
    )
    return store.add(
        meta,
        em_min=em[0],
        em_max=em[1],
        n_points=10,
        access_format="application/fits",
        size=100,
        file=f"{did[-4:]}.fits",
        source="test",
    )


def _separation(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def test_same_did_twice_is_one_spectrum(tmp_path):
    store = ArchiveStore(tmp_path / "a.sqlite")
    first = _add(store, "ivo://x/y/0001", 10.0, 20.0)
    again = _add(store, "ivo://x/y/0001", 50.0, -20.0)
    assert first == (first[0], True)
    assert again == (first[0], False)
    assert store.count() == 1
    assert store.get("ivo://x/y/0001").s_ra == 10.0


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [
        (0.5, 0.0, 2.0),
        (359.5, 10.0, 3.0),
        (123.0, 89.5, 2.0),
        (200.0, -89.9, 5.0),
        (45.0, 45.0, 0.01),
        (10.0, 0.0, 180.0),
    ],
)
def test_cone_matches_brute_force_including_wraparound_and_poles(tmp_path, ra, dec, radius):
    rng = np.random.default_rng(3)
    store = ArchiveStore(tmp_path / "a.sqlite")
    points = []
    for i in range(3000):
        pra = float(rng.uniform(0, 360)) if i % 3 else float((ra + rng.normal(0, radius)) % 360)
        pdec = (
            float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
            if i % 3
            else float(np.clip(dec + rng.normal(0, radius), -90, 90))
        )
        points.append((f"ivo://x/y/{i:04d}", pra, pdec))
        _add(store, *points[-1])
    found = {r.obs_publisher_did for r in store.search(ConeQuery(ra=ra, dec=dec, radius=radius))}
    expected = {did for did, pra, pdec in points if _separation(ra, dec, pra, pdec) <= radius}
    assert found == expected
    assert expected, "the test should find something"


def test_band_time_target_collection_and_limit(tmp_path):
    store = ArchiveStore(tmp_path / "a.sqlite")
    _add(store, "ivo://x/blue", 1, 1, em=(4e-7, 5e-7), t=(55000, 55000.1), target="Vega")
    _add(store, "ivo://x/red", 1, 1, em=(6e-7, 7e-7), t=(56000, 56000.1), collection="other")
    _add(store, "ivo://x/both", 1, 1, em=(4e-7, 7e-7), t=(57000, 57000.1))

    def dids(**kw):
        return [r.obs_publisher_did for r in store.search(ConeQuery(**kw))]

    assert dids(band=(6.5e-7, 6.6e-7)) == ["ivo://x/red", "ivo://x/both"]
    assert dids(band=(None, 4.5e-7)) == ["ivo://x/blue", "ivo://x/both"]
    assert dids(band=(6.9e-7, None)) == ["ivo://x/red", "ivo://x/both"]
    assert dids(time=(55500, 56500)) == ["ivo://x/red"]
    assert dids(time=(56050, None)) == ["ivo://x/both"]
    assert dids(target_name="VEGA") == ["ivo://x/blue"]
    assert dids(collection="other") == ["ivo://x/red"]
    assert dids(publisher_did="ivo://x/both") == ["ivo://x/both"]
    assert dids(limit=2) == ["ivo://x/blue", "ivo://x/red"]
    assert store.get_many(["ivo://x/red", "ivo://x/none"]).keys() == {"ivo://x/red"}


def test_add_many_skips_known_dids_indexes_positions_and_is_all_or_nothing(tmp_path):
    from vocloud.server.archive.store import NewSpectrum

    store = ArchiveStore(tmp_path / "a.sqlite")
    _add(store, "ivo://x/y/0000", 10.0, 20.0)

    def new(i, ra, dec):
        meta = SpectrumMeta(publisher_did=f"ivo://x/y/{i:04d}", ra=ra, dec=dec)
        return NewSpectrum(meta=meta, em_min=6e-7, em_max=7e-7, n_points=5, access_format="application/fits",
                           size=10, file=f"{i}.fits")

    assert store.add_many([new(0, 50.0, 50.0), new(1, 10.001, 20.0), new(2, 200.0, -30.0), new(3, None, None)]) == 3
    assert store.count() == 4
    assert store.get("ivo://x/y/0000").s_ra == 10.0  # the archived spectrum is untouched
    near = {r.obs_publisher_did for r in store.search(ConeQuery(ra=10.0, dec=20.0, radius=0.01))}
    assert near == {"ivo://x/y/0000", "ivo://x/y/0001"}

    def failing():
        yield new(4, 1.0, 1.0)
        raise RuntimeError("the source broke off")

    with pytest.raises(RuntimeError):
        store.add_many(failing())
    assert store.count() == 4
    assert store.get("ivo://x/y/0004") is None
    assert store.search(ConeQuery(ra=1.0, dec=1.0, radius=1.0)) == []
