"""The vcml VO-DML model is valid and consistent; MIVOT blocks validate, match the model and read back in pyvo."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvo.mivot.writer
from astropy.io.votable import parse
from lxml import etree

from vocloud.server.ml.iteration import CANDIDATE_COLUMNS, LABEL_COLUMNS, probability_column
from vocloud.server.ml.mivot import MIVOT_NAMESPACE, MODEL_NAME, candidates_mapping, labels_mapping
from vocloud.server.votable import FieldSpec, ResultDocument

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "vodml" / "vocloud-ml.vo-dml.xml"
VODML_SCHEMA = REPO / "vodml" / "vo-dml-v1.xsd"
MIVOT_SCHEMA = Path(pyvo.mivot.writer.__file__).parent / "mivot-v1.xsd"

XS = "{http://www.w3.org/2001/XMLSchema}"
M = f"{{{MIVOT_NAMESPACE}}}"
IVOA_PRIMITIVES = frozenset(
    {"string", "real", "integer", "boolean", "datetime", "anyURI", "nonnegativeInteger", "rational", "complex"}
)
"""vodml-ids of the primitive types of the IVOA base model (IVOA-v1.vo-dml.xml) that a model may refer to."""

CLASSES = ("absorption", "emission", "double-peak")


# --- helpers ---------------------------------------------------------------------------------------------


def mivot_schema() -> etree.XMLSchema:
    """pyvo's MIVOT 1.0 schema, brought down to the XSD 1.0 that lxml validates.

    The schema is XSD 1.1: its ``xs:assert``s are dropped (the ones our blocks
    could break are checked by `check_mivot_assertions` instead) and its
    ``xs:all`` of repeatable elements becomes the equivalent repeated choice.
    """
    document = etree.parse(str(MIVOT_SCHEMA))
    for element in list(document.iter(f"{XS}assert")):
        element.getparent().remove(element)
    for element in document.iter(f"{XS}all"):
        element.tag = f"{XS}choice"
        element.set("minOccurs", "0")
        element.set("maxOccurs", "unbounded")
    return etree.XMLSchema(document)


def check_mivot_assertions(block: etree._Element) -> None:
    """The schema's XSD 1.1 assertions on the elements our blocks use, in XPath 1.0."""
    report = block.findall(f"{M}REPORT")
    assert len(report) == 1
    assert report[0].get("status") in {"OK", "FAILED"}
    for model in block.iter(f"{M}MODEL"):
        assert model.get("name")
        assert model.get("url", "x") != ""
    for element in block.iter(f"{M}INSTANCE", f"{M}ATTRIBUTE"):
        assert element.get("dmtype")
    for attribute in block.iter(f"{M}ATTRIBUTE"):
        assert attribute.get("dmrole")
        assert (attribute.get("ref") is None) != (attribute.get("value") is None)
        assert attribute.get("ref", "x") != ""
    for parent in (*block.iter(f"{M}TEMPLATES"), *block.iter(f"{M}COLLECTION")):
        assert all(child.get("dmrole") is None for child in parent)
    for instance in block.iter(f"{M}INSTANCE"):
        assert all(child.get("dmrole") for child in instance)
    dmids = [element.get("dmid") for element in block.iter() if element.get("dmid") is not None]
    assert len(dmids) == len(set(dmids))


def model_tree() -> etree._ElementTree:
    return etree.parse(str(MODEL))


def model_roles() -> dict[str, dict[str, tuple[str, str, int, int]]]:
    """Roles of every type of the model: type vodml-id → role vodml-id → (kind, datatype ref, min, max)."""
    types: dict[str, dict[str, tuple[str, str, int, int]]] = {}
    for element in model_tree().getroot():
        if element.tag not in {"objectType", "dataType"}:
            continue
        roles = {}
        for role in element:
            if role.tag in {"attribute", "composition", "reference"}:
                roles[role.findtext("vodml-id")] = (
                    role.tag,
                    role.findtext("datatype/vodml-ref"),
                    int(role.findtext("multiplicity/minOccurs")),
                    int(role.findtext("multiplicity/maxOccurs")),
                )
        types[element.findtext("vodml-id")] = roles
    return types


def without_prefix(reference: str) -> str:
    prefix, _, name = reference.partition(":")
    assert prefix == MODEL_NAME, reference
    return name


def check_instance(instance: etree._Element, types: dict[str, dict[str, tuple[str, str, int, int]]]) -> None:
    """An INSTANCE maps a type of the model, every child a role of that type with the declared datatype."""
    type_id = without_prefix(instance.get("dmtype"))
    assert type_id in types, f"{type_id} is not a type of the model"
    roles = types[type_id]
    seen: dict[str, int] = {}
    for child in instance:
        role_id = without_prefix(child.get("dmrole"))
        assert role_id in roles, f"{role_id} is not a role of {type_id}"
        kind, datatype, _, maximum = roles[role_id]
        match etree.QName(child).localname:
            case "ATTRIBUTE":
                assert kind == "attribute"
                assert child.get("dmtype") == datatype
                seen[role_id] = seen.get(role_id, 0) + 1
            case "INSTANCE":
                assert kind in {"attribute", "composition"}
                assert child.get("dmtype") == datatype
                assert maximum == 1
                seen[role_id] = seen.get(role_id, 0) + 1
                check_instance(child, types)
            case "COLLECTION":
                assert kind == "composition"
                assert maximum != 1
                for item in child:
                    assert item.get("dmtype") == datatype
                    check_instance(item, types)
                seen[role_id] = seen.get(role_id, 0) + len(child)
            case other:
                pytest.fail(f"Unexpected {other} in an INSTANCE")
    for role_id, (_, _, minimum, maximum) in roles.items():
        assert seen.get(role_id, 0) >= minimum, f"mandatory {role_id} is not mapped"
        assert maximum < 0 or seen.get(role_id, 0) <= maximum, f"{role_id} is mapped too often"


def candidate_columns(classes: Sequence[str]) -> list[str]:
    columns = list(CANDIDATE_COLUMNS)
    at = columns.index("predicted_class") + 1
    columns[at:at] = [probability_column(name) for name in classes]
    return columns


def candidate_fields(classes: Sequence[str]) -> list[FieldSpec]:
    kinds = {"id": "char", "target": "char", "access_url": "char", "predicted_class": "char", "rank": "int",
             "oracle": "boolean", "precision_sample": "boolean"}  # fmt: skip
    units = {"ra": "deg", "dec": "deg"}
    return [
        FieldSpec(
            name=name,
            datatype=kinds.get(name, "double"),
            unit=units.get(name),
            arraysize="*" if kinds.get(name) == "char" else None,
        )
        for name in candidate_columns(classes)
    ]


def label_fields() -> list[FieldSpec]:
    """FIELDs of a label history, as a session publishes it."""
    return [
        FieldSpec(
            name=name,
            datatype="long" if name in {"seq", "iteration"} else "char",
            arraysize=None if name in {"seq", "iteration"} else "*",
            xtype="timestamp" if name == "posted" else None,
        )
        for name in LABEL_COLUMNS
    ]


def candidate_rows(classes: Sequence[str], rows: int, seed: int = 7) -> dict[str, Any]:
    """Plausible candidates: probabilities from a Dirichlet draw, the predicted class their argmax."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(len(classes)), size=rows)
    values: dict[str, Any] = {
        "id": [f"ivo://vocloud.test/demo?spectrum-{rng.integers(1_000_000)}-{k}" for k in range(rows)],
        "ra": rng.uniform(0, 360, rows),
        "dec": rng.uniform(-90, 90, rows),
        "target": [f"HD {k}" for k in range(rows)],
        "access_url": [f"http://h/datalink?ID=x{k}" for k in range(rows)],
        "predicted_class": [classes[int(k)] for k in probabilities.argmax(axis=1)],
        "entropy": rng.uniform(0, np.log(len(classes)), rows),
        "x": rng.normal(size=rows),
        "y": rng.normal(size=rows),
        "rank": rng.permutation(rows) + 1,
        "oracle": rng.integers(0, 2, rows).astype(bool),
        "precision_sample": rng.integers(0, 2, rows).astype(bool),
    }
    values["bald"] = values["entropy"] * rng.uniform(0, 1, rows)
    values["variation_ratio"] = rng.uniform(0, 1 - 1 / len(classes), rows)
    for index, name in enumerate(classes):
        values[probability_column(name)] = probabilities[:, index]
    return values


def mivot_rows(document: bytes) -> Iterator[Any]:
    """The MivotInstance of every row of a document, as pyvo's MIVOT viewer builds it.

    pyvo updates one instance in place from row to row: read each before the
    next. It lists the nested INSTANCEs of the template after the row's own.
    """
    from pyvo.mivot.viewer import MivotViewer
    from pyvo.utils import activate_features

    activate_features("MIVOT")
    viewer = MivotViewer(parse(io.BytesIO(document)))
    while (instances := viewer.next_row_view()) is not None:
        yield instances[0]


# --- the VO-DML model ------------------------------------------------------------------------------------


def test_model_validates_against_the_vodml_schema() -> None:
    schema = etree.XMLSchema(etree.parse(str(VODML_SCHEMA)))
    tree = model_tree()
    assert schema.validate(tree), schema.error_log
    root = tree.getroot()
    assert root.findtext("name") == MODEL_NAME
    assert [i.findtext("name") for i in root.findall("import")] == ["ivoa"]


def test_the_vodml_schema_rejects_a_broken_model() -> None:
    schema = etree.XMLSchema(etree.parse(str(VODML_SCHEMA)))
    tree = model_tree()
    tree.getroot().find("objectType/attribute").remove(tree.getroot().find("objectType/attribute/multiplicity"))
    assert not schema.validate(tree)


def test_model_ids_are_unique_and_every_reference_resolves() -> None:
    root = model_tree().getroot()
    ids = [element.text for element in root.iter("vodml-id")]
    assert len(ids) == len(set(ids))
    for element in root.iter("objectType", "dataType"):
        type_id = element.findtext("vodml-id")
        for role in element.findall("*/vodml-id"):
            assert role.text.startswith(f"{type_id}."), f"role {role.text} is not named after {type_id}"
    references = [element.text for element in root.iter("vodml-ref")]
    assert references
    for reference in references:
        prefix, _, name = reference.partition(":")
        match prefix:
            case "vcml":
                assert name in ids, f"{reference} does not resolve"
            case "ivoa":
                assert name in IVOA_PRIMITIVES, f"{reference} is not an IVOA primitive type"
            case _:
                pytest.fail(f"{reference} refers to a model that is not imported")


def test_every_model_element_is_described() -> None:
    root = model_tree().getroot()
    assert (root.findtext("description") or "").strip()
    described = [e for e in root.iter() if e.find("vodml-id") is not None]
    assert len(described) > 20
    for element in described:
        assert len((element.findtext("description") or "").strip()) > 10, element.findtext("vodml-id")


# --- the MIVOT blocks ------------------------------------------------------------------------------------


BLOCKS = {
    "candidates": lambda: candidates_mapping(CLASSES, iteration=3, session_id="s-1", mc_samples=20),
    "candidates with url": lambda: candidates_mapping(
        ["star", "galaxy"],
        iteration=1,
        session_id="x",
        mc_samples=1,
        model_url="http://127.0.0.1:8080/vodml/vocloud-ml.vo-dml.xml",
        table_ref="candidates",
    ),
    "labels": labels_mapping,
    "labels of a session": lambda: labels_mapping(session_id="s-1", model_url="http://h/vodml/vocloud-ml.vo-dml.xml"),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_validate_against_the_mivot_schema(name: str) -> None:
    block = etree.fromstring(BLOCKS[name]().encode())
    schema = mivot_schema()
    assert schema.validate(block), schema.error_log
    check_mivot_assertions(block)


def test_the_mivot_schema_rejects_a_broken_block() -> None:
    block = etree.fromstring(BLOCKS["candidates"]().encode())
    block.insert(0, etree.Element(f"{M}TEMPLATES"))  # TEMPLATES before REPORT and MODEL
    assert not mivot_schema().validate(block)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_map_only_what_the_model_defines(name: str) -> None:
    block = etree.fromstring(BLOCKS[name]().encode())
    models = {model.get("name") for model in block.iter(f"{M}MODEL")}
    assert models == {"ivoa", MODEL_NAME}
    templates = block.findall(f"{M}TEMPLATES")
    assert len(templates) == 1
    instances = templates[0].findall(f"{M}INSTANCE")
    assert len(instances) == 1
    check_instance(instances[0], model_roles())


def test_candidates_block_refers_to_every_uncertainty_and_probability_column() -> None:
    classes = ("Be star", "Be_star2", "normal")
    block = etree.fromstring(candidates_mapping(classes, iteration=2, session_id="s", mc_samples=20).encode())
    refs = {a.get("ref") for a in block.iter(f"{M}ATTRIBUTE") if a.get("ref")}
    assert refs <= set(candidate_columns(classes))
    assert {probability_column(c) for c in classes} | {"id", "predicted_class", "entropy", "bald"} <= refs
    names = [a.get("value") for a in block.iter(f"{M}ATTRIBUTE") if a.get("dmrole").endswith(".className")]
    assert names == list(classes)
    assert block.find(f"{M}TEMPLATES").get("tableref") == "results"


def test_labels_block_refers_to_label_columns_only() -> None:
    block = etree.fromstring(labels_mapping(table_ref="history").encode())
    refs = [a.get("ref") for a in block.iter(f"{M}ATTRIBUTE")]
    assert sorted(refs) == sorted(LABEL_COLUMNS)
    assert block.find(f"{M}TEMPLATES").get("tableref") == "history"
    assert block.find(f"{M}MODEL[@name='{MODEL_NAME}']").get("url") is None


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: candidates_mapping([], iteration=1, session_id="s", mc_samples=20), "at least one"),
        (lambda: candidates_mapping(["a b", "a_b"], iteration=1, session_id="s", mc_samples=20), "distinct"),
        (lambda: candidates_mapping(CLASSES, iteration=-1, session_id="s", mc_samples=20), "negative"),
        (lambda: candidates_mapping(CLASSES, iteration=1, session_id="s", mc_samples=-2), "negative"),
        (lambda: candidates_mapping(CLASSES, iteration=1, session_id="s", mc_samples=2, table_ref=""), "table_ref"),
        (lambda: labels_mapping(model_url=""), "model_url"),
    ],
)
def test_bad_arguments_are_refused_by_name(call: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call()


def test_constants_are_escaped() -> None:
    text = candidates_mapping(['Be "shell" > 2', "a&b"], iteration=1, session_id="<s>", mc_samples=3)
    block = etree.fromstring(text.encode())
    values = {a.get("value") for a in block.iter(f"{M}ATTRIBUTE")}
    assert {'Be "shell" > 2', "a&b", "<s>"} <= values


# --- annotated documents ---------------------------------------------------------------------------------


def test_candidates_read_back_through_pyvo_mivot() -> None:
    classes = (*CLASSES, 'Be "shell"')
    rows = 5
    values = candidate_rows(classes, rows)
    document = ResultDocument(
        fields=candidate_fields(classes),
        mivot=candidates_mapping(classes, iteration=4, session_id="f3a9", mc_samples=20),
    )
    data = document.write(values, rows=rows)
    table = parse(io.BytesIO(data)).get_first_table().to_table()  # warnings are errors here
    assert len(table) == rows
    read = 0
    for k, row in enumerate(mivot_rows(data)):
        read += 1
        assert row.dmtype == "vcml:Classification"
        assert row.spectrum.value == values["id"][k]
        assert row.predictedClass.value == values["predicted_class"][k]
        assert int(row.iteration.value) == 4
        assert row.sessionId.value == "f3a9"
        assert int(row.rank.value) == values["rank"][k]
        assert row.oracleBatch.value == bool(values["oracle"][k])
        assert row.precisionSample.value == bool(values["precision_sample"][k])
        probabilities = {p.className.value: p.probability.value for p in row.classProbability}
        assert probabilities == pytest.approx({c: values[probability_column(c)][k] for c in classes}, rel=1e-12)
        assert max(probabilities, key=probabilities.__getitem__) == row.predictedClass.value
        assert row.uncertainty.entropy.value == pytest.approx(values["entropy"][k], rel=1e-12)
        assert row.uncertainty.bald.value == pytest.approx(values["bald"][k], rel=1e-12)
        assert row.uncertainty.variationRatio.value == pytest.approx(values["variation_ratio"][k], rel=1e-12)
        assert int(row.uncertainty.mcSamples.value) == 20
        assert (row.projection.x.value, row.projection.y.value) == pytest.approx((values["x"][k], values["y"][k]))
    assert read == rows


def test_labels_read_back_through_pyvo_mivot() -> None:
    fields = label_fields()
    values = {
        "seq": [1, 2, 3],
        "id": ["ivo://t/a", "ivo://t/b", "ivo://t/a"],
        "label": ["emission", "absorption", "double-peak"],
        "labeller": ["Petr", None, "Petr"],
        "comment": [None, "weak lines", "second look: two peaks"],
        "owner": ["anonymous"] * 3,
        "posted": ["2025-11-22T10:00:00.000", "2025-11-22T10:00:01.500", "2025-11-22T11:30:00.000"],
        "iteration": [0, 1, 1],
    }
    data = ResultDocument(fields=fields, mivot=labels_mapping(session_id="s9")).write(values, rows=3)
    parse(io.BytesIO(data))
    seen = [row.to_dict() for row in mivot_rows(data)]
    assert [row["dmtype"] for row in seen] == ["vcml:OracleLabel"] * 3

    def column(role: str) -> list[Any]:
        return [row[role]["value"] for row in seen]

    assert [int(v) for v in column("sequence")] == values["seq"]
    assert column("spectrum") == values["id"]
    assert column("label") == values["label"]
    assert [v or None for v in column("labeller")] == values["labeller"]
    assert [v or None for v in column("comment")] == values["comment"]
    assert [str(v) for v in column("posted")] == values["posted"]
    assert [int(v) for v in column("iteration")] == values["iteration"]
    assert set(column("sessionId")) == {"s9"}


def test_the_block_sits_in_a_meta_resource_before_the_table() -> None:
    document = ResultDocument(
        fields=candidate_fields(CLASSES),
        mivot=candidates_mapping(CLASSES, iteration=1, session_id="s", mc_samples=20),
    )
    values = candidate_rows(CLASSES, 4)
    for status, rows in (("OK", 4), ("OVERFLOW", 2), ("OK", 0), ("OK", 4)):
        data = document.write({k: v[:rows] for k, v in values.items()}, rows=rows, status=status)
        root = etree.fromstring(data)
        v = f"{{{root.nsmap[None]}}}"
        results = root.find(f"{v}RESOURCE[@type='results']")
        children = [etree.QName(child).localname for child in results]
        assert children.index("RESOURCE") < children.index("TABLE")
        assert results.find(f"{v}RESOURCE[@type='meta']/{M}VODML") is not None
        assert len(root.findall(f".//{v}TABLE")) == 1
        assert len(root.findall(f".//{v}TR")) == rows
        assert results.find(f"{v}INFO[@name='QUERY_STATUS']").get("value") == status
        assert len(parse(io.BytesIO(data)).get_first_table().array) == rows


def test_documents_without_mivot_have_no_meta_resource() -> None:
    data = ResultDocument(fields=candidate_fields(CLASSES)).write(candidate_rows(CLASSES, 2), rows=2)
    assert b'RESOURCE type="meta"' not in data
    assert b"VODML" not in data


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ("not xml at all", "well-formed"),
        ("<VODML xmlns='http://www.ivoa.net/xml/mivot'><REPORT status='OK'>", "well-formed"),
        ("<VODML><REPORT status='OK'/></VODML>", "namespace"),
    ],
)
def test_a_malformed_block_is_refused(block: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ResultDocument(fields=candidate_fields(CLASSES), mivot=block)
