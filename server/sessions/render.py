"""Documents of the session service: session JSON (``schemas/session.schema.json``) and the label history VOTable."""

from __future__ import annotations

from typing import Any

from ..kinds.spec import format_timestamp
from ..ml.active_learning_kind import ACTIVE_LEARNING
from ..ml.mivot import MODEL_PATH, labels_mapping
from ..uws.phases import ExecutionPhase
from ..votable import FieldSpec, ResultDocument
from .models import IterationStatus, LabelEntry, SessionRecord
from .service import IterationView, SessionView

__all__ = [
    "LABEL_FIELDS",
    "RESULT_NAMES",
    "job_url",
    "label_history_document",
    "label_post_document",
    "session_document",
    "session_list_document",
    "session_url",
]

RESULT_NAMES = {
    "candidates": "result",
    "oracle": "oracle",
    "precision_sample": "precision_sample",
    "learning_curve": "learning_curve",
    "learning_curve_png": "learning_curve_png",
    "model": "model",
}
"""Keys of an iteration's ``results`` in the session document, and the UWS result each names."""


def session_url(base: str, session_id: str) -> str:
    """The URL of a session."""
    return f"{base}/sessions/{session_id}"


def job_url(base: str, job_id: str) -> str:
    """The URL of an iteration's UWS job."""
    return f"{base}/jobs/{ACTIVE_LEARNING.name}/{job_id}"


def session_document(view: SessionView, *, base: str) -> dict[str, Any]:
    """The JSON document of ``GET /sessions/{id}``."""
    record = view.record
    url = session_url(base, record.session_id)
    criteria = record.criteria
    settings = record.settings
    return {
        "id": record.session_id,
        "url": url,
        "title": record.title,
        "owner": record.owner,
        "created": format_timestamp(record.created),
        "state": view.state.value,
        "auto_advance": record.auto_advance,
        "settings": {
            "classes": list(settings.classes),
            "positive_class": settings.positive_class,
            "strategy": settings.strategy,
            "batch_size": settings.batch_size,
            "seed_size": settings.seed_size,
            "precision_sample": settings.precision_sample,
            "mc_samples": settings.mc_samples,
            "max_candidates": settings.max_candidates,
            "seed": settings.seed,
            "max_epochs": settings.max_epochs,
            "selection": dict(settings.selection),
            "preprocessing": dict(settings.preprocessing),
        },
        "criteria": {
            "label_budget": criteria.label_budget,
            "uncertainty_threshold": criteria.uncertainty_threshold,
            "precision_target": criteria.precision_target,
        },
        "stopping": list(view.stopping),
        "labels": {"total": view.labelled, "by_class": dict(view.label_counts), "url": f"{url}/labels"},
        "iterations_url": f"{url}/iterations",
        "iterations": [_iteration(v, base=base) for v in view.iterations],
    }


def _iteration(view: IterationView, *, base: str) -> dict[str, Any]:
    row = view.row
    url = job_url(base, row.job_id)
    present = {r.name for r in view.job.results} if view.job is not None else set()
    document: dict[str, Any] = {
        "number": row.number,
        "job_id": row.job_id,
        "job_url": url,
        "phase": None if view.job is None else view.job.phase.value,
        "status": _status(view),
        "created": format_timestamp(row.created),
        "finished": None if row.finished is None else format_timestamp(row.finished),
        "error": row.error,
        "outcome": None,
        "results": {key: f"{url}/results/{name}" for key, name in RESULT_NAMES.items() if name in present},
    }
    outcome = row.outcome
    if outcome is not None:
        estimate = view.precision
        document["outcome"] = {
            "labels_used": outcome.labels_used,
            "cold_start": outcome.cold_start,
            "scored": outcome.scored,
            "val_accuracy": outcome.val_accuracy,
            "val_macro_f1": outcome.val_macro_f1,
            "mean_bald": outcome.mean_bald,
            "mean_entropy": outcome.mean_entropy,
            "predicted_positive": outcome.predicted_positive,
            "oracle_size": len(outcome.oracle),
            "oracle_labelled": view.counts.oracle_labelled,
            "precision_sample_size": len(outcome.precision_sample),
            "precision": None
            if estimate is None
            else {
                "value": estimate.value,
                "low": estimate.low,
                "high": estimate.high,
                "n": estimate.n,
                "confidence": estimate.confidence,
            },
        }
    return document


def _status(view: IterationView) -> str:
    """``queued`` or ``running`` (from the job's phase) while the iteration is pending, else its recorded status."""
    if view.row.status != IterationStatus.PENDING:
        return view.row.status.value
    return "running" if view.job is not None and view.job.phase == ExecutionPhase.EXECUTING else "queued"


def session_list_document(views: list[SessionView], *, base: str) -> dict[str, Any]:
    """The JSON document of ``GET /sessions``: a summary of each of the caller's sessions."""
    return {
        "sessions": [
            {
                "id": v.record.session_id,
                "url": session_url(base, v.record.session_id),
                "title": v.record.title,
                "created": format_timestamp(v.record.created),
                "state": v.state.value,
                "iterations": len(v.iterations),
                "labels": v.labelled,
            }
            for v in views
        ]
    }


def label_post_document(
    *, accepted: int, labelled: int, next_job_id: str | None, session_id: str, base: str
) -> dict[str, Any]:
    """The JSON answer to ``POST /sessions/{id}/labels``."""
    return {
        "accepted": accepted,
        "labels": labelled,
        "next_iteration": None if next_job_id is None else job_url(base, next_job_id),
        "session": session_url(base, session_id),
    }


LABEL_FIELDS = (
    FieldSpec(name="seq", datatype="long", ucd="meta.number", description="Order of posting within the session"),
    FieldSpec(name="id", datatype="char", arraysize="*", ucd="meta.ref.ivoid;meta.id",
              description="Publisher DID of the labelled spectrum"),
    FieldSpec(name="label", datatype="char", arraysize="*", ucd="meta.code.class",
              description="The class the oracle gave"),
    FieldSpec(name="labeller", datatype="unicodeChar", arraysize="*", description="Who labelled, as the post said"),
    FieldSpec(name="comment", datatype="unicodeChar", arraysize="*", ucd="meta.note",
              description="The oracle's comment"),
    FieldSpec(name="owner", datatype="char", arraysize="*", description="The authenticated user who posted it"),
    FieldSpec(name="posted", datatype="char", arraysize="*", xtype="timestamp", ucd="time.creation",
              description="When the service stored it (UTC)"),
    FieldSpec(name="iteration", datatype="int", ucd="meta.number",
              description="The session's latest iteration when it was posted (0 before the first)"),
)  # fmt: skip
"""Columns of the label history, in the order of `vocloud.server.ml.iteration.LABEL_COLUMNS`."""


def label_history_document(record: SessionRecord, entries: list[LabelEntry], *, base: str) -> bytes:
    """The label history VOTable of ``GET /sessions/{id}/labels``, annotated with MIVOT (``vcml:OracleLabel``).

    Built per response: the MIVOT block names the session, and astropy writes the
    metadata in milliseconds, small next to the rows of a long history.
    """
    document = ResultDocument(
        fields=LABEL_FIELDS,
        description=f"Label history of active-learning session {record.session_id}; the latest label counts",
        mivot=labels_mapping(session_id=record.session_id, model_url=base + MODEL_PATH),
    )
    return document.write(
        {
            "seq": [e.seq for e in entries],
            "id": [e.id for e in entries],
            "label": [e.label for e in entries],
            "labeller": [e.labeller for e in entries],
            "comment": [e.comment for e in entries],
            "owner": [e.owner for e in entries],
            "posted": [format_timestamp(e.posted) for e in entries],
            "iteration": [e.iteration for e in entries],
        },
        rows=len(entries),
    )
