"""What an active-learning iteration is given and what it reports back: the contract between sessions and jobs.

An iteration of a session is a UWS job of kind ``active_learning``. The
session service (in the web server) writes an `IterationInput` as the job's
``session`` file parameter; the runner (in a worker process) reads it, trains,
scores and selects, and writes an `IterationOutcome` as its ``iteration``
result, which the session service records when the job completes. Both are
JSON with a format number, so neither side reads the other's database or
files, and an iteration can be rerun from its input alone.

Identifiers of spectra are publisher DIDs throughout (the ``ID`` of DataLink
and SODA, the ``id`` column of every table a session publishes).

Pure standard library: imported by the web server and by workers.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "CANDIDATE_COLUMNS",
    "ITERATION_FORMAT",
    "LABEL_COLUMNS",
    "STRATEGIES",
    "IterationInput",
    "IterationOutcome",
    "IterationRecord",
    "SessionSettings",
    "Strategy",
    "probability_column",
]

Strategy = Literal["random", "entropy", "bald", "diverse"]
"""Query strategies of the oracle batch (`vocloud.server.ml.strategies` says what each does)."""

STRATEGIES: tuple[str, ...] = get_args(Strategy)
"""Their names, for validation in the web server, which does not import the strategies (scikit-learn)."""

ITERATION_FORMAT = 1
"""Version of the JSON layout of `IterationInput` and `IterationOutcome`; readers refuse others."""

CANDIDATE_COLUMNS = (
    "id",
    "ra",
    "dec",
    "target",
    "access_url",
    "predicted_class",
    # then one probability column per class, named by `probability_column`
    "entropy",
    "bald",
    "variation_ratio",
    "x",
    "y",
    "rank",
    "oracle",
    "precision_sample",
)
"""Columns of the candidates table (the ``result`` of an iteration), in order; MIVOT annotations refer to them."""

LABEL_COLUMNS = ("seq", "id", "label", "labeller", "comment", "owner", "posted", "iteration")
"""Columns of a session's label history (``GET /sessions/{id}/labels``), in order; MIVOT annotations refer to them.

``labeller`` and ``comment`` are what the poster said; ``owner`` is who was
authenticated; ``posted`` when the service stored it; ``iteration`` the
session's latest iteration at that moment.
"""

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def probability_column(class_name: str) -> str:
    """Name of the column holding the mean predicted probability of a class (``p_`` + the name, made an identifier)."""
    return "p_" + _NOT_NAME.sub("_", class_name)


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """How a session runs its iterations; fixed when the session is created.

    Attributes
    ----------
    classes
        Class names, in the order of the network's outputs.
    positive_class
        The class whose precision is estimated (the one the astronomer is hunting).
    strategy
        Query strategy: ``random``, ``entropy``, ``bald`` or ``diverse``.
    batch_size
        Spectra in each oracle batch.
    seed_size
        Spectra in the random first batch when fewer than two classes are labelled yet.
    precision_sample
        Size of the random sample of predicted positives whose labels estimate precision.
    mc_samples
        MC-dropout forward passes T.
    max_candidates
        Most rows of the candidates table (the most uncertain, plus every oracle and sample row).
    seed
        Seeds training (the same in every iteration) and the random choices (``seed + i`` in
        iteration ``i``).
    max_epochs
        Upper bound on training epochs (early stopping usually ends sooner).
    selection
        Archive selection, as ``preprocess`` parameters (``pos_ra``, ``band_min``, ``collection``, ...).
    preprocessing
        Preprocessing step parameters, as ``preprocess`` parameters (``wl_min``, ``n_points``, ...).
    """

    classes: tuple[str, ...]
    positive_class: str
    strategy: str = "diverse"
    batch_size: int = 100
    seed_size: int = 100
    precision_sample: int = 30
    mc_samples: int = 20
    max_candidates: int = 1000
    seed: int = 0
    max_epochs: int = 60
    selection: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            msg = f"A session needs at least two distinct classes, not {list(self.classes)}"
            raise ValueError(msg)
        columns = [probability_column(c) for c in self.classes]
        if len(set(columns)) != len(columns):
            msg = f"Class names {list(self.classes)} are too alike: their columns would clash ({columns})"
            raise ValueError(msg)
        if self.positive_class not in self.classes:
            msg = f"positive_class {self.positive_class!r} is not one of the classes {list(self.classes)}"
            raise ValueError(msg)

    @property
    def parameters(self) -> dict[str, Any]:
        """The ``preprocess`` parameters (selection and steps) that make this session's features."""
        return {**self.selection, **self.preprocessing}


@dataclass(frozen=True, kw_only=True)
class IterationRecord:
    """Figures of one finished iteration, as the session knows them (for learning curves).

    The precision figures come from labels given after the iteration, so an
    iteration's record can improve until its precision sample is labelled.
    """

    iteration: int
    labels_used: int
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    mean_bald: float | None = None
    mean_entropy: float | None = None
    precision: float | None = None
    precision_low: float | None = None
    precision_high: float | None = None
    precision_n: int = 0


@dataclass(frozen=True, kw_only=True)
class IterationInput:
    """Everything an iteration job needs, written by the session service as the job's ``session`` file.

    Attributes
    ----------
    session_id
        The session's identifier (for provenance and messages).
    iteration
        This iteration's number, from 1.
    settings
        The session's settings.
    labels
        Latest label of every labelled spectrum, by publisher DID; class names.
    history
        Records of the earlier iterations, oldest first.
    """

    session_id: str
    iteration: int
    settings: SessionSettings
    labels: dict[str, str]
    history: tuple[IterationRecord, ...] = ()

    def to_json(self) -> str:
        """The input as JSON (with the format number)."""
        return json.dumps({"format": ITERATION_FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> IterationInput:
        """Read an input written by `to_json`.

        Raises
        ------
        ValueError
            Raised if the text is not an iteration input of this format, or its labels name unknown classes.
        """
        values = _load(text, "iteration input")
        try:
            raw = values["settings"]
            settings = SessionSettings(**{**raw, "classes": tuple(raw["classes"])})
            history = tuple(IterationRecord(**record) for record in values.get("history", ()))
            labels = {str(k): str(v) for k, v in dict(values["labels"]).items()}
            result = cls(
                session_id=str(values["session_id"]),
                iteration=int(values["iteration"]),
                settings=settings,
                labels=labels,
                history=history,
            )
        except (KeyError, TypeError) as e:
            msg = f"Not an iteration input: {e}"
            raise ValueError(msg) from e
        unknown = sorted(set(labels.values()) - set(settings.classes))
        if unknown:
            msg = f"Labels name classes the session does not have: {unknown}"
            raise ValueError(msg)
        return result


@dataclass(frozen=True, kw_only=True)
class IterationOutcome:
    """What an iteration produced, written by the runner as its ``iteration`` result.

    Attributes
    ----------
    iteration
        The iteration's number.
    labels_used
        Labels the model was trained on.
    label_counts
        Those labels by class.
    scored
        Spectra scored (the feature store's rows).
    cold_start
        True when fewer than two classes were labelled: no model, a random seed batch.
    oracle
        Publisher DIDs of the oracle batch, in the order chosen.
    precision_sample
        Publisher DIDs of the random sample of unlabelled predicted positives.
    predicted_positive
        Unlabelled spectra predicted to be of the positive class.
    predicted_counts
        Unlabelled spectra by predicted class.
    val_accuracy, val_macro_f1
        On the held-out share of the labels (None on a cold start or with too few labels).
    mean_bald, mean_entropy
        Over the unlabelled spectra (None on a cold start).
    epochs
        Training epochs run (0 on a cold start).
    feature_key
        Cache key of the feature store used.
    """

    iteration: int
    labels_used: int
    label_counts: dict[str, int]
    scored: int
    cold_start: bool
    oracle: tuple[str, ...]
    precision_sample: tuple[str, ...] = ()
    predicted_positive: int = 0
    predicted_counts: dict[str, int] = field(default_factory=dict)
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    mean_bald: float | None = None
    mean_entropy: float | None = None
    epochs: int = 0
    feature_key: str = ""

    def to_json(self) -> str:
        """The outcome as JSON (with the format number)."""
        return json.dumps({"format": ITERATION_FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> IterationOutcome:
        """Read an outcome written by `to_json`.

        Raises
        ------
        ValueError
            Raised if the text is not an iteration outcome of this format.
        """
        values = _load(text, "iteration outcome")
        try:
            values["oracle"] = tuple(values["oracle"])
            values["precision_sample"] = tuple(values.get("precision_sample", ()))
            return cls(**values)
        except (KeyError, TypeError) as e:
            msg = f"Not an iteration outcome: {e}"
            raise ValueError(msg) from e


def _load(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"Not an {what}: {e}"
        raise ValueError(msg) from e
    if not isinstance(values, dict) or values.pop("format", None) != ITERATION_FORMAT:
        msg = f"Not an {what} of format {ITERATION_FORMAT}"
        raise ValueError(msg)
    return values
