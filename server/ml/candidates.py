"""The candidate tables of an active-learning iteration: which spectra to show, in what order, as VOTables.

An iteration publishes three tables of the same shape (the columns of
`iteration.CANDIDATE_COLUMNS`, one probability column per class after
``predicted_class``): ``result``, the most uncertain unlabelled spectra plus
every oracle and precision-sample row; ``oracle``, the batch to label next; and
``precision_sample``. The same shape means a client (TOPCAT, pyvo, the session
page) reads any of them the same way, and the same rank and flags mean a row
reads the same in all three.

Every table carries a DataLink 1.1 service descriptor whose ``ID`` input
parameter refers to the ``id`` column, as the SSA responses do, so a client
that knows DataLink (pyvo's ``getdatalink``, TOPCAT's activation actions)
reaches each row's spectrum, preview and SODA cutout without knowing vocloud;
and, when the MIVOT mapping is available, a MIVOT block that maps the columns
onto the ML-results data model.

Pure compute and XML: no archive, no files, no web stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..links import data_url, datalink_descriptor
from ..votable import (
    CoordinateSystem,
    FieldSpec,
    ParamSpec,
    ResultDocument,
)
from .active_learning import IterationResult
from .iteration import SessionSettings, probability_column

__all__ = ["SpectraMeta", "candidate_fields", "candidates_document", "ranked_candidates", "write_candidates"]

_ICRS = "icrs"
"""XML ID of the COOSYS the positions refer to."""

ID_FIELD = "id"
"""XML ID of the identifier column, which the DataLink descriptor's ``ID`` parameter refers to."""


@dataclass(frozen=True, kw_only=True)
class SpectraMeta:
    """Who every row of the features is: identifier, position and target name, in row order.

    Attributes
    ----------
    ids
        Publisher DIDs.
    ra, dec
        ICRS position in degrees; NaN where the archive has none.
    target
        Target names; None where unknown.
    """

    ids: Sequence[str]
    ra: NDArray[np.float64]
    dec: NDArray[np.float64]
    target: Sequence[str | None]


def candidate_fields(classes: Sequence[str]) -> tuple[FieldSpec, ...]:
    """The columns of a candidates table, in the order of `iteration.CANDIDATE_COLUMNS`."""
    probabilities = tuple(
        FieldSpec(name=probability_column(name), datatype="float", ucd="stat.probability",
                  description=f"Mean MC-dropout probability of class {name!r}")
        for name in classes
    )  # fmt: skip
    return (
        FieldSpec(name="id", id=ID_FIELD, datatype="char", arraysize="*", ucd="meta.id;meta.main",
                  description="Publisher DID of the spectrum (the ID of DataLink and SODA)"),
        FieldSpec(name="ra", datatype="double", unit="deg", ucd="pos.eq.ra;meta.main", ref=_ICRS,
                  description="ICRS right ascension of the observation"),
        FieldSpec(name="dec", datatype="double", unit="deg", ucd="pos.eq.dec;meta.main", ref=_ICRS,
                  description="ICRS declination of the observation"),
        FieldSpec(name="target", datatype="unicodeChar", arraysize="*", ucd="meta.id;src",
                  description="Name of the observed target"),
        FieldSpec(name="access_url", datatype="char", arraysize="*", ucd="meta.ref.url",
                  description="The archived spectrum's file"),
        FieldSpec(name="predicted_class", datatype="unicodeChar", arraysize="*", ucd="src.class",
                  description="Class of highest mean probability (null before the first model)"),
        *probabilities,
        FieldSpec(name="entropy", datatype="float",
                  description="Predictive entropy H[mean p] (nat): total uncertainty"),
        FieldSpec(name="bald", datatype="float",
                  description="BALD, mutual information between label and weights (nat): model uncertainty"),
        FieldSpec(name="variation_ratio", datatype="float",
                  description="1 - share of MC samples voting for the modal class"),
        FieldSpec(name="x", datatype="double",
                  description="First coordinate of the 2-D projection (PCA) of the network's embedding"),
        FieldSpec(name="y", datatype="double",
                  description="Second coordinate of the 2-D projection (PCA) of the network's embedding"),
        FieldSpec(name="rank", datatype="long", ucd="stat.rank",
                  description="Order by the strategy's uncertainty score, 1 the most uncertain (drawing order"
                              " for random choices)"),
        FieldSpec(name="oracle", datatype="boolean", ucd="meta.code",
                  description="In the oracle batch: label this spectrum next"),
        FieldSpec(name="precision_sample", datatype="boolean", ucd="meta.code",
                  description="In the random sample of predicted positives whose labels estimate precision"),
    )  # fmt: skip


def candidates_document(
    settings: SessionSettings,
    *,
    session_id: str,
    iteration: int,
    public_url: str,
    mivot: str | None = None,
    description: str,
) -> ResultDocument:
    """The VOTable writer of one iteration's candidate tables (all three share it).

    Parameters
    ----------
    settings
        The session's settings (classes, strategy, MC samples).
    session_id, iteration
        Written as PARAMs, so a saved table still says where it came from.
    public_url
        The service's public base URL, for the DataLink descriptor.
    mivot
        The MIVOT ``VODML`` block annotating the table, when available.
    description
        The document's DESCRIPTION.
    """
    descriptor = datalink_descriptor(public_url, id_ref=ID_FIELD)
    params = (
        ParamSpec(name="session_id", datatype="char", arraysize="*", ucd="meta.id", value=session_id,
                  description="The active-learning session"),
        ParamSpec(name="iteration", datatype="int", ucd="meta.number", value=str(iteration),
                  description="The session's iteration that produced this table"),
        ParamSpec(name="strategy", datatype="char", arraysize="*", value=settings.strategy,
                  description="Query strategy that chose the oracle batch"),
        ParamSpec(name="mc_samples", datatype="int", ucd="meta.number", value=str(settings.mc_samples),
                  description="MC-dropout forward passes behind the probabilities and uncertainties"),
        ParamSpec(name="positive_class", datatype="unicodeChar", arraysize="*", value=settings.positive_class,
                  description="The class whose precision the precision sample estimates"),
    )  # fmt: skip
    return ResultDocument(
        fields=candidate_fields(settings.classes),
        params=params,
        descriptors=(descriptor,),
        coordinate_systems=(CoordinateSystem(id=_ICRS, system="ICRS"),),
        description=description,
        mivot=mivot,
    )


def ranked_candidates(
    result: IterationResult,
    *,
    unlabelled: NDArray[np.int64],
    settings: SessionSettings,
) -> NDArray[np.int64]:
    """The rows of the candidates table, most uncertain first (their rank is their position plus one).

    The table holds the ``max_candidates`` unlabelled rows of highest uncertainty plus every
    oracle and precision-sample row, each once. Uncertainty is the strategy's own score
    (entropy for ``entropy``, BALD otherwise, ties broken by the other score, then by row),
    so the table's head is what the strategy looked at. A random oracle batch has no score
    order: its rows come first in drawing order, then the rest by BALD. On a cold start
    nothing is scored and the table is the oracle batch in drawing order.
    """
    precision = result.precision_sample
    predictions = result.predictions
    if predictions is None:
        return _unique_in_order(result.oracle, precision)
    by_entropy = settings.strategy == "entropy"
    primary = predictions.entropy if by_entropy else predictions.bald
    secondary = predictions.bald if by_entropy else predictions.entropy
    candidates = np.asarray(unlabelled, dtype=np.int64)
    # lexsort sorts by its last key first and is stable.
    order = candidates[np.lexsort((candidates, -secondary[candidates], -primary[candidates]))]
    head = order[: settings.max_candidates]
    if settings.strategy == "random":
        return _unique_in_order(result.oracle, head, precision)
    rows = _unique_in_order(head, result.oracle, precision)
    keys = np.lexsort((rows, -secondary[rows], -primary[rows]))
    return np.asarray(rows[keys], dtype=np.int64)


def _unique_in_order(*parts: NDArray[np.int64]) -> NDArray[np.int64]:
    """The concatenation of the parts with later repeats removed."""
    rows: NDArray[np.int64] = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    _, first = np.unique(rows, return_index=True)
    return np.asarray(rows[np.sort(first)], dtype=np.int64)


def write_candidates(
    document: ResultDocument,
    rows: NDArray[np.int64],
    *,
    ranks: dict[int, int],
    result: IterationResult,
    meta: SpectraMeta,
    settings: SessionSettings,
    public_url: str,
    message: str | None = None,
) -> bytes:
    """Serialise the given rows of the features as a candidates table.

    Parameters
    ----------
    document
        From `candidates_document`.
    rows
        Row indices into the features, in table order.
    ranks
        Rank of every row (from the position in `ranked_candidates`).
    result
        The iteration's predictions, projection, oracle batch and precision sample.
    meta
        Identifiers, positions and targets of every row.
    settings
        The session's settings (class names).
    public_url
        The service's public base URL, for the access URLs.
    message
        Content of the QUERY_STATUS INFO.
    """
    rows = np.asarray(rows, dtype=np.int64)
    oracle = set(result.oracle.tolist())
    sample = set(result.precision_sample.tolist())
    ids = [meta.ids[row] for row in rows.tolist()]
    columns: dict[str, Any] = {
        "id": ids,
        "ra": [_finite(meta.ra[row]) for row in rows.tolist()],
        "dec": [_finite(meta.dec[row]) for row in rows.tolist()],
        "target": [meta.target[row] for row in rows.tolist()],
        "access_url": [data_url(public_url, did) for did in ids],
        "rank": [ranks[row] for row in rows.tolist()],
        "oracle": [row in oracle for row in rows.tolist()],
        "precision_sample": [row in sample for row in rows.tolist()],
    }
    predictions = result.predictions
    if predictions is None or result.projection is None:
        nulls: list[Any] = [None] * len(rows)
        for name in ("predicted_class", "entropy", "bald", "variation_ratio", "x", "y"):
            columns[name] = nulls
        for name in settings.classes:
            columns[probability_column(name)] = nulls
    else:
        columns["predicted_class"] = [settings.classes[k] for k in predictions.predicted[rows].tolist()]
        for k, name in enumerate(settings.classes):
            columns[probability_column(name)] = predictions.mean[rows, k]
        columns["entropy"] = predictions.entropy[rows]
        columns["bald"] = predictions.bald[rows]
        columns["variation_ratio"] = predictions.variation_ratio[rows]
        columns["x"] = result.projection[rows, 0]
        columns["y"] = result.projection[rows, 1]
    return document.write(columns, rows=len(rows), message=message)


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
