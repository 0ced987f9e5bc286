"""Declaration of the ``active_learning`` job kind: one iteration of an active-learning session.

Its runner lives in :mod:`.active_learning_job`; kept apart so that the server,
which only needs the declaration, never imports torch. Sessions
(:mod:`vocloud.server.sessions`) create these jobs; the ``session`` file is an
`IterationInput` in JSON (:mod:`.iteration`), so a user can also rerun an
iteration by hand from a saved input.
"""

from __future__ import annotations

from ..kinds import JobKind, ParamSpec, ParamType, ResultSpec

__all__ = ["ACTIVE_LEARNING", "CHECKPOINT_MIME", "VOTABLE_MIME"]

VOTABLE_MIME = "application/x-votable+xml"
CHECKPOINT_MIME = "application/octet-stream"

ACTIVE_LEARNING = JobKind(
    name="active_learning",
    title="One iteration of active learning: train a Bayesian CNN, score the archive, choose what to label next",
    description=(
        "Preprocesses the session's selection of the archive (or reuses the cached feature store), trains a"
        " Bayesian 1-D CNN with MC dropout on the labels given so far, scores every spectrum (class"
        " probabilities, predictive entropy, BALD, variation ratio, a 2-D projection of the embedding), and"
        " chooses the next oracle batch with the session's strategy (random, entropy, BALD, or a diverse"
        " batch: BADGE, k-means++ over the loss gradients built from the embedding) plus a random sample of predicted"
        " positives whose labels estimate precision. With fewer than two classes labelled it draws a random"
        " seed batch instead. Usually created by an active-learning session (/sessions)."
    ),
    runner="vocloud.server.ml.active_learning_job:run_active_learning",
    parameters=(
        ParamSpec(name="session", type=ParamType.FILE, required=True,
                  description="The iteration input (JSON): session settings, labels so far, earlier iterations"),
    ),
    results=(
        ResultSpec(name="result", mime_type=VOTABLE_MIME,
                   description="Candidates: the most uncertain spectra with predicted class, class probabilities,"
                   " entropy, BALD, 2-D projection and oracle/precision-sample flags; rows reach their spectra,"
                   " previews and SODA cutouts through DataLink"),
        ResultSpec(name="oracle", mime_type=VOTABLE_MIME, description="The oracle batch: the spectra to label next"),
        ResultSpec(name="precision_sample", mime_type=VOTABLE_MIME,
                   description="Random sample of unlabelled predicted positives; their labels estimate precision"),
        ResultSpec(name="learning_curve", mime_type=VOTABLE_MIME,
                   description="Validation accuracy, macro-F1, mean uncertainty and precision by iteration"),
        ResultSpec(name="learning_curve_png", mime_type="image/png", description="The learning curve as a plot"),
        ResultSpec(name="model", mime_type=CHECKPOINT_MIME,
                   description="The trained network's checkpoint (torch, loadable with weights_only=True)"),
        ResultSpec(name="iteration", mime_type="application/json",
                   description="What the iteration produced (oracle batch, precision sample, metrics), as JSON"),
    ),
)  # fmt: skip
