"""The runner of the ``active_learning`` job kind: one iteration of a session, from its input file to seven results.

Runs in a worker process (no web stack). The steps:

1. read the ``session`` file, an `IterationInput` (the contract with the
   session service, :mod:`.iteration`), and check the settings and the
   preprocessing parameters it carries against the ``preprocess`` kind's
   declarations, so a bad file fails at once with a message naming the problem;
2. build or reuse the cached feature store of the session's selection
   (:func:`.preprocess_job.build_features`, shared with ``preprocess``), and map
   the labels (publisher DIDs) onto its rows; labels of spectra outside the
   store are not used and are counted in the final message;
3. run the iteration (:func:`.active_learning.run_iteration`) on the store's
   matrix as an h5py dataset, so memory does not grow with the archive;
4. write the candidates, oracle and precision-sample tables
   (:mod:`.candidates`), the learning curve (:mod:`.learning_curve`), the
   checkpoint, and last the `IterationOutcome`, which the session service
   reads when the job completes.

Progress: preprocessing 0-0.3, training 0.3-0.6, scoring 0.6-0.9, results after.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..archive.store import SpectrumRecord
from ..kinds import JobContext, JobUsageError, ParameterValueError
from ..kinds.spec import format_value
from . import bcnn
from .active_learning import IterationResult, labelled_rows, run_iteration
from .candidates import SpectraMeta, candidates_document, ranked_candidates, write_candidates
from .feature_store import FeatureStore
from .iteration import IterationInput, IterationOutcome, IterationRecord, SessionSettings
from .learning_curve import learning_curve_document, render_learning_curve, write_learning_curve
from .mivot import MODEL_PATH, candidates_mapping
from .preprocess_job import build_features
from .preprocess_kind import PREPROCESS
from .strategies import STRATEGIES

__all__ = ["read_input", "run_active_learning"]

_PREPROCESS_SHARE = 0.3
_COMPUTE_SHARE = 0.6
"""Shares of the job's progress: preprocessing, then training and scoring (the core reports its own 0-1)."""

MAX_SESSION_FILE = 64 * 1024 * 1024
"""Largest ``session`` file read: a million labels of long DIDs fit; anything larger is not an input."""


def run_active_learning(params: dict[str, Any], context: JobContext) -> None:
    """Run one active-learning iteration and write its results.

    Raises
    ------
    JobUsageError
        Raised if the ``session`` file is not a valid iteration input, its parameters are
        invalid, the server has no archive, or the selection is empty.
    """
    source = params.get("session")
    if not isinstance(source, Path):
        msg = "The session parameter must be an uploaded iteration input (JSON)"
        raise JobUsageError(msg)
    given = read_input(source)
    settings = given.settings
    preprocess_params = _preprocess_parameters(settings)
    if context.server is None:
        msg = "This server has no archive to learn from"
        raise JobUsageError(msg)
    server = context.server

    def preprocessing(fraction: float, message: str) -> None:
        context.progress(_PREPROCESS_SHARE * fraction, f"preprocessing: {message}")

    def computing(fraction: float, message: str) -> None:
        context.progress(_PREPROCESS_SHARE + _COMPUTE_SHARE * fraction, message)

    selection = build_features(preprocess_params, server, job_id=context.job_id, progress=preprocessing)
    with FeatureStore(selection.path) as store:
        ids = store.ids
        labelled, labels, ignored = labelled_rows(ids, given.labels, settings.classes)
        result = run_iteration(
            store.features, labelled, labels, settings=settings, iteration=given.iteration, progress=computing
        )

    context.progress(_PREPROCESS_SHARE + _COMPUTE_SHARE, "writing the results")
    unlabelled = np.setdiff1d(np.arange(len(ids), dtype=np.int64), labelled, assume_unique=True)
    meta = _meta(ids, selection.records)
    _write_tables(result, given=given, unlabelled=unlabelled, meta=meta, public_url=server.public_url, context=context)
    record = IterationRecord(
        iteration=given.iteration,
        labels_used=len(labelled),
        val_accuracy=result.val_accuracy,
        val_macro_f1=result.val_macro_f1,
        mean_bald=result.mean_bald,
        mean_entropy=result.mean_entropy,
    )
    history = sorted([r for r in given.history if r.iteration != given.iteration] + [record], key=lambda r: r.iteration)
    curve = learning_curve_document(session_id=given.session_id, positive_class=settings.positive_class)
    context.result_path("learning_curve").write_bytes(write_learning_curve(curve, history))
    title = f"Learning curve of session {given.session_id} ({settings.strategy}), iteration {given.iteration}"
    context.result_path("learning_curve_png").write_bytes(render_learning_curve(history, title=title))
    if result.model is not None:
        bcnn.save(result.model, context.result_path("model"))

    outcome = _outcome(result, given=given, labels=labels, unlabelled=unlabelled, ids=ids, key=selection.key)
    # Last: the session service takes a complete job with this result as a finished iteration.
    context.result_path("iteration").write_text(outcome.to_json(), encoding="utf-8")
    context.progress(1.0, _summary(outcome, ignored=ignored))


def read_input(path: Path) -> IterationInput:
    """Read and check an iteration input file.

    Raises
    ------
    JobUsageError
        Raised if the file is too large, not an iteration input of the current format, or
        its settings are out of range.
    """
    try:
        if path.stat().st_size > MAX_SESSION_FILE:
            msg = f"The session file is over {MAX_SESSION_FILE // (1024 * 1024)} MiB: not an iteration input"
            raise JobUsageError(msg)
        given = IterationInput.from_json(path.read_bytes())
    except ValueError as e:
        msg = f"Bad session file: {e}"
        raise JobUsageError(msg) from e
    except OSError as e:
        msg = f"The session file cannot be read: {e}"
        raise JobUsageError(msg) from e
    problems = _setting_problems(given.settings) + _history_problems(given.history)
    if given.iteration < 0:
        problems.append(f"iteration must not be negative, not {given.iteration}")
    if problems:
        raise JobUsageError("Bad session file: " + "; ".join(problems))
    return given


def _setting_problems(settings: SessionSettings) -> list[str]:
    problems = []
    if settings.strategy not in STRATEGIES:
        problems.append(f"strategy {settings.strategy!r} is not one of {', '.join(STRATEGIES)}")
    bounds = {
        "batch_size": (settings.batch_size, 1),
        "seed_size": (settings.seed_size, 1),
        "precision_sample": (settings.precision_sample, 0),
        "mc_samples": (settings.mc_samples, 1),
        "max_candidates": (settings.max_candidates, 0),
        "max_epochs": (settings.max_epochs, 1),
    }
    for name, (value, least) in bounds.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            problems.append(f"{name} must be an integer of at least {least}, not {value!r}")
    if not isinstance(settings.seed, int) or isinstance(settings.seed, bool):
        problems.append(f"seed must be an integer, not {settings.seed!r}")
    for name in ("selection", "preprocessing"):
        if not isinstance(getattr(settings, name), dict):
            problems.append(f"{name} must be an object of preprocess parameters, not {getattr(settings, name)!r}")
    return problems


def _history_problems(history: tuple[IterationRecord, ...]) -> list[str]:
    """Records whose figures are not numbers would break the learning curve after all the work."""
    problems = []
    integers = ("iteration", "labels_used", "precision_n")
    for position, record in enumerate(history):
        for name, value in vars(record).items():
            optional = name not in integers
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if (optional and value is None) or (number and (optional or isinstance(value, int))):
                continue
            problems.append(f"history record {position + 1} has {name}={value!r}, not a number")
    return problems


def _preprocess_parameters(settings: SessionSettings) -> dict[str, Any]:
    """The session's selection and steps, parsed and range-checked as a ``preprocess`` job's would be.

    Raises
    ------
    JobUsageError
        Raised if a name is not a ``preprocess`` parameter or a value is not valid for it.
    """
    out: dict[str, Any] = {}
    unknown = []
    for name, value in settings.parameters.items():
        spec = PREPROCESS.parameter(name)
        if spec is None:
            unknown.append(name)
            continue
        if value is None:
            continue
        try:
            out[spec.name] = spec.parse(format_value(value))
        except ParameterValueError as e:
            msg = f"The session's preprocessing is invalid: {e}"
            raise JobUsageError(msg) from e
    if unknown:
        msg = f"The session names parameters that preprocess does not have: {sorted(unknown)}"
        raise JobUsageError(msg)
    return out


def _meta(ids: list[str], records: list[SpectrumRecord]) -> SpectraMeta:
    by_did = {record.obs_publisher_did: record for record in records}
    ra = np.full(len(ids), np.nan)
    dec = np.full(len(ids), np.nan)
    target: list[str | None] = []
    for row, did in enumerate(ids):
        record = by_did.get(did)
        if record is not None:
            ra[row] = np.nan if record.s_ra is None else record.s_ra
            dec[row] = np.nan if record.s_dec is None else record.s_dec
        target.append(None if record is None else record.target_name)
    return SpectraMeta(ids=ids, ra=ra, dec=dec, target=target)


def _write_tables(
    result: IterationResult,
    *,
    given: IterationInput,
    unlabelled: NDArray[np.int64],
    meta: SpectraMeta,
    public_url: str,
    context: JobContext,
) -> None:
    """The ``result``, ``oracle`` and ``precision_sample`` tables: one document, three row sets."""
    settings = given.settings
    mivot = candidates_mapping(
        settings.classes,
        iteration=given.iteration,
        session_id=given.session_id,
        mc_samples=settings.mc_samples,
        model_url=public_url + MODEL_PATH if public_url else None,
    )
    document = candidates_document(
        settings,
        session_id=given.session_id,
        iteration=given.iteration,
        public_url=public_url,
        mivot=mivot,
        description=f"Candidates of iteration {given.iteration} of active-learning session {given.session_id}",
    )
    ranked = ranked_candidates(result, unlabelled=unlabelled, settings=settings)
    ranks = {row: position + 1 for position, row in enumerate(ranked.tolist())}
    state = "cold start: a random seed batch, no model yet" if result.cold_start else f"{settings.strategy} strategy"
    tables = (
        ("result", ranked, f"{len(ranked)} candidates ({state})"),
        ("oracle", result.oracle, f"oracle batch of {len(result.oracle)} spectra to label next ({state})"),
        ("precision_sample", result.precision_sample,
         f"random sample of {len(result.precision_sample)} unlabelled spectra predicted {settings.positive_class!r}"),
    )  # fmt: skip
    for name, rows, message in tables:
        body = write_candidates(
            document, rows, ranks=ranks, result=result, meta=meta, settings=settings, public_url=public_url,
            message=message,
        )  # fmt: skip
        context.result_path(name).write_bytes(body)


def _outcome(
    result: IterationResult,
    *,
    given: IterationInput,
    labels: NDArray[np.int64],
    unlabelled: NDArray[np.int64],
    ids: list[str],
    key: str,
) -> IterationOutcome:
    classes = given.settings.classes
    label_counts = Counter(classes[k] for k in labels.tolist())
    predicted_counts: dict[str, int] = {}
    predicted_positive = 0
    if result.predictions is not None:
        counts = np.bincount(result.predictions.predicted[unlabelled], minlength=len(classes))
        predicted_counts = {name: int(counts[k]) for k, name in enumerate(classes)}
        predicted_positive = predicted_counts[given.settings.positive_class]
    return IterationOutcome(
        iteration=given.iteration,
        labels_used=len(labels),
        label_counts={name: label_counts.get(name, 0) for name in classes},
        scored=len(ids),
        cold_start=result.cold_start,
        oracle=tuple(ids[row] for row in result.oracle.tolist()),
        precision_sample=tuple(ids[row] for row in result.precision_sample.tolist()),
        predicted_positive=predicted_positive,
        predicted_counts=predicted_counts,
        val_accuracy=result.val_accuracy,
        val_macro_f1=result.val_macro_f1,
        mean_bald=result.mean_bald,
        mean_entropy=result.mean_entropy,
        epochs=result.epochs,
        feature_key=key,
    )


def _summary(outcome: IterationOutcome, *, ignored: int) -> str:
    parts = [f"iteration {outcome.iteration}"]
    if outcome.cold_start:
        parts.append(f"cold start with {outcome.labels_used} labels: random seed batch of {len(outcome.oracle)}")
    else:
        parts.append(f"trained on {outcome.labels_used} labels for {outcome.epochs} epochs")
        parts.append(f"scored {outcome.scored} spectra")
        parts.append(f"oracle batch of {len(outcome.oracle)}")
    if ignored:
        parts.append(f"{ignored} label{'s' if ignored > 1 else ''} of spectra outside the feature store ignored")
    return ", ".join(parts)
