"""The learning curve of an active-learning session: one row per iteration, as a VOTable and as a PNG plot.

The astronomer's question after each iteration is whether labelling more is
still worth it: validation accuracy and macro-F1 against the labels used say
how fast the classifier improves, and the precision of the predicted positives
with its interval says how far it can be trusted. The VOTable is for TOPCAT
and scripts; the PNG, drawn with Pillow like the spectrum previews
(:mod:`vocloud.server.preview` says why not matplotlib), is for a glance.

Pure compute: no files, no archive, no web stack.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw

from ..preview import Font, nice_ticks, plot_canvas, tick_label, vertical_text
from ..votable import FieldSpec, ParamSpec, ResultDocument
from .iteration import IterationRecord

__all__ = ["HEIGHT", "WIDTH", "learning_curve_document", "render_learning_curve", "write_learning_curve"]

WIDTH, HEIGHT = 800, 420
"""Size of the plot in pixels."""

_MARGINS = (64, 34, 20, 92)
"""Left, top, right, bottom margins of the plot area, in plot pixels (the legend sits below the axis label)."""

_AXES = (0, 0, 0)
_GRID = (225, 225, 225)
_SERIES = (
    ("val_accuracy", "validation accuracy", (31, 119, 180)),
    ("val_macro_f1", "validation macro-F1", (255, 127, 14)),
    ("precision", "precision of predicted positives (95 % interval)", (44, 160, 44)),
)
"""(attribute of IterationRecord, legend text, colour) of each plotted series."""

_FIELDS = (
    FieldSpec(name="iteration", datatype="int", ucd="meta.number", description="The session's iteration"),
    FieldSpec(name="labels_used", datatype="long", ucd="meta.number", description="Labels the model was trained on"),
    FieldSpec(name="val_accuracy", datatype="double",
              description="Accuracy on the labels held out from training (null when too few)"),
    FieldSpec(name="val_macro_f1", datatype="double",
              description="Macro-averaged F1 on the labels held out from training (null when too few)"),
    FieldSpec(name="mean_bald", datatype="double", description="Mean BALD over the unlabelled spectra (nat)"),
    FieldSpec(name="mean_entropy", datatype="double",
              description="Mean predictive entropy over the unlabelled spectra (nat)"),
    FieldSpec(name="precision", datatype="double",
              description="Precision of the predicted-positive class from its labelled random sample"),
    FieldSpec(name="precision_low", datatype="double", description="Lower bound of the Wilson 95 % interval"),
    FieldSpec(name="precision_high", datatype="double", description="Upper bound of the Wilson 95 % interval"),
    FieldSpec(name="precision_n", datatype="int", ucd="meta.number",
              description="Labelled spectra of the precision sample behind the estimate"),
)  # fmt: skip


def learning_curve_document(*, session_id: str, positive_class: str) -> ResultDocument:
    """The VOTable writer of a session's learning curve."""
    params = (
        ParamSpec(name="session_id", datatype="char", arraysize="*", ucd="meta.id", value=session_id,
                  description="The active-learning session"),
        ParamSpec(name="positive_class", datatype="unicodeChar", arraysize="*", value=positive_class,
                  description="The class whose precision is estimated"),
    )  # fmt: skip
    return ResultDocument(
        fields=_FIELDS,
        params=params,
        description="Learning curve of an active-learning session: one row per iteration",
    )


def write_learning_curve(document: ResultDocument, records: Sequence[IterationRecord]) -> bytes:
    """Serialise the records (oldest first) with a document from `learning_curve_document`."""
    columns = {spec.name: [getattr(record, spec.name) for record in records] for spec in _FIELDS}
    # An iteration without a labelled precision sample has no interval, whatever the record's defaults say.
    for name in ("precision_low", "precision_high"):
        columns[name] = [
            None if record.precision is None else value for record, value in zip(records, columns[name], strict=True)
        ]
    return document.write(columns, rows=len(records))


def render_learning_curve(records: Sequence[IterationRecord], *, title: str) -> bytes:
    """A PNG plot of accuracy, macro-F1 and precision (with its interval as error bars) against labels used.

    Points without a value (a cold start, an unlabelled precision sample) are left out and
    the line joins the points on either side; with no value at all the axes are drawn empty,
    so the result always exists.
    """
    canvas = plot_canvas(WIDTH, HEIGHT, _MARGINS)
    image, draw, font, s = canvas.image, canvas.draw, canvas.font, canvas.scale
    x0, x1, y0, y1 = canvas.box

    labels = [float(r.labels_used) for r in records]
    low, high = (min(labels), max(labels)) if labels else (0.0, 1.0)
    pad = max(0.05 * (high - low), 1.0)
    low, high = max(low - pad, 0.0) if low >= 0 else low - pad, high + pad

    def x_of(value: float) -> float:
        return x0 + (value - low) * (x1 - x0) / (high - low)

    def y_of(value: float) -> float:
        return y1 - value * (y1 - y0)

    x_ticks = nice_ticks(low, high)
    for tick in x_ticks:
        x = x_of(tick)
        draw.line([(x, y0), (x, y1)], fill=_GRID, width=s)
        draw.line([(x, y1), (x, y1 + 5 * s)], fill=_AXES, width=s)
        draw.text((x, y1 + 7 * s), tick_label(tick, x_ticks), fill=_AXES, font=font, anchor="ma")
    y_ticks = [i / 5 for i in range(6)]
    for tick in y_ticks:
        y = y_of(tick)
        draw.line([(x0, y), (x1, y)], fill=_GRID, width=s)
        draw.line([(x0 - 5 * s, y), (x0, y)], fill=_AXES, width=s)
        draw.text((x0 - 7 * s, y), f"{tick:.1f}", fill=_AXES, font=font, anchor="rm")

    for attribute, _, colour in _SERIES:
        points = [
            (x_of(float(r.labels_used)), y_of(value))
            for r in records
            if (value := _finite(getattr(r, attribute))) is not None
        ]
        if attribute == "precision":
            _error_bars(draw, records, x_of, y_of, colour, s=s)
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 * s)
        for x, y in points:
            r = 3.5 * s
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    draw.rectangle([x0, y0, x1, y1], outline=_AXES, width=s)

    draw.text(((x0 + x1) / 2, 10 * s), title, fill=_AXES, font=font, anchor="ma")
    draw.text(((x0 + x1) / 2, y1 + 24 * s), "Labels used", fill=_AXES, font=font, anchor="ma")
    vertical_text(image, (8 * s, (y0 + y1) // 2), "Score", font)
    _legend(draw, font, x=x0, y=y1 + 46 * s, s=s)
    if not records:
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), "no iterations yet", fill=_AXES, font=font, anchor="mm")

    small = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _error_bars(
    draw: ImageDraw.ImageDraw,
    records: Sequence[IterationRecord],
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
    colour: tuple[int, int, int],
    *,
    s: int,
) -> None:
    """Vertical bars with caps from ``precision_low`` to ``precision_high`` where precision was measured."""
    for record in records:
        low, high = _finite(record.precision_low), _finite(record.precision_high)
        if _finite(record.precision) is None or low is None or high is None:
            continue
        x = x_of(float(record.labels_used))
        top, bottom = y_of(high), y_of(low)
        draw.line([(x, top), (x, bottom)], fill=colour, width=s)
        for y in (top, bottom):
            draw.line([(x - 4 * s, y), (x + 4 * s, y)], fill=colour, width=s)


def _legend(draw: ImageDraw.ImageDraw, font: Font, *, x: float, y: float, s: int) -> None:
    for _, text, colour in _SERIES:
        draw.line([(x, y), (x + 22 * s, y)], fill=colour, width=2 * s)
        draw.ellipse([x + 11 * s - 3.5 * s, y - 3.5 * s, x + 11 * s + 3.5 * s, y + 3.5 * s], fill=colour)
        draw.text((x + 28 * s, y), text, fill=_AXES, font=font, anchor="lm")
        x += 28 * s + draw.textlength(text, font=font) + 18 * s
