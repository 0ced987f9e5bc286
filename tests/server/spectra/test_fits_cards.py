"""The fast FITS header, image and table parsers give what astropy.io.fits gives, on every real file and edge cases."""

import io
import math
import warnings

import numpy as np
import pytest
from astropy.io import fits

from tests.support.shared_files import shared_fits_files
from vocloud.server.spectra.fits_cards import FitsCards
from vocloud.server.spectra.fits_columns import binary_table_columns
from vocloud.server.spectra.fits_image import primary_image

FITS_FILES = shared_fits_files()
COMMENTARY = {"", "COMMENT", "HISTORY"}


@pytest.mark.parametrize("relative", FITS_FILES, ids=str)
def test_every_card_value_and_comment_equals_astropys(shared_data, relative):
    content = (shared_data / relative).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(content)) as hdus:
            for index, hdu in enumerate(hdus):
                cards = FitsCards.from_bytes(content, hdus.fileinfo(index)["hdrLoc"])
                assert cards.data_offset == hdus.fileinfo(index)["datLoc"]
                assert cards.data_size() == hdus.fileinfo(index)["datSpan"] - (-cards.data_size() % 2880)
                seen = set()
                for card in hdu.header.cards:
                    if card.keyword in COMMENTARY or card.keyword in seen:
                        continue
                    seen.add(card.keyword)
                    expected = hdu.header[card.keyword]
                    expected = None if isinstance(expected, fits.card.Undefined) else expected
                    value = cards.get(card.keyword)
                    assert type(value) is type(expected), card.keyword
                    if isinstance(expected, float):
                        assert math.isclose(value, expected, rel_tol=1e-15), card.keyword
                    else:
                        assert value == expected, card.keyword
                    assert cards.comment(card.keyword) == hdu.header.comments[card.keyword]


@pytest.mark.parametrize("relative", FITS_FILES, ids=str)
def test_primary_images_equal_astropys_data(shared_data, relative):
    content = (shared_data / relative).read_bytes()
    cards = FitsCards.from_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = fits.getdata(io.BytesIO(content), ext=0) if cards.get("NAXIS") else None
    data = primary_image(content, cards)
    if expected is None:
        assert data is None
    else:
        assert data.dtype == expected.dtype
        np.testing.assert_array_equal(data, expected)


def _card(text):
    return text.ljust(80).encode("ascii")


def test_strings_logicals_numbers_and_continued_strings():
    header = b"".join(
        _card(text)
        for text in (
            "SIMPLE  =                    T / conforms",
            "A       = 'it''s  '           / quoted quote, trailing blanks dropped",
            "B       =              1.5D+03",
            "C       =                  -42",
            "D       =                      / nothing",
            "E       = 'a slash / inside'   / real comment",
            "LONG    = 'first part &'",
            "CONTINUE  'second part'",
            "A       = 'repeated: the first wins'",
            "HIERARCH ESO DET CHIP = 'skipped'",
            "END",
        )
    )
    cards = FitsCards.from_bytes(header.ljust(2880))
    assert cards.get("SIMPLE") is True
    assert cards.get("A") == "it's"
    assert cards.get("B") == 1500.0
    assert cards.get("C") == -42
    assert cards.get("D") is None and "D" in cards
    assert cards.get("E") == "a slash / inside"
    assert cards.comment("E") == "real comment"
    assert cards.get("LONG") == "first part second part"
    assert cards.get("MISSING", 7) == 7
    assert cards.data_offset == 2880


def test_a_header_without_end_is_refused():
    with pytest.raises(ValueError, match="no END card"):
        FitsCards.from_bytes(_card("SIMPLE  =                    T") * 36)


def test_scaled_and_blank_integer_images_are_converted_like_astropy():
    hdu = fits.PrimaryHDU(np.array([[1, 2, 3, -99]], dtype=np.int16))
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    hdu.header["BLANK"] = -99
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    content = buffer.getvalue()
    data = primary_image(content, FitsCards.from_bytes(content))
    np.testing.assert_array_equal(data, [[10.5, 11.0, 11.5, np.nan]])
    truncated = content[: 2880 + 2]
    assert primary_image(truncated, FitsCards.from_bytes(truncated)) is None


@pytest.mark.parametrize("relative", [path for path in FITS_FILES if "datalink" in str(path)], ids=str)
def test_binary_table_columns_equal_astropys(shared_data, relative):
    content = (shared_data / relative).read_bytes()
    primary = FitsCards.from_bytes(content)
    columns = binary_table_columns(content, FitsCards.from_bytes(content, primary.data_offset))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = fits.getdata(io.BytesIO(content), ext=1)
    assert list(columns) == list(expected.columns.names)
    for name, values in columns.items():
        np.testing.assert_array_equal(values, expected[name])


def _table_bytes(*columns):
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(list(columns))]).writeto(buffer)
    return buffer.getvalue()


def _header_block(*cards):
    lines = [f"{key:<8}= {value!s:>20}" if key != "END" else "END" for key, value in cards]
    return "".join(line.ljust(80) for line in lines).ljust(2880).encode("ascii")


def test_scaled_null_and_vector_columns_are_read_and_others_declined():
    primary = _header_block(("SIMPLE", "T"), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", "T"), ("END", None))
    table = _header_block(
        *[("XTENSION", "'BINTABLE'"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", 16), ("NAXIS2", 3)],
        *[("PCOUNT", 0), ("GCOUNT", 1), ("TFIELDS", 3)],
        *[("TTYPE1", "'scaled'"), ("TFORM1", "'J'"), ("TSCAL1", 2.0), ("TZERO1", 1.0)],
        *[("TTYPE2", "'counts'"), ("TFORM2", "'J'"), ("TNULL2", -1), ("TTYPE3", "'pair'"), ("TFORM3", "'2E'")],
        ("END", None),
    )
    layout = [("a", ">i4"), ("b", ">i4"), ("c", ">f4", 2)]
    rows = np.array([(1, 1, (1, 2)), (2, 2, (3, 4)), (3, -1, (5, 6))], dtype=layout)
    content = primary + table + rows.tobytes().ljust(2880, b"\0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(fits.getdata(io.BytesIO(content), ext=1)["scaled"], [3.0, 5.0, 7.0])
    columns = binary_table_columns(content, FitsCards.from_bytes(content, 2880))
    np.testing.assert_array_equal(columns["scaled"], [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(columns["counts"], [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(columns["pair"], [[1, 2], [3, 4], [5, 6]])
    content = _table_bytes(fits.Column(name="label", format="8A", array=np.array(["a", "b"])))
    primary_cards = FitsCards.from_bytes(content)
    assert binary_table_columns(content, FitsCards.from_bytes(content, primary_cards.data_offset)) is None
