"""MIVOT 1.0 annotations that map the columns of vocloud's ML tables to the ``vcml`` VO-DML model.

A candidates VOTable is a plain table to TOPCAT, but a client that reads MIVOT
(IVOA Recommendation 2023; pyvo's ``pyvo.mivot``) sees in each row a
``vcml:Classification`` — the spectrum's DID, the predicted class, a collection
of class probabilities keyed by class name, the uncertainty measures and the
flags of the oracle batch and precision sample — without knowing our column
names. The model itself lives in ``vodml/vocloud-ml.vo-dml.xml`` and is
described in ``vodml/README.md``.

The blocks are built here as text (a ``<VODML>`` element in the MIVOT
namespace); `vocloud.server.votable.ResultDocument` puts one into the results
RESOURCE of a document, where MIVOT wants it. Constant values of a table (the
class names, the iteration, the session, the number of MC-dropout samples) go
into ``value`` attributes; everything else refers to the table's FIELDs by
ID, which for these tables equal the column names.

Constants are escaped as XML requires, but astropy 8.0's VOTable parser
rebuilds the block as text without escaping (``k='v'``), so pyvo cannot read a
block whose class names or session id contain ``&``, ``<`` or ``'``. The
document stays valid and TOPCAT reads it; only the MIVOT view is lost.

Pure compute (lxml only): imported by worker processes and by the web server.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from vocloud.server.ml.iteration import CANDIDATE_COLUMNS, LABEL_COLUMNS, probability_column

__all__ = [
    "IVOA_MODEL_URL",
    "MIVOT_NAMESPACE",
    "MODEL_NAME",
    "MODEL_PATH",
    "candidates_mapping",
    "labels_mapping",
]

MIVOT_NAMESPACE = "http://www.ivoa.net/xml/mivot"
"""Namespace of MIVOT 1.0 mapping blocks (MIVOT 1.0 section 4)."""

MODEL_NAME = "vcml"
"""Name of vocloud's ML model: the prefix of every ``dmtype`` and ``dmrole`` it defines."""

MODEL_PATH = "/vodml/vocloud-ml.vo-dml.xml"
"""Path below the service's base URL where the server publishes the model's VO-DML/XML file."""

IVOA_MODEL_URL = "https://www.ivoa.net/xml/VODML/IVOA-v1.vo-dml.xml"
"""The IVOA base model, which gives the primitive types (``ivoa:string``, ``ivoa:real``, ...)."""

_STRING = "ivoa:string"
_REAL = "ivoa:real"
_INTEGER = "ivoa:integer"
_BOOLEAN = "ivoa:boolean"
_DATETIME = "ivoa:datetime"


def _tag(name: str) -> str:
    return f"{{{MIVOT_NAMESPACE}}}{name}"


def _block(report: str, model_url: str | None, table_ref: str) -> tuple[etree._Element, etree._Element]:
    """The ``VODML`` root with its REPORT and MODELs, and its (empty) TEMPLATES for ``table_ref``."""
    if not table_ref:
        msg = "table_ref must name the TABLE the annotations map (its ID), not be empty"
        raise ValueError(msg)
    if model_url == "":
        # MIVOT's schema forbids an empty url; no url at all is allowed.
        msg = "model_url must be a URL or None, not empty"
        raise ValueError(msg)
    root = etree.Element(_tag("VODML"), nsmap={None: MIVOT_NAMESPACE})
    etree.SubElement(root, _tag("REPORT"), status="OK").text = report
    etree.SubElement(root, _tag("MODEL"), name="ivoa", url=IVOA_MODEL_URL)
    model = etree.SubElement(root, _tag("MODEL"), name=MODEL_NAME)
    if model_url is not None:
        model.set("url", model_url)
    # Nothing is global to these tables, but pyvo 1.9's MivotViewer fails on
    # a block without GLOBALS; an empty one is valid MIVOT.
    etree.SubElement(root, _tag("GLOBALS"))
    templates = etree.SubElement(root, _tag("TEMPLATES"), tableref=table_ref)
    return root, templates


def _instance(parent: etree._Element, dmtype: str, *, dmrole: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _tag("INSTANCE"))
    if dmrole is not None:
        element.set("dmrole", f"{MODEL_NAME}:{dmrole}")
    element.set("dmtype", f"{MODEL_NAME}:{dmtype}")
    return element


def _attribute(parent: etree._Element, dmrole: str, dmtype: str, *, ref: str | None = None,
               value: str | None = None) -> None:  # fmt: skip
    element = etree.SubElement(parent, _tag("ATTRIBUTE"), dmrole=f"{MODEL_NAME}:{dmrole}", dmtype=dmtype)
    if ref is not None:
        element.set("ref", ref)
    if value is not None:
        element.set("value", value)


def _column(name: str, columns: Sequence[str]) -> str:
    """``name``, checked against the table's columns: a renamed column fails every call here, not in a client."""
    if name not in columns:
        msg = f"Column {name!r} is not among {list(columns)}: the MIVOT mapping is out of date"
        raise LookupError(msg)
    return name


def _text(root: etree._Element) -> str:
    etree.indent(root, space="  ")
    return str(etree.tostring(root, encoding="unicode"))


def candidates_mapping(
    classes: Sequence[str],
    *,
    iteration: int,
    session_id: str,
    mc_samples: int,
    table_ref: str = "results",
    model_url: str | None = None,
) -> str:
    """The MIVOT block mapping each row of an iteration's candidates table to a ``vcml:Classification``.

    The table's columns are `CANDIDATE_COLUMNS` with one
    ``probability_column(c)`` per class after ``predicted_class``; FIELD IDs
    equal the column names. ``ra``, ``dec``, ``target`` and ``access_url`` are
    left unmapped: they describe the spectrum, not its classification, and the
    DID (``id``) already identifies it.

    Parameters
    ----------
    classes
        The session's class names, in the order of the probability columns.
    iteration
        The iteration that produced the table.
    session_id
        The session's identifier.
    mc_samples
        MC-dropout forward passes behind the uncertainty measures.
    table_ref
        ID of the TABLE the block maps (`ResultDocument` writes ``results``).
    model_url
        Where the ``vcml`` model can be read (the service's base URL +
        `MODEL_PATH`); without it the MODEL is named only, which MIVOT allows.

    Returns
    -------
    str
        The ``<VODML xmlns="http://www.ivoa.net/xml/mivot">`` element as text.

    Raises
    ------
    ValueError
        Raised if there are no classes, two classes share a name or a
        probability column, ``iteration`` or ``mc_samples`` is negative, or
        ``table_ref`` or ``model_url`` is empty.
    """
    classes = tuple(classes)
    columns = [probability_column(c) for c in classes]
    if not classes or len(set(columns)) != len(columns):
        msg = f"Classes {list(classes)} must be at least one, with distinct probability columns ({columns})"
        raise ValueError(msg)
    if iteration < 0 or mc_samples < 0:
        msg = f"iteration and mc_samples must not be negative, not {iteration} and {mc_samples}"
        raise ValueError(msg)
    report = f"Candidates of iteration {iteration} of active-learning session {session_id} as vcml:Classification"
    root, templates = _block(report, model_url, table_ref)

    def col(name: str) -> str:
        return _column(name, CANDIDATE_COLUMNS)

    row = _instance(templates, "Classification")
    _attribute(row, "Classification.spectrum", _STRING, ref=col("id"))
    _attribute(row, "Classification.predictedClass", _STRING, ref=col("predicted_class"))
    _attribute(row, "Classification.iteration", _INTEGER, value=str(int(iteration)))
    _attribute(row, "Classification.sessionId", _STRING, value=session_id)
    _attribute(row, "Classification.rank", _INTEGER, ref=col("rank"))
    _attribute(row, "Classification.oracleBatch", _BOOLEAN, ref=col("oracle"))
    _attribute(row, "Classification.precisionSample", _BOOLEAN, ref=col("precision_sample"))

    projection = _instance(row, "Projection2D", dmrole="Classification.projection")
    _attribute(projection, "Projection2D.x", _REAL, ref=col("x"))
    _attribute(projection, "Projection2D.y", _REAL, ref=col("y"))

    uncertainty = _instance(row, "Uncertainty", dmrole="Classification.uncertainty")
    _attribute(uncertainty, "Uncertainty.entropy", _REAL, ref=col("entropy"))
    _attribute(uncertainty, "Uncertainty.bald", _REAL, ref=col("bald"))
    _attribute(uncertainty, "Uncertainty.variationRatio", _REAL, ref=col("variation_ratio"))
    _attribute(uncertainty, "Uncertainty.mcSamples", _INTEGER, value=str(int(mc_samples)))

    probabilities = etree.SubElement(row, _tag("COLLECTION"), dmrole=f"{MODEL_NAME}:Classification.classProbability")
    for name, probability in zip(classes, columns, strict=True):
        entry = _instance(probabilities, "ClassProbability")
        _attribute(entry, "ClassProbability.className", _STRING, value=name)
        _attribute(entry, "ClassProbability.probability", _REAL, ref=probability)
    return _text(root)


def labels_mapping(
    *,
    table_ref: str = "results",
    model_url: str | None = None,
    session_id: str | None = None,
) -> str:
    """The MIVOT block mapping each row of a session's label history to a ``vcml:OracleLabel``.

    The table's columns are `LABEL_COLUMNS`; FIELD IDs equal the column names.

    Parameters
    ----------
    table_ref
        ID of the TABLE the block maps (`ResultDocument` writes ``results``).
    model_url
        Where the ``vcml`` model can be read; without it the MODEL is named only.
    session_id
        The session the labels belong to, when known (a constant of the table).

    Returns
    -------
    str
        The ``<VODML xmlns="http://www.ivoa.net/xml/mivot">`` element as text.

    Raises
    ------
    ValueError
        Raised if ``table_ref`` or ``model_url`` is empty.
    """
    report = "Label history of an active-learning session as vcml:OracleLabel"
    root, templates = _block(report, model_url, table_ref)

    def col(name: str) -> str:
        return _column(name, LABEL_COLUMNS)

    row = _instance(templates, "OracleLabel")
    _attribute(row, "OracleLabel.sequence", _INTEGER, ref=col("seq"))
    _attribute(row, "OracleLabel.spectrum", _STRING, ref=col("id"))
    _attribute(row, "OracleLabel.label", _STRING, ref=col("label"))
    _attribute(row, "OracleLabel.labeller", _STRING, ref=col("labeller"))
    _attribute(row, "OracleLabel.comment", _STRING, ref=col("comment"))
    _attribute(row, "OracleLabel.owner", _STRING, ref=col("owner"))
    _attribute(row, "OracleLabel.posted", _DATETIME, ref=col("posted"))
    _attribute(row, "OracleLabel.iteration", _INTEGER, ref=col("iteration"))
    if session_id is not None:
        _attribute(row, "OracleLabel.sessionId", _STRING, value=session_id)
    return _text(root)
