"""The parts of the session service on their own: selection test, label readers, declarations, the job listener."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import jsonschema
import pytest

from tests.server.sessions.support import SCHEMA
from tests.support.uws import create, wait_for_phase
from vocloud.server.archive.demo_bootstrap import fill_with_demo
from vocloud.server.archive.service import Archive
from vocloud.server.archive.store import ConeQuery
from vocloud.server.errors import PayloadTooLargeError, UsageError
from vocloud.server.keys import SERVICE
from vocloud.server.ml.iteration import LABEL_COLUMNS
from vocloud.server.ml.preprocess_job import _query as preprocess_query
from vocloud.server.sessions.labels_input import (
    LabelFormat,
    UnsupportedMediaTypeError,
    collapse,
    format_for,
    parse_labels,
    sniff,
)
from vocloud.server.sessions.models import NewLabel
from vocloud.server.sessions.render import LABEL_FIELDS
from vocloud.server.sessions.selection import Selection


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """A demo archive of 200 spectra (metadata and files), shared by the selection tests."""
    root = tmp_path_factory.mktemp("selection")
    archive = Archive(root / "archive")
    fill_with_demo(archive, root / "demo", count=200)
    yield archive
    archive.close()


def _selections(archive: Archive) -> list[dict[str, str]]:
    records = archive.store.search(ConeQuery())
    first, other = records[0], records[len(records) // 2]
    assert first.s_ra is not None and first.s_dec is not None and first.target_name is not None
    return [
        {},
        {"pos": f"{first.s_ra},{first.s_dec}", "size": "30"},
        {"pos": f"{other.s_ra},{other.s_dec}", "size": "90"},
        {"pos": "0,90", "size": "120"},
        {"pos": "359.9,0", "size": "40"},  # across RA 0
        {"band": f"{first.em_max}/"},
        {"band": f"/{first.em_min}"},
        {"band": f"{first.em_max}"},  # one wavelength: the spectra covering it
        {"targetname": first.target_name.swapcase()},
        {"targetname": first.target_name, "pos": f"{first.s_ra},{first.s_dec}", "size": "1"},
        {"collection": "none such"},
    ]


def test_selection_matches_exactly_what_the_archive_search_returns(archive):
    """For every selection, the DIDs that `Selection.matches` accepts are those the iteration's query returns."""
    everything = archive.store.search(ConeQuery())
    for values in _selections(archive):
        selection = Selection.from_request(values)
        returned = {r.obs_publisher_did for r in archive.store.search(selection.query)}
        accepted = {r.obs_publisher_did for r in everything if selection.matches(r)}
        assert accepted == returned, values
        if values and "collection" not in values:
            assert 0 < len(returned) < len(everything), values


def test_selection_round_trips_through_preprocess_parameters(archive):
    """Stored as preprocess parameters, a selection gives the same query as the preprocess job builds from them."""
    for values in _selections(archive):
        selection = Selection.from_request(values)
        parameters = selection.parameters()
        assert Selection.from_parameters(parameters) == selection, values
        assert preprocess_query(parameters) == selection.query, values


def test_selection_errors_name_the_ssap_parameter():
    """Bad values are refused with the parameter's SSAP name."""
    for values, word in [
        ({"pos": "1,2,3"}, "POS"),
        ({"pos": "10,95"}, "POS"),
        ({"band": "x/"}, "BAND"),
        ({"targetname": "x" * 201}, "TARGETNAME"),
        ({"collection": "x" * 201}, "COLLECTION"),
    ]:
        with pytest.raises(UsageError, match=word):
            Selection.from_request(values)


def test_label_readers_agree_across_formats():
    """The same labels read from CSV, JSON and VOTable (columns in any case and order, extras ignored)."""
    expected = [
        NewLabel(id="ivo://a/1", label="emission", labeller="Ann", comment=None),
        NewLabel(id="ivo://a/2", label="absorption", labeller=None, comment="faint, maybe"),
    ]
    as_csv = (
        b"\xef\xbb\xbfExtra,LABEL,Id,labeller,Comment\n1,emission,ivo://a/1,Ann,\n"
        b'\n2, absorption ,ivo://a/2,,"faint, maybe"\n'
    )
    as_json = (
        b'[{"id": "ivo://a/1", "label": "emission", "labeller": "Ann", "x": 1},'
        b' {"ID": "ivo://a/2", "label": "absorption", "comment": "faint, maybe", "labeller": null}]'
    )
    as_votable = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE type="results"><TABLE>
<FIELD name="label" datatype="char" arraysize="*"/><FIELD name="id" ID="col_id" datatype="char" arraysize="*"/>
<FIELD name="labeller" datatype="char" arraysize="*"/><FIELD name="comment" datatype="unicodeChar" arraysize="*"/>
<DATA><TABLEDATA><TR><TD>emission</TD><TD>ivo://a/1</TD><TD>Ann</TD><TD/></TR>
<TR><TD>absorption</TD><TD>ivo://a/2</TD><TD/><TD>faint, maybe</TD></TR></TABLEDATA></DATA></TABLE>
</RESOURCE></VOTABLE>"""
    for data in (as_csv, as_json, as_votable):
        assert parse_labels(data, sniff(data)) == expected, data[:40]


def test_media_types_choose_the_reader():
    """Content-Type decides (parameters ignored); anything else is a 415."""
    assert format_for("text/csv; charset=utf-8") == LabelFormat.CSV
    assert format_for("Application/JSON") == LabelFormat.JSON
    assert format_for("application/x-votable+xml") == LabelFormat.VOTABLE
    assert format_for("text/xml") == LabelFormat.VOTABLE
    for media_type in ("text/html", "application/octet-stream", ""):
        with pytest.raises(UnsupportedMediaTypeError) as caught:
            format_for(media_type)
        assert caught.value.status == 415


def test_label_count_is_bounded():
    """A post of more labels than allowed is refused as too large, at the first label over the bound."""
    body = b"id,label\n" + b"".join(f"ivo://x/{i},a\n".encode() for i in range(11))
    assert len(parse_labels(body, LabelFormat.CSV, max_labels=11)) == 11
    with pytest.raises(PayloadTooLargeError, match="More than 10"):
        parse_labels(body, LabelFormat.CSV, max_labels=10)


def test_collapse_merges_repeats_and_names_conflicts():
    """The same id with the same label is one label (the last kept); with different labels it is refused."""
    merged = collapse([
        NewLabel(id="a", label="x", comment="first"), NewLabel(id="b", label="y"), NewLabel(id="a", label="x"),
    ])  # fmt: skip
    assert merged == [NewLabel(id="b", label="y"), NewLabel(id="a", label="x")]
    many = [NewLabel(id=f"id{i}", label=label) for i in range(25) for label in ("x", "y")]
    with pytest.raises(UsageError) as caught:
        collapse(many)
    assert caught.value.message.startswith("25 ids ('id0', 'id1',")
    assert "and 5 more" in caught.value.message and "'id20'" not in caught.value.message


def test_declarations_match_the_ml_side():
    """The label history's columns follow the ML contract, and the session schema is a valid JSON Schema."""
    assert tuple(f.name for f in LABEL_FIELDS) == LABEL_COLUMNS
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


async def test_job_listeners_hear_terminal_phases_and_cannot_break_the_service(client, caplog):
    """A listener is called once per job end, after the phase is stored; one that raises is only logged."""
    service = client.server.app[SERVICE]
    heard: list[tuple[str, str, str]] = []

    def broken(job):
        raise RuntimeError("listener bug")

    def listener(job):
        stored = service.get(job.kind, job.job_id, job.owner)
        heard.append((job.job_id, job.phase.value, stored.phase.value))

    service.add_listener(broken)
    service.add_listener(listener)
    with caplog.at_level(logging.ERROR, logger="vocloud.server.uws.service"):
        done = await create(client, "sleep", phase="RUN", seconds="0")
        failed = await create(client, "fail", phase="RUN", how="usage")
        held = await create(client, "sleep", phase="RUN", seconds="30")
        await wait_for_phase(client, done, "COMPLETED")
        await wait_for_phase(client, failed, "ERROR")
        await wait_for_phase(client, held, "EXECUTING")
        assert (await client.post(f"{held}/phase", data={"PHASE": "ABORT"}, allow_redirects=False)).status == 303
        service.remove_listener(listener)
        after = await create(client, "sleep", phase="RUN", seconds="0")
        await wait_for_phase(client, after, "COMPLETED")
        await asyncio.sleep(0)

    ids = [Path(p).name for p in (done, failed, held)]
    assert sorted(heard) == sorted([(ids[0], "COMPLETED", "COMPLETED"), (ids[1], "ERROR", "ERROR"),
                                    (ids[2], "ABORTED", "ABORTED")])  # fmt: skip
    assert sum("listener" in r.getMessage().lower() and "failed" in r.getMessage() for r in caplog.records) == 4
