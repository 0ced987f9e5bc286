"""The preprocess job kind through the real app: feature store, provenance, cache, bad parameters, flat memory."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from lxml import etree

from tests.support.uws import create, wait_for_phase
from vocloud.server.keys import ARCHIVE
from vocloud.server.ml.feature_store import CHUNK_ROWS, FeatureStore
from vocloud.server.ml.pipeline import Item, PreprocessParameters, run_pipeline
from vocloud.server.ml.steps import Sample

pytestmark = pytest.mark.timeout(180)


async def _run(client, **params):
    path = await create(client, "preprocess", phase="RUN", **params)
    doc = await wait_for_phase(client, path, "COMPLETED", timeout=120)
    features = await (await client.get(f"{path}/results/features")).read()
    summary = await (await client.get(f"{path}/results/result")).read()
    return doc, features, summary


def _summary_rows(body: bytes) -> list[list[str]]:
    root = etree.fromstring(body)
    return [[td.text or "" for td in tr.iterfind("{*}TD")] for tr in root.iter("{*}TR")]


def _open(data: bytes, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def test_preprocess_writes_a_store_and_reuses_it(make_client, tmp_path):
    client = await make_client(demo_spectra=40)
    archive = client.server.app[ARCHIVE]
    dids = [r.obs_publisher_did for r in archive.store.search(_everything())]
    assert len(dids) == 40

    doc, features, summary = await _run(client, n_points=400, scaling="zscore", pca_components=3)
    assert doc.results["features"]["mime-type"] == "application/x-hdf5"
    assert doc.progress is not None and doc.progress[1].startswith("new feature store")
    path = _open(features, tmp_path, "first.h5")
    with h5py.File(path, "r") as f:
        matrix = f["features"]
        assert matrix.dtype == np.float32
        assert matrix.chunks == (CHUNK_ROWS, 400)
        assert matrix.compression is None
        assert f["wavelength"].shape == (400,)
        assert f["pca/scores"].shape == (matrix.shape[0], 3)
    with FeatureStore(path) as store:
        kept = store.ids
        rows = np.asarray(store.features[()])
        provenance = store.provenance
        skipped = store.skipped
    assert len(kept) + len(skipped) == 40 and len(kept) >= 35
    assert set(kept) | {s[0] for s in skipped} == set(dids)
    assert np.all(np.isfinite(rows))
    np.testing.assert_allclose(rows.mean(axis=1), 0.0, atol=1e-4)
    assert [s["step"] for s in provenance["steps"]] == [
        "air_to_vacuum",
        "cutout",
        "resample",
        "continuum_normalise",
        "scale",
    ]
    assert provenance["input_count"] == 40 and provenance["kept"] == len(kept)
    assert provenance["software"].startswith("vocloud ")
    assert provenance["pca"]["components"] == 3
    # The default grid is the range all selected spectra cover, in vacuum.
    grid = provenance["grid"]
    assert 6250 < grid["wl_min"] < grid["wl_max"] < 6790

    table = _summary_rows(summary)
    assert len(table) == 40 and {r[1] for r in table} <= {"kept", "skipped"}

    # The same request again: reused, same bytes.
    doc2, features2, summary2 = await _run(client, n_points=400, scaling="zscore", pca_components=3)
    assert doc2.progress is not None and doc2.progress[1].startswith("reused feature store")
    assert features2 == features
    assert b"reused" in summary2

    # A different parameter: a new store.
    doc3, features3, _ = await _run(client, n_points=200, scaling="zscore", pca_components=3)
    assert doc3.progress is not None and doc3.progress[1].startswith("new feature store")
    with FeatureStore(_open(features3, tmp_path, "third.h5")) as store:
        assert store.features.shape[1] == 200


async def test_cutout_outside_a_spectrum_skips_it_with_a_reason(make_client, tmp_path):
    client = await make_client(demo_spectra=40)
    _, features, _ = await _run(client, wl_min=6500.0, wl_max=6600.0, grid="log", n_points=300)
    with FeatureStore(_open(features, tmp_path, "cut.h5")) as store:
        assert store.features.shape == (len(store.ids), 300)
        wavelength = store.wavelength
        assert wavelength[0] > 6500 and wavelength[-1] < 6600
        np.testing.assert_allclose(np.diff(np.log(wavelength)), np.log(6600 / 6500) / 300, rtol=1e-6)
    # A selection no spectrum covers fails clearly.
    path = await create(client, "preprocess", phase="RUN", wl_min=7000.0, wl_max=7100.0)
    doc = await wait_for_phase(client, path, "ERROR", timeout=60)
    assert doc.error_message is not None and "survived preprocessing" in doc.error_message
    assert "no overlap" in doc.error_message


async def test_bad_parameters_are_refused_clearly(make_client):
    client = await make_client(demo_spectra=40)
    path = await create(client, "preprocess", phase="RUN", wl_min=6600.0, wl_max=6500.0)
    doc = await wait_for_phase(client, path, "ERROR", timeout=60)
    assert doc.error_message is not None and "wl_min" in doc.error_message and "wl_max" in doc.error_message

    response = await client.post("/jobs/preprocess", data={"scaling": "log"}, allow_redirects=False)
    assert response.status == 400 and "scaling" in await response.text()
    response = await client.post("/jobs/preprocess", data={"n_points": "1"}, allow_redirects=False)
    assert response.status == 400 and "n_points" in await response.text()

    path = await create(client, "preprocess", phase="RUN", collection="no-such-collection")
    doc = await wait_for_phase(client, path, "ERROR", timeout=60)
    assert doc.error_message is not None and "selection is empty" in doc.error_message


def test_pipeline_holds_at_most_one_batch(tmp_path, monkeypatch):
    """Structural check of streaming: items are pulled lazily and rows go to disk a batch at a time."""
    from vocloud.server.ml import feature_store

    appended: list[int] = []
    original = feature_store.FeatureStoreWriter.append

    def spy(self, ids, matrix):
        appended.append(matrix.shape[0])
        original(self, ids, matrix)

    monkeypatch.setattr(feature_store.FeatureStoreWriter, "append", spy)
    loaded = 0

    def items():
        nonlocal loaded
        wavelength = np.linspace(6000.0, 6200.0, 600)
        for i in range(1100):
            # No more than one batch is loaded ahead of what has been written.
            assert loaded - sum(appended) <= 64
            loaded += 1
            yield Item(id=f"s{i}", load=lambda w=wavelength, k=i: Sample(wavelength=w, flux=1.0 + 0.001 * k + 0 * w))

    params = PreprocessParameters(wl_min=6010.0, wl_max=6190.0, n_points=50, normalise=False)
    report = run_pipeline(items(), params=params, out=tmp_path / "s.h5", total=1100, provenance={}, batch_size=64)
    assert report.kept == 1100 and report.largest_batch == 64
    assert max(appended) == 64 and sum(appended) == 1100
    with FeatureStore(tmp_path / "s.h5") as store:
        assert store.features.shape == (1100, 50)
        assert json.loads(json.dumps(store.provenance))["kept"] == 1100


def _everything():
    from vocloud.server.archive.store import ConeQuery

    return ConeQuery()
