"""Reading ``POST /sessions``: typed, bounded parameters into a `SessionRequest`, checked before anything is made.

Names are case-insensitive (as in DALI); values are parsed by
`vocloud.server.kinds.ParamSpec` declarations, the same machinery that checks
job parameters: the session's own parameters are declared here, the
preprocessing ones are the ``preprocess`` kind's own declarations, and the
selection is read by the SSA service's parser (:mod:`.selection`). Unknown
parameter names are refused rather than ignored: a misspelt ``batchsize``
silently falling back to its default would cost the expert an iteration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..kinds.spec import ParameterValueError, ParamSpec, ParamType
from ..ml.iteration import STRATEGIES, SessionSettings
from ..ml.preprocess_kind import PREPROCESS
from .models import NewLabel, StoppingCriteria
from .selection import SELECTION_NAMES, Selection

__all__ = [
    "MAX_CLASSES",
    "PREPROCESSING_PARAMETERS",
    "SESSION_PARAMETERS",
    "SessionRequest",
    "parse_session_request",
]

MAX_CLASSES = 50
"""Most classes of one session."""

_CLASS_NAME = re.compile(r"^[A-Za-z0-9_+.-]{1,64}$")

SESSION_PARAMETERS = (
    ParamSpec(name="class", type=ParamType.STRING, required=True, multiple=True, max_length=64 * MAX_CLASSES,
              description="Class names (repeated, or one comma-separated value): at least 2, at most 50, each 1-64"
              " characters of letters, digits and _ + . -"),
    ParamSpec(name="positive_class", type=ParamType.STRING, max_length=64,
              description="The class whose precision is estimated; default the first class"),
    ParamSpec(name="strategy", type=ParamType.STRING, default="diverse", choices=STRATEGIES,
              description="Query strategy of the oracle batch"),
    ParamSpec(name="batch_size", type=ParamType.INTEGER, default=100, minimum=1, maximum=10_000,
              description="Spectra in each oracle batch"),
    ParamSpec(name="seed_size", type=ParamType.INTEGER, minimum=1, maximum=10_000,
              description="Spectra in the random first batch while fewer than two classes are labelled;"
              " default batch_size"),
    ParamSpec(name="precision_sample", type=ParamType.INTEGER, default=30, minimum=0, maximum=10_000,
              description="Random sample of predicted positives whose labels estimate precision"),
    ParamSpec(name="mc_samples", type=ParamType.INTEGER, default=20, minimum=1, maximum=1000,
              description="MC-dropout forward passes"),
    ParamSpec(name="max_candidates", type=ParamType.INTEGER, default=1000, minimum=1, maximum=1_000_000,
              description="Most rows of an iteration's candidates table"),
    ParamSpec(name="seed", type=ParamType.INTEGER, default=0, minimum=0, maximum=2**31 - 1,
              description="Seed of training and random choices; iteration i uses seed + i"),
    ParamSpec(name="max_epochs", type=ParamType.INTEGER, default=60, minimum=1, maximum=10_000,
              description="Upper bound on training epochs"),
    ParamSpec(name="label_budget", type=ParamType.INTEGER, minimum=1, maximum=1_000_000_000,
              description="Stop auto-advance once this many spectra are labelled"),
    ParamSpec(name="uncertainty_threshold", type=ParamType.REAL, minimum=0.0,
              description="Stop auto-advance once the latest iteration's mean BALD is below this"),
    ParamSpec(name="precision_target", type=ParamType.REAL, minimum=0.0, maximum=1.0,
              description="Stop auto-advance once the lower bound of the precision estimate reaches this, in (0, 1]"),
    ParamSpec(name="auto_advance", type=ParamType.BOOLEAN, default=True,
              description="Start the next iteration by itself once the oracle batch is labelled"),
    ParamSpec(name="title", type=ParamType.STRING, max_length=200, description="A title for people"),
)  # fmt: skip
"""The session's own parameters (the selection and preprocessing ones come from SSAP and ``preprocess``)."""

_SELECTION_PARAMETERS = frozenset({"pos_ra", "pos_dec", "radius", "band_min", "band_max", "collection", "target"})
"""``preprocess`` parameters a session sets from its SSAP-style selection instead."""

PREPROCESSING_PARAMETERS = tuple(p for p in PREPROCESS.parameters if p.name not in _SELECTION_PARAMETERS)
"""The ``preprocess`` kind's step parameters, which a session accepts under the same names."""

_DECLARED = {p.name: p for p in (*SESSION_PARAMETERS, *PREPROCESSING_PARAMETERS)}
_LABELS = "labels"
"""The optional upload (or text field) of initial labels."""


@dataclass(frozen=True, kw_only=True)
class SessionRequest:
    """A checked request to create a session (its labels still to be checked against the archive).

    Attributes
    ----------
    title
        The optional title.
    settings
        The iteration settings, selection and preprocessing included.
    criteria
        The optional stopping criteria.
    auto_advance
        Whether labelling the oracle batch starts the next iteration.
    selection
        The archive selection (also in ``settings.selection``).
    labels
        Initial labels as posted.
    """

    title: str | None
    settings: SessionSettings
    criteria: StoppingCriteria
    auto_advance: bool
    selection: Selection
    labels: tuple[NewLabel, ...] = ()


def parse_session_request(pairs: Sequence[tuple[str, str]], *, labels: Sequence[NewLabel] = ()) -> SessionRequest:
    """Check the form of ``POST /sessions`` (lower-case names, in order) and build the request.

    Parameters
    ----------
    pairs
        The text parameters.
    labels
        Initial labels, already read from the ``labels`` upload.

    Raises
    ------
    UsageError
        Raised if a parameter is unknown, missing, repeated or invalid; the message names it.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    unknown = sorted(set(grouped) - set(_DECLARED) - set(SELECTION_NAMES) - {_LABELS})
    if unknown:
        msg = (
            f"Unknown parameter(s) {', '.join(unknown)}; a session takes {', '.join(sorted(_DECLARED))},"
            f" the selection {', '.join(n.upper() for n in SELECTION_NAMES)} and a labels upload"
        )
        raise UsageError(msg)
    selection_values: dict[str, str] = {}
    for name in SELECTION_NAMES:
        given = _single(grouped, name, name.upper())
        if given:
            selection_values[name] = given[0]
    selection = Selection.from_request(selection_values)
    typed = {name: _typed(spec, grouped) for name, spec in _DECLARED.items() if name in grouped}
    values = {name: value for name, value in typed.items() if value is not None}
    classes = _classes(grouped.get("class", []))
    positive = values.get("positive_class", classes[0])
    if positive not in classes:
        msg = f"positive_class: {positive!r} is not one of the classes {list(classes)}"
        raise UsageError(msg)
    preprocessing = {p.name: values[p.name] for p in PREPROCESSING_PARAMETERS if p.name in values}
    wl_min, wl_max = preprocessing.get("wl_min"), preprocessing.get("wl_max")
    if wl_min is not None and wl_max is not None and not wl_min < wl_max:
        msg = f"wl_min ({wl_min:g}) must be below wl_max ({wl_max:g})"
        raise UsageError(msg)
    target = values.get("precision_target")
    if target is not None and target <= 0.0:
        msg = f"precision_target: must be above 0 and at most 1, not {target}"
        raise UsageError(msg)
    batch_size = int(values.get("batch_size", 100))
    try:
        settings = SessionSettings(
            classes=classes,
            positive_class=positive,
            strategy=str(values.get("strategy", "diverse")),
            batch_size=batch_size,
            seed_size=int(values.get("seed_size", batch_size)),
            precision_sample=int(values.get("precision_sample", 30)),
            mc_samples=int(values.get("mc_samples", 20)),
            max_candidates=int(values.get("max_candidates", 1000)),
            seed=int(values.get("seed", 0)),
            max_epochs=int(values.get("max_epochs", 60)),
            selection=selection.parameters(),
            preprocessing=preprocessing,
        )
    except ValueError as e:
        msg = f"class: {e}"
        raise UsageError(msg) from e
    return SessionRequest(
        title=values.get("title") or None,
        settings=settings,
        criteria=StoppingCriteria(
            label_budget=values.get("label_budget"),
            uncertainty_threshold=values.get("uncertainty_threshold"),
            precision_target=target,
        ),
        auto_advance=bool(values.get("auto_advance", True)),
        selection=selection,
        labels=tuple(labels),
    )


def _single(grouped: dict[str, list[str]], name: str, shown: str) -> list[str]:
    values = [v for v in grouped.get(name, []) if v.strip()]
    if len(values) > 1:
        msg = f"{shown}: given more than once"
        raise UsageError(msg)
    return values


def _typed(spec: ParamSpec, grouped: dict[str, list[str]]) -> Any:
    if spec.multiple:
        return None
    texts = _single(grouped, spec.name, spec.name)
    if not texts:
        return None
    try:
        return spec.parse(texts[0])
    except ParameterValueError as e:
        raise UsageError(str(e)) from e


def _classes(values: Sequence[str]) -> tuple[str, ...]:
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    bad = [name for name in names if not _CLASS_NAME.match(name)]
    if bad:
        msg = f"class: {bad[:5]} are not class names (1-64 characters of letters, digits and _ + . -)"
        raise UsageError(msg)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        msg = f"class: {repeated} given more than once"
        raise UsageError(msg)
    if len(names) < 2:
        msg = f"class: a session needs at least two classes, not {names}; e.g. class=emission,absorption"
        raise UsageError(msg)
    if len(names) > MAX_CLASSES:
        msg = f"class: at most {MAX_CLASSES} classes, not {len(names)}"
        raise UsageError(msg)
    return tuple(names)
