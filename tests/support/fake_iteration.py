"""A fast, deterministic stand-in for the ``active_learning`` runner, and an executor that runs it.

The real runner trains a CNN (minutes); session tests need iterations that
finish in milliseconds and whose choices the test can predict. The fake reads
the `IterationInput` like the real one, selects the session's spectra from the
archive (the same query an iteration job makes), and reports:

* oracle batch: the first ``batch_size`` (``seed_size`` on a cold start, i.e.
  fewer than two classes labelled) unlabelled DIDs of the selection, in DID order;
* precision sample: the next ``precision_sample`` unlabelled DIDs (none on a cold start);
* metrics that are simple functions of the number of labels (`fake_mean_bald`, ...).

Behaviour a test can ask for through the session's ``max_epochs``:
`FAIL_EPOCHS` makes the iteration fail with a usage error, `HOLD_EPOCHS` keeps
it running until the file `HOLD_FILE` exists in the server's data directory.

`FakeIterationExecutor` wraps the real `LocalExecutor` and swaps the runner of
``active_learning`` tasks only, so everything else (the job service, workers,
uploads, results) is the production path.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from vocloud.server.archive.service import Archive
from vocloud.server.executor.base import ProgressCallback, RunningTask, TaskSpec
from vocloud.server.executor.local import LocalExecutor
from vocloud.server.kinds import JobContext, JobUsageError
from vocloud.server.ml.active_learning_kind import ACTIVE_LEARNING
from vocloud.server.ml.iteration import IterationInput, IterationOutcome
from vocloud.server.sessions.selection import Selection
from vocloud.server.votable import FieldSpec, ResultDocument

__all__ = [
    "FAIL_EPOCHS",
    "FAKE_RUNNER",
    "HOLD_EPOCHS",
    "HOLD_FILE",
    "FakeIterationExecutor",
    "fake_accuracy",
    "fake_mean_bald",
    "run",
]

FAKE_RUNNER = "tests.support.fake_iteration:run"

FAIL_EPOCHS = 13
"""A session with this ``max_epochs`` gets iterations that fail (a usage error with `FAIL_MESSAGE`)."""

FAIL_MESSAGE = "The fake iteration fails on purpose"

HOLD_EPOCHS = 7
"""A session with this ``max_epochs`` gets iterations that run until `HOLD_FILE` appears."""

HOLD_FILE = "release-fake-iterations"
"""File in the server's data directory whose existence lets held iterations finish."""

_HOLD_LIMIT_S = 60.0


def fake_mean_bald(labels_used: int) -> float:
    """Mean BALD the fake reports after training on ``labels_used`` labels (falls as labels grow)."""
    return 1.0 / (1.0 + labels_used)


def fake_accuracy(labels_used: int) -> float:
    """Validation accuracy the fake reports (rises as labels grow)."""
    return min(1.0, 0.5 + 0.01 * labels_used)


_ORACLE = ResultDocument(
    fields=(FieldSpec(name="id", datatype="char", arraysize="*", ucd="meta.ref.ivoid"),),
    description="Fake oracle batch",
)


def run(params: dict[str, Any], context: JobContext) -> None:
    """Read the iteration input, choose deterministically, write the ``iteration``, ``oracle`` and ``result``."""
    given = IterationInput.from_json(Path(params["session"]).read_bytes())
    settings = given.settings
    if context.server is None:
        msg = "No archive"
        raise JobUsageError(msg)
    if settings.max_epochs == FAIL_EPOCHS:
        raise JobUsageError(FAIL_MESSAGE)
    if settings.max_epochs == HOLD_EPOCHS:
        release = context.server.data_dir / HOLD_FILE
        deadline = time.monotonic() + _HOLD_LIMIT_S
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    archive = Archive(context.server.archive_dir)
    try:
        records = archive.store.search(Selection.from_parameters(settings.selection).query)
    finally:
        archive.close()
    dids = sorted(r.obs_publisher_did for r in records)
    labels = given.labels
    unlabelled = [did for did in dids if did not in labels]
    cold = len(set(labels.values())) < 2
    size = settings.seed_size if cold else settings.batch_size
    oracle = tuple(unlabelled[:size])
    sample = () if cold else tuple(unlabelled[size : size + settings.precision_sample])
    used = len(labels)
    outcome = IterationOutcome(
        iteration=given.iteration,
        labels_used=used,
        label_counts=dict(Counter(labels.values())),
        scored=len(dids),
        cold_start=cold,
        oracle=oracle,
        precision_sample=sample,
        predicted_positive=0 if cold else len(unlabelled) - len(oracle),
        val_accuracy=None if cold else fake_accuracy(used),
        val_macro_f1=None if cold else fake_accuracy(used) - 0.05,
        mean_bald=None if cold else fake_mean_bald(used),
        mean_entropy=None if cold else 2 * fake_mean_bald(used),
        epochs=0 if cold else 1,
        feature_key="fake",
    )
    context.result_path("iteration").write_text(outcome.to_json(), encoding="utf-8")
    context.result_path("oracle").write_bytes(_ORACLE.write({"id": list(oracle)}, rows=len(oracle)))
    context.result_path("result").write_bytes(_ORACLE.write({"id": list(oracle + sample)}, rows=len(oracle + sample)))


class FakeIterationExecutor:
    """The local process pool, running `run` in place of the ``active_learning`` runner.

    Parameters
    ----------
    workers
        Worker processes of the pool.
    """

    def __init__(self, *, workers: int = 2) -> None:
        self._inner = LocalExecutor(workers=workers)

    @property
    def capacity(self) -> int:
        """How many tasks may run at once."""
        return self._inner.capacity

    async def start(self, on_progress: ProgressCallback) -> None:
        """Start the pool."""
        await self._inner.start(on_progress)

    async def close(self) -> None:
        """Stop the pool."""
        await self._inner.close()

    def submit(self, task: TaskSpec) -> RunningTask:
        """Run the task, with the fake runner if it is an iteration."""
        if task.runner == ACTIVE_LEARNING.runner:
            task = dataclasses.replace(task, runner=FAKE_RUNNER)
        return self._inner.submit(task)
