"""Declaration of the ``preprocess`` job kind (its runner lives in :mod:`.preprocess_job`).

Kept apart from the runner so that the server, which only needs the
declaration, never imports h5py or scikit-learn.
"""

from __future__ import annotations

from ..kinds import JobKind, ParamSpec, ParamType, ResultSpec

__all__ = ["HDF5_MIME", "PREPROCESS"]

HDF5_MIME = "application/x-hdf5"

PREPROCESS = JobKind(
    name="preprocess",
    title="Preprocess archived spectra into a feature matrix",
    description=(
        "Selects archived spectra as SSAP does (position, band, collection, target) and runs them through"
        " explicit steps in this order: air to vacuum, heliocentric velocity shift from the header, cutout,"
        " flux-conserving resampling onto a common linear or log-wavelength grid, continuum normalisation"
        " (iteratively sigma-clipped Chebyshev fit), Gaussian convolution to a resolving power, per-spectrum"
        " scaling, and optional PCA. The result is a float32 HDF5 feature store (ids, grid, matrix, provenance"
        " of every step); the same selection with the same parameters reuses the stored one. Spectra a step"
        " cannot handle are skipped and listed with the reason."
    ),
    runner="vocloud.server.ml.preprocess_job:run_preprocess",
    parameters=(
        ParamSpec(name="pos_ra", type=ParamType.REAL, unit="deg", minimum=0.0, maximum=360.0,
                  description="Right ascension (ICRS) of the cone centre; with pos_dec and radius"),
        ParamSpec(name="pos_dec", type=ParamType.REAL, unit="deg", minimum=-90.0, maximum=90.0,
                  description="Declination (ICRS) of the cone centre"),
        ParamSpec(name="radius", type=ParamType.REAL, unit="deg", minimum=0.0, maximum=180.0,
                  description="Cone radius"),
        ParamSpec(name="band_min", type=ParamType.REAL, unit="m", minimum=0.0,
                  description="Select spectra reaching at least this wavelength (SSAP BAND lower end)"),
        ParamSpec(name="band_max", type=ParamType.REAL, unit="m", minimum=0.0,
                  description="Select spectra starting at most at this wavelength (SSAP BAND upper end)"),
        ParamSpec(name="collection", type=ParamType.STRING, max_length=200, description="Exact collection name"),
        ParamSpec(name="target", type=ParamType.STRING, max_length=200,
                  description="Target name (case-insensitive, exact)"),
        ParamSpec(name="air_to_vacuum", type=ParamType.BOOLEAN, default=True,
                  description="Convert air wavelengths to vacuum (Morton 2000, IAU); vacuum spectra are unchanged"),
        ParamSpec(name="rv_correction", type=ParamType.BOOLEAN, default=False,
                  description="Shift by the header's heliocentric correction VHELIO, lambda*(1+VHELIO/c); off by"
                  " default because the archived Ondrejov CCD700 spectra already have it applied"),
        ParamSpec(name="wl_min", type=ParamType.REAL, unit="Angstrom", minimum=0.0,
                  description="Lower end of the cutout and grid, after the wavelength steps; default: the range"
                  " common to the whole selection"),
        ParamSpec(name="wl_max", type=ParamType.REAL, unit="Angstrom", minimum=0.0,
                  description="Upper end of the cutout and grid; must exceed wl_min"),
        ParamSpec(name="grid", type=ParamType.STRING, default="linear", choices=("linear", "log"),
                  description="Spacing of the common grid: equal steps in wavelength or in log wavelength"),
        ParamSpec(name="n_points", type=ParamType.INTEGER, default=1000, minimum=2, maximum=100_000,
                  description="Bins of the common grid (columns of the matrix)"),
        ParamSpec(name="normalise", type=ParamType.BOOLEAN, default=True,
                  description="Divide by an iteratively sigma-clipped Chebyshev continuum"),
        ParamSpec(name="continuum_degree", type=ParamType.INTEGER, default=-1, minimum=-1, maximum=20,
                  description="Degree of the continuum; -1 chooses it from the span as SODA NORMALIZE does"),
        ParamSpec(name="clip_low", type=ParamType.REAL, default=2.0, minimum=0.1, maximum=100.0,
                  description="Continuum fit: reject points this many robust sigmas below it"),
        ParamSpec(name="clip_high", type=ParamType.REAL, default=3.0, minimum=0.1, maximum=100.0,
                  description="Continuum fit: reject points this many robust sigmas above it"),
        ParamSpec(name="resolving_power", type=ParamType.REAL, default=0.0, minimum=0.0, maximum=1e7,
                  description="Convolve with a Gaussian to this lambda/dlambda; 0 for no convolution"),
        ParamSpec(name="scaling", type=ParamType.STRING, default="none",
                  choices=("none", "l2", "minmax", "minmax_symmetric", "zscore"),
                  description="Per-spectrum scaling: none, L2 norm, min-max to [0,1] or [-1,1], z-score"),
        ParamSpec(name="pca_components", type=ParamType.INTEGER, default=0, minimum=0, maximum=1000,
                  description="Principal components to compute (IncrementalPCA) and store with scores; 0 for none"),
    ),
    results=(
        ResultSpec(name="features", mime_type=HDF5_MIME,
                   description="HDF5 feature store: ids, wavelength, features (float32, row-chunked), provenance"),
        ResultSpec(name="result", mime_type="application/x-votable+xml",
                   description="One row per selected spectrum: its DID, kept or skipped, and why"),
    ),
)  # fmt: skip
