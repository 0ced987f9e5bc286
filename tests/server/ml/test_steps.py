"""Each preprocessing step against analytic or hand-computed expectations."""

import math

import numpy as np
import pytest

from vocloud.server.ml.steps import (
    FWHM_PER_SIGMA,
    SPEED_OF_LIGHT_KM_S,
    AirToVacuum,
    ContinuumNormalise,
    Cutout,
    GaussianConvolution,
    Grid,
    GridKind,
    Resample,
    Sample,
    Scale,
    Scaling,
    StepError,
    VelocityShift,
    air_to_vacuum,
)


def _sample(wavelength, flux, **kw) -> Sample:
    return Sample(wavelength=np.asarray(wavelength, float), flux=np.asarray(flux, float), **kw)


def test_air_to_vacuum_at_h_alpha_and_only_for_air():
    assert air_to_vacuum(np.array([6562.80]))[0] == pytest.approx(6564.61, abs=0.01)
    # Na D2 5889.950 Å in air is 5891.583 Å in vacuum (NIST).
    assert air_to_vacuum(np.array([5889.950]))[0] == pytest.approx(5891.583, abs=0.005)
    step = AirToVacuum()
    air = _sample([6500.0, 6600.0], [1, 1], medium="air")
    out = step.apply(air)
    assert out.medium == "vacuum" and out.wavelength[0] > 6501.7
    vacuum = _sample([6500.0, 6600.0], [1, 1], medium="vacuum")
    assert step.apply(vacuum) is vacuum
    assert step.describe()["step"] == "air_to_vacuum"


def test_velocity_shift_uses_the_header_and_passes_others():
    step = VelocityShift()
    sample = _sample([6000.0, 6001.0], [1, 1], header={"VHELIO": "29.9792458"})
    out = step.apply(sample)
    np.testing.assert_allclose(out.wavelength, sample.wavelength * (1 + 29.9792458 / SPEED_OF_LIGHT_KM_S))
    assert out.wavelength[0] == pytest.approx(6000.6)
    bare = _sample([6000.0, 6001.0], [1, 1])
    assert step.apply(bare) is bare
    assert step.describe()["keyword"] == "VHELIO"


def test_cutout_keeps_the_interval_and_refuses_no_overlap():
    sample = _sample(np.arange(6000.0, 6010.0), np.arange(10.0))
    out = Cutout(wl_min=6002.2, wl_max=6004.8).apply(sample)
    np.testing.assert_array_equal(out.wavelength, [6002, 6003, 6004, 6005])
    out = Cutout(wl_min=6002.6, wl_max=6004.4).apply(sample)
    np.testing.assert_array_equal(out.wavelength, [6003, 6004])
    with pytest.raises(StepError, match="no overlap"):
        Cutout(wl_min=7000.0, wl_max=7100.0).apply(sample)
    with pytest.raises(ValueError, match="wl_min"):
        Cutout(wl_min=7000.0, wl_max=7000.0)


@pytest.mark.parametrize("kind", [GridKind.LINEAR, GridKind.LOG])
def test_grid_edges_span_the_interval(kind):
    grid = Grid(wl_min=6000.0, wl_max=6600.0, n_points=300, kind=kind)
    edges, centres = grid.edges, grid.centres
    assert len(edges) == 301 and len(centres) == 300
    assert edges[0] == pytest.approx(6000.0) and edges[-1] == pytest.approx(6600.0)
    assert np.all((centres > edges[:-1]) & (centres < edges[1:]))
    if kind is GridKind.LOG:
        np.testing.assert_allclose(np.diff(np.log(edges)), math.log(6600 / 6000) / 300)


@pytest.mark.parametrize("kind", [GridKind.LINEAR, GridKind.LOG])
def test_resampling_conserves_flux(kind):
    rng = np.random.default_rng(1)
    wavelength = np.sort(rng.uniform(5990.0, 6110.0, 3000))
    wavelength = np.unique(wavelength)
    flux = 1.0 + 0.5 * np.sin(wavelength / 3.0) + rng.normal(0, 0.1, len(wavelength))
    grid = Grid(wl_min=6000.0, wl_max=6100.0, n_points=173, kind=kind)
    out = Resample(grid=grid).apply(_sample(wavelength, flux))
    # The integral over the grid equals the input's integral over the same interval
    # (input pixels as bins of constant flux density, clipped to the interval).
    from vocloud.server.ml.steps import pixel_edges

    edges = pixel_edges(wavelength)
    overlap = np.clip(np.minimum(edges[1:], 6100.0) - np.maximum(edges[:-1], 6000.0), 0, None)
    expected = float(np.sum(flux * overlap))
    assert float(np.sum(out.flux * np.diff(grid.edges))) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_array_equal(out.wavelength, grid.centres)


def test_resampling_keeps_a_flat_spectrum_flat_and_refuses_partial_cover():
    wavelength = np.linspace(6000.0, 6100.0, 500)
    out = Resample(grid=Grid(wl_min=6010.0, wl_max=6090.0, n_points=37)).apply(_sample(wavelength, np.full(500, 3.0)))
    np.testing.assert_allclose(out.flux, 3.0)
    with pytest.raises(StepError, match="does not cover"):
        Resample(grid=Grid(wl_min=5900.0, wl_max=6090.0, n_points=37)).apply(_sample(wavelength, np.ones(500)))


def test_convolution_reaches_the_target_resolving_power():
    wavelength = np.arange(6500.0, 6630.0, 0.01)
    sigma0 = 0.05
    line = np.exp(-0.5 * ((wavelength - 6563.0) / sigma0) ** 2)
    out = GaussianConvolution(resolving_power=10_000.0).apply(_sample(wavelength, line))
    kernel_sigma = 6563.0 / 10_000.0 / FWHM_PER_SIGMA
    expected = math.hypot(sigma0, kernel_sigma)
    # Second moment of the output line: quadrature sum of the widths.
    weights = out.flux / out.flux.sum()
    mean = float(np.sum(weights * wavelength))
    width = math.sqrt(float(np.sum(weights * (wavelength - mean) ** 2)))
    assert width == pytest.approx(expected, rel=0.01)
    assert float(out.flux.sum()) == pytest.approx(float(line.sum()), rel=1e-3)
    assert out.resolving_power == 10_000.0


def test_convolution_accounts_for_the_spectrums_own_resolution():
    wavelength = np.arange(6500.0, 6630.0, 0.01)
    flux = np.ones_like(wavelength)
    coarse = _sample(wavelength, flux, resolving_power=5000.0)
    assert GaussianConvolution(resolving_power=10_000.0).apply(coarse) is coarse


@pytest.mark.parametrize(
    ("scaling", "check"),
    [
        (Scaling.L2, lambda f: np.linalg.norm(f) == pytest.approx(1.0)),
        (Scaling.MINMAX, lambda f: (f.min(), f.max()) == (pytest.approx(0.0), pytest.approx(1.0))),
        (Scaling.MINMAX_SYMMETRIC, lambda f: (f.min(), f.max()) == (pytest.approx(-1.0), pytest.approx(1.0))),
        (Scaling.ZSCORE, lambda f: (f.mean(), f.std()) == (pytest.approx(0.0, abs=1e-12), pytest.approx(1.0))),
    ],
)
def test_scalers(scaling, check):
    flux = np.array([3.0, 4.0, 0.0, -2.0, 7.5])
    out = Scale(scaling=scaling).apply(_sample(np.arange(5.0) + 6000, flux))
    assert check(out.flux)


def test_scalers_on_hand_computed_values_and_constants():
    sample = _sample([1.0, 2.0], [3.0, 4.0])
    np.testing.assert_allclose(Scale(scaling=Scaling.L2).apply(sample).flux, [0.6, 0.8])
    np.testing.assert_allclose(Scale(scaling=Scaling.MINMAX_SYMMETRIC).apply(sample).flux, [-1.0, 1.0])
    assert Scale(scaling=Scaling.NONE).apply(sample) is sample
    with pytest.raises(StepError, match="constant"):
        Scale(scaling=Scaling.ZSCORE).apply(_sample([1.0, 2.0], [3.0, 3.0]))


def test_continuum_normalisation_recovers_one_in_the_continuum():
    rng = np.random.default_rng(7)
    wavelength = np.linspace(6250.0, 6780.0, 2000)
    x = (wavelength - 6500.0) / 250.0
    continuum = 1000.0 * (1.0 + 0.3 * x - 0.1 * x**2)
    absorption = 1.0 - 0.6 * np.exp(-0.5 * ((wavelength - 6563.0) / 3.0) ** 2)
    emission = 1.0 + 0.8 * np.exp(-0.5 * ((wavelength - 6678.0) / 1.5) ** 2)
    flux = continuum * absorption * emission * (1.0 + rng.normal(0, 0.005, len(wavelength)))
    out = ContinuumNormalise(degree=3, low_sigma=2.0, high_sigma=3.0).apply(_sample(wavelength, flux))
    far = (np.abs(wavelength - 6563.0) > 15.0) & (np.abs(wavelength - 6678.0) > 8.0)
    assert float(np.median(out.flux[far])) == pytest.approx(1.0, abs=0.002)
    assert float(np.std(out.flux[far])) < 0.01
    assert float(out.flux[np.argmin(np.abs(wavelength - 6563.0))]) == pytest.approx(0.4, abs=0.02)
    assert ContinuumNormalise().describe()["degree"] is None


def test_continuum_normalisation_refuses_a_zero_spectrum():
    wavelength = np.linspace(6250.0, 6780.0, 200)
    with pytest.raises(StepError, match="continuum"):
        ContinuumNormalise().apply(_sample(wavelength, np.zeros(200)))
