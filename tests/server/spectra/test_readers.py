"""Every real FITS file in shared/data reads into a Spectrum whose wavelengths and metadata match the headers.

The expected values are computed here independently of the readers: wavelengths
from the WCS keywords as astropy.io.fits reads them, positions with
astropy.coordinates, and metadata from the manifests made when the data were
collected. The tests skip when shared/data is absent.
"""

import csv
import gzip
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Angle
from astropy.io import fits

from tests.conftest import SHARED_DATA
from tests.support.shared_files import shared_fits_files
from vocloud.server.spectra.model import FluxCalibration, Medium, Spectrum
from vocloud.server.spectra.readers import SpectrumFormatError, read_spectrum

ONDREJOV = Path("ondrejov-ccd700")
LAMOST = Path("lamost")
ORIGINAL = ONDREJOV / "fits-original" / "tg160037.fit"
SERIALIZATIONS = ONDREJOV / "serializations-tg160037"
DR2_FILE = LAMOST / "spectraml-dr2" / "spec-55919-B5591903_sp01-003.fits"
DR1_FILE = LAMOST / "xmatch-ondrejov-dr1" / "spec-55903-B90306_sp06-163.fits"
UNKNOWN_FILE = LAMOST / "spectraml-dr2" / "spec-55919-B5591903_sp01-001.fits"
SECONDS_PER_DAY = 86400.0
FITS_COUNT = 244


def _manifest(folder):
    if not SHARED_DATA.is_dir():
        return {}
    with (SHARED_DATA / folder / "manifest.csv").open(newline="") as handle:
        return {Path(folder) / row["file"]: row for row in csv.DictReader(handle)}


FITS_FILES = shared_fits_files()
ONDREJOV_ROWS = _manifest(ONDREJOV)
LAMOST_ROWS = _manifest(LAMOST)


def _header(path, ext=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IRAF headers have cards astropy calls non-standard
        return fits.getheader(path, ext=ext)


def _data(path, ext=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fits.getdata(path, ext=ext)


def test_all_fits_files_are_there(shared_data):
    assert len(FITS_FILES) == FITS_COUNT
    assert set(FITS_FILES) == set(ONDREJOV_ROWS) | set(LAMOST_ROWS)


@pytest.mark.parametrize("relative", FITS_FILES, ids=str)
def test_every_real_fits_file_reads_into_a_spectrum(shared_data, relative):
    spectrum = read_spectrum(shared_data / relative)
    assert isinstance(spectrum, Spectrum)
    assert spectrum.wavelength.dtype == np.float64
    assert np.all(np.diff(spectrum.wavelength) > 0)
    assert np.isfinite(spectrum.flux).any()
    assert spectrum.flux.dtype.isnative
    assert spectrum.meta.publisher_did.startswith("ivo://")
    row = ONDREJOV_ROWS.get(relative) or LAMOST_ROWS[relative]
    assert len(spectrum.wavelength) == int(row.get("n_points") or row["n_pix"])
    decimals = 3 if relative in ONDREJOV_ROWS else 2
    assert spectrum.wavelength[0] == pytest.approx(float(row["wave_min"]), abs=0.6 * 10**-decimals)
    assert spectrum.wavelength[-1] == pytest.approx(float(row["wave_max"]), abs=0.6 * 10**-decimals)


@pytest.mark.parametrize("relative", [path for path in FITS_FILES if path.parts[1] == "fits-original"], ids=str)
def test_ondrejov_originals_follow_their_linear_wcs_and_header(shared_data, relative):
    path = shared_data / relative
    header, flux = _header(path), _data(path)
    spectrum = read_spectrum(path)
    pixels = np.arange(header["NAXIS1"])
    expected = header["CRVAL1"] + (pixels + 1 - header["CRPIX1"]) * header["CDELT1"]
    assert header["CD1_1"] == header["CDELT1"]
    np.testing.assert_allclose(spectrum.wavelength, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(spectrum.flux, flux)
    row = ONDREJOV_ROWS[relative]
    meta = spectrum.meta
    assert meta.publisher_did == row["pubdid"] == f"ivo://asu.cas.cz/stel/ccd700/{Path(header['FILENAME']).stem}"
    assert meta.target_name == row["object"]
    assert meta.ra == pytest.approx(Angle(row["ra"], unit=u.hourangle).degree, abs=1e-9)
    assert meta.dec == pytest.approx(Angle(row["dec"], unit=u.deg).degree, abs=1e-9)
    assert meta.exposure == float(row["exptime_s"])
    # JD is written at mid-exposure (UTMIDDLE = UT + EXPTIME/2): an independent check of t_min/t_max.
    assert (meta.t_min + meta.t_max) / 2 == pytest.approx(header["JD"] - 2400000.5, abs=1.0 / SECONDS_PER_DAY)
    assert meta.t_max - meta.t_min == pytest.approx(header["EXPTIME"] / SECONDS_PER_DAY)
    assert (meta.facility_name, meta.instrument_name, meta.obs_collection) == ("Ondrejov 2m", "CCD700", "ccd700")
    assert meta.medium is Medium.AIR
    assert meta.flux_unit == "adu"
    assert meta.flux_calibration is FluxCalibration.UNCALIBRATED
    assert meta.em_res_power is None
    assert float(meta.header["VHELIO"]) == header["VHELIO"]


@pytest.mark.parametrize("relative", [path for path in FITS_FILES if "datalink" in path.parts[1]], ids=str)
def test_ondrejov_datalink_tables_match_their_columns_and_keywords(shared_data, relative):
    path = shared_data / relative
    header, table = _header(path, ext=1), _data(path, ext=1)
    spectrum = read_spectrum(path)
    np.testing.assert_array_equal(spectrum.wavelength, table["spectral"])
    np.testing.assert_array_equal(spectrum.flux, table["flux"])
    if "TDMIN1" in header:
        assert spectrum.em_min == pytest.approx(header["TDMIN1"], rel=1e-12)
        assert spectrum.em_max == pytest.approx(header["TDMAX1"], rel=1e-12)
    row = ONDREJOV_ROWS[relative]
    meta = spectrum.meta
    assert meta.publisher_did == row["pubdid"] == header["DS_IDPUB"]
    assert meta.target_name == row["object"]
    assert meta.ra == pytest.approx(float(row["ra"]), abs=1e-6)
    assert meta.dec == pytest.approx(float(row["dec"]), abs=1e-6)
    # The archive's TMID is the exposure start (see vocloud.server.spectra.ondrejov).
    assert meta.t_min == pytest.approx(float(row["mjd_mid"]), abs=1e-9)
    assert meta.exposure == float(row["exptime_s"])
    assert meta.t_max - meta.t_min == pytest.approx(meta.exposure / SECONDS_PER_DAY)
    assert meta.medium is Medium.AIR
    if row["flux"] == "normalized":
        assert (meta.flux_unit, meta.flux_calibration) == ("", FluxCalibration.NORMALIZED)
        assert 0.5 < np.median(spectrum.flux) < 1.5
    else:
        assert (meta.flux_unit, meta.flux_calibration) == ("ct", FluxCalibration.UNCALIBRATED)


@pytest.mark.parametrize("relative", [path for path in FITS_FILES if path.parts[0] == "lamost"], ids=str)
def test_lamost_spectra_follow_their_log_linear_solution_and_header(shared_data, relative):
    path = shared_data / relative
    header, image = _header(path), _data(path)
    spectrum = read_spectrum(path)
    expected = 10 ** (header["COEFF0"] + header["COEFF1"] * np.arange(header["NAXIS1"]))
    np.testing.assert_allclose(spectrum.wavelength, expected, rtol=1e-13)
    np.testing.assert_array_equal(spectrum.flux, image[0])
    row = LAMOST_ROWS[relative]
    meta = spectrum.meta
    release = {"v2.6.4": 1, "2.7.5": 2}[header["VERSPIPE"].strip()]
    assert meta.publisher_did == f"ivo://lamost.org/dr{release}/{Path(row['filename']).stem}"
    assert meta.obs_collection == f"LAMOST DR{release}"
    assert meta.target_name == row["designation"]
    assert (meta.ra, meta.dec) == (pytest.approx(float(row["ra"])), pytest.approx(float(row["dec"])))
    assert meta.header["CLASS"] == row["class"]
    assert meta.header["SUBCLASS"] == row["subclass"]
    assert float(meta.header["SN_R"]) == pytest.approx(float(row["snr_r"]))
    if float(row["z"]) == -9999:
        assert "Z" not in meta.header
    else:
        assert float(meta.header["Z"]) == pytest.approx(float(row["z"]))
    assert meta.medium is Medium.VACUUM
    assert meta.flux_calibration is FluxCalibration.RELATIVE
    assert meta.exposure == header["EXPTIME"]
    # DATE-BEG/DATE-END are Beijing local time: minus 8 h they bracket DATE-OBS, the median UTC
    # (give or take 5 minutes: one single-exposure file has it 3 minutes after the end).
    assert meta.t_min == pytest.approx(_mjd(header["DATE-BEG"]) - 8 / 24, abs=1e-6)
    assert meta.t_max == pytest.approx(_mjd(header["DATE-END"]) - 8 / 24, abs=1e-6)
    assert meta.t_min - 5 / 1440 < _mjd(header["DATE-OBS"]) < meta.t_max + 5 / 1440


def _mjd(iso):
    milliseconds = (np.datetime64(iso) - np.datetime64("1858-11-17T00:00:00")) / np.timedelta64(1, "ms")
    return milliseconds / 1000 / SECONDS_PER_DAY


def test_lamost_exten0_decides_what_row_3_is(shared_data):
    dr1_header, dr1_image = _header(shared_data / DR1_FILE), _data(shared_data / DR1_FILE)
    dr2_header, dr2_image = _header(shared_data / DR2_FILE), _data(shared_data / DR2_FILE)
    assert dr1_header["EXTEN0"].split()[2] == "Subcontinuum"
    assert dr2_header["EXTEN0"].split()[2] == "Wavelength"
    dr1, dr2 = read_spectrum(shared_data / DR1_FILE), read_spectrum(shared_data / DR2_FILE)
    np.testing.assert_array_equal(dr2.wavelength, dr2_image[2])
    assert np.all(np.abs(dr1_image[2] - 1.0) < 1.0)  # DR1's row 3 is a continuum near 1, no wavelength
    assert dr1.wavelength[0] == pytest.approx(3699.985, abs=1e-3)

    relabelled = _with_header(shared_data / DR1_FILE, EXTEN0="Flux Inverse Wavelength Andmask Ormask")
    with pytest.raises(SpectrumFormatError, match=r"not strictly monotonic|positive"):
        read_spectrum(relabelled, name="dr1-called-dr2.fits")
    relabelled = _with_header(shared_data / DR2_FILE, EXTEN0="Flux Inverse Subcontinuum Andmask Ormask")
    np.testing.assert_allclose(read_spectrum(relabelled).wavelength, dr2.wavelength, rtol=1e-13)


def test_lamost_unknown_class_with_no_redshift_reads(shared_data):
    spectrum = read_spectrum(shared_data / UNKNOWN_FILE)
    assert spectrum.meta.header["CLASS"] == "Unknown"
    assert "Z" not in spectrum.meta.header
    assert "Z_ERR" not in spectrum.meta.header


def test_votable_and_tsv_serialisations_equal_the_original(shared_data):
    original = read_spectrum(shared_data / ORIGINAL)
    for name in ("tg160037_counts_tabledata.vot", "tg160037_counts_binary.vot"):
        votable = read_spectrum(shared_data / SERIALIZATIONS / name)
        np.testing.assert_allclose(votable.wavelength, original.wavelength, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(votable.flux, original.flux.astype(np.float64))
        assert votable.meta.publisher_did == original.meta.publisher_did
        assert votable.meta.target_name == original.meta.target_name
        assert votable.meta.t_min == pytest.approx(original.meta.t_min, abs=1e-8)
        assert votable.meta.t_max == pytest.approx(original.meta.t_max, abs=1e-8)
        assert votable.meta.ra == pytest.approx(original.meta.ra, abs=1e-6)
        assert votable.meta.dec == pytest.approx(original.meta.dec, abs=1e-6)
        assert votable.meta.medium is Medium.AIR
        assert votable.meta.flux_unit == "ct"
        assert votable.meta.header["vhelio"] == original.meta.header["VHELIO"]
    counts = read_spectrum(shared_data / SERIALIZATIONS / "tg160037_counts.txt")
    np.testing.assert_allclose(counts.wavelength, original.wavelength, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(counts.flux, original.flux.astype(np.float64))


def test_normalised_csv_and_ascii_serialisations_read(shared_data):
    original = read_spectrum(shared_data / ORIGINAL)
    normalised = read_spectrum(shared_data / SERIALIZATIONS / "tg160037_normalized.csv")
    # Same pixels, wavelengths recomputed by the service (within 2e-4 Å), flux divided by a continuum.
    np.testing.assert_allclose(normalised.wavelength, original.wavelength, rtol=0, atol=1e-3)
    assert 0.9 < np.median(normalised.flux) < 1.1
    unidentified = read_spectrum(shared_data / SERIALIZATIONS / "unidentified_normalized.asc")
    assert len(unidentified.wavelength) == 1997
    assert unidentified.wavelength[0] == pytest.approx(6265.0, abs=0.05)
    assert unidentified.wavelength[-1] == pytest.approx(6777.3, abs=0.05)


def test_files_without_identity_get_a_stable_content_did(shared_data):
    path = shared_data / SERIALIZATIONS / "tg160037_normalized.csv"
    first, second = read_spectrum(path), read_spectrum(path.read_bytes(), name="again.csv")
    assert first.meta.publisher_did == second.meta.publisher_did
    assert first.meta.publisher_did.startswith("ivo://vocloud.local/spectrum/")
    assert len(first.meta.publisher_did.rsplit("/", 1)[1]) == 16
    other = read_spectrum(path.read_bytes() + b"\n")
    assert other.meta.publisher_did != first.meta.publisher_did


def test_iraf_file_prefers_ds_idpub(shared_data):
    content = _with_header(shared_data / ORIGINAL, DS_IDPUB="ivo://example.org/demo/spectrum-1")
    spectrum = read_spectrum(content, name="demo.fits")
    assert spectrum.meta.publisher_did == "ivo://example.org/demo/spectrum-1"
    assert spectrum.meta.instrument_name == "CCD700"
    assert spectrum.meta.obs_collection is None  # the collection follows the DID, not the header


def test_gzip_compressed_fits_reads_the_same(shared_data):
    original = read_spectrum(shared_data / ORIGINAL)
    packed = read_spectrum(gzip.compress((shared_data / ORIGINAL).read_bytes()), name="tg160037.fit.gz")
    np.testing.assert_array_equal(packed.wavelength, original.wavelength)
    assert packed.meta == original.meta


def test_malformed_real_files_give_clear_errors(shared_data):
    original = (shared_data / ORIGINAL).read_bytes()
    table = (shared_data / ONDREJOV / "fits-datalink-counts" / "ue130025.fits").read_bytes()
    cases = [
        (original[:100], "truncated FITS: 100 bytes"),
        (original[:3000], "no END card"),
        (original[:12000], "truncated FITS: the header announces 7988 bytes"),
        (table[:9000], "truncated FITS"),
        (table[:4000], "truncated FITS extension"),
    ]
    for content, message in cases:
        with pytest.raises(SpectrumFormatError, match=message) as raised:
            read_spectrum(content, name="cut.fits")
        assert str(raised.value).startswith("cut.fits: ")


def _fits_bytes(*hdus):
    buffer = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buffer)
    return buffer.getvalue()


def _table(**columns):
    fits_columns = [fits.Column(name=name, format="D", array=np.asarray(values)) for name, values in columns.items()]
    return _fits_bytes(fits.PrimaryHDU(), fits.BinTableHDU.from_columns(fits_columns))


def _image(data, **keywords):
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32))
    for key, value in keywords.items():
        hdu.header[key] = value
    return _fits_bytes(hdu)


def _with_header(path, **keywords):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdus:
            for key, value in keywords.items():
                hdus[0].header[key] = value
            buffer = io.BytesIO()
            hdus.writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (os.urandom(4096) + b"\x00", "binary content"),
        (b"SIMPLE  =" + bytes(range(256)) * 20, "no END card"),
        (_image(np.ones((100, 200))), r"2-D image \(200 x 100 pixels\) is not a 1-D spectrum"),
        (_image(np.ones(50)), "no wavelength calibration"),
        (_image(np.full(50, np.nan), CRVAL1=5000.0, CDELT1=1.0), "no finite flux value"),
        (_image(np.ones(50), CRVAL1=5000.0, CDELT1=0.0), "step CDELT1/CD1_1 is 0"),
        (_image(np.ones(50), CRVAL1=5000.0, CDELT1=1.0, CTYPE1="MULTISPE"), "multispec"),
        (_table(spectral=[5000.0, np.nan, 5002.0], flux=[1.0, 1.0, 1.0]), "1 of 3 wavelengths are not finite"),
        (_table(spectral=[5000.0, 5001.0], flux=[np.nan, np.nan]), "no finite flux value"),
        (_table(a=[1.0, 2.0], b=[3.0, 4.0]), "no spectral .* column"),
        (_fits_bytes(fits.PrimaryHDU()), "empty primary HDU"),
        (b"wavelength\n5000\n5001\n", "found one column"),
        (b"5000,1\n5001,x\n", "not a table of numbers"),
        (b"5000 1\n", "at least two points"),
        (b"5000 1\n5001 2\n5001 3\n", "not strictly monotonic"),
        (b"# nothing here\n", "no data lines"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not a VOTable"),
        (b"<?xml version='1.0'?><VOTABLE><RESOURCE><TABLE>", "not a readable VOTable"),
        (b"\x1f\x8b\x08\x00junk", "gzip"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_inputs_raise_a_format_error_that_says_what_is_wrong(content, message):
    with pytest.raises(SpectrumFormatError, match=message) as raised:
        read_spectrum(content, name="upload.bin")
    assert raised.value.source == "upload.bin"
    assert str(raised.value).startswith("upload.bin: ")


def test_tables_outside_the_fast_path_are_read_through_astropy():
    columns = [
        fits.Column(name="WAVE", format="D", array=np.array([6500.0, 6500.5, 6501.0])),
        fits.Column(name="FLUX", format="E", array=np.array([1.0, 2.0, 3.0], dtype=np.float32)),
        fits.Column(name="NOTE", format="4A", array=np.array(["a", "b", "c"])),
    ]
    spectrum = read_spectrum(_fits_bytes(fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)))
    np.testing.assert_array_equal(spectrum.wavelength, [6500.0, 6500.5, 6501.0])
    np.testing.assert_array_equal(spectrum.flux, [1.0, 2.0, 3.0])
    one_row = [
        fits.Column(name="loglam", format="3D", array=np.log10([[4000.0, 4001.0, 4002.0]])),
        fits.Column(name="flux", format="3D", array=np.array([[1.0, 2.0, 3.0]])),
    ]
    spectrum = read_spectrum(_fits_bytes(fits.PrimaryHDU(), fits.BinTableHDU.from_columns(one_row)))
    np.testing.assert_allclose(spectrum.wavelength, [4000.0, 4001.0, 4002.0])


def test_text_tables_take_units_from_the_header_and_any_order():
    spectrum = read_spectrum(b"wavelength [nm],flux\n500.2,3\n500.1,2\n500.0,1\n", name="nm.csv")
    np.testing.assert_allclose(spectrum.wavelength, [5000.0, 5001.0, 5002.0])
    np.testing.assert_array_equal(spectrum.flux, [1.0, 2.0, 3.0])
    tabbed = read_spectrum(b"# lambda\tflux\t err\n5000\t1\t0.1\r\n5001\t2\t0.1\r\n")
    np.testing.assert_array_equal(tabbed.wavelength, [5000.0, 5001.0])


def test_votable_columns_found_by_utype_without_prefix_and_converted_to_angstrom():
    document = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<PARAM name="obs_publisher_did" datatype="char" arraysize="*" value="ivo://example.org/x?1"/>
<PARAM name="target" datatype="char" arraysize="*" utype="Spectrum.Target.Name" value="Vega"/>
<FIELD name="f" datatype="double" unit="W/m2/nm" utype="Spectrum.Data.FluxAxis.Value"/>
<FIELD name="w" datatype="double" unit="nm" utype="SPECTRUM.DATA.SPECTRALAXIS.VALUE">
<DESCRIPTION>Vacuum wavelength</DESCRIPTION></FIELD>
<DATA><TABLEDATA><TR><TD>1.5</TD><TD>500.0</TD></TR><TR><TD>2.5</TD><TD>500.1</TD></TR></TABLEDATA></DATA>
</TABLE></RESOURCE></VOTABLE>"""
    spectrum = read_spectrum(document)
    np.testing.assert_allclose(spectrum.wavelength, [5000.0, 5001.0])
    np.testing.assert_array_equal(spectrum.flux, [1.5, 2.5])
    assert spectrum.meta.publisher_did == "ivo://example.org/x?1"
    assert spectrum.meta.target_name == "Vega"
    assert spectrum.meta.medium is Medium.VACUUM
    assert u.Unit(spectrum.meta.flux_unit, format="vounit") == u.W / u.m**2 / u.nm
