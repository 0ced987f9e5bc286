"""A candidates table like an active-learning iteration's, written by the server's own writer over a live archive.

SAMP and labelling tests need a table whose rows are real spectra of a running
server (so that its DataLink descriptor leads to real DataLink documents and
SODA cutouts) without training a network to get one: the predictions are
random, everything else is what the server itself would write.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pyvo
import requests
from astropy.table import Table

from vocloud.server.ml.active_learning import IterationResult
from vocloud.server.ml.bcnn import Predictions
from vocloud.server.ml.candidates import SpectraMeta, candidates_document, write_candidates
from vocloud.server.ml.iteration import SessionSettings

__all__ = ["CLASSES", "write_candidates_table"]

CLASSES = ("absorption", "emission", "double-peak")
"""The demo archive's classes, those of the table's probability columns."""


def write_candidates_table(base_url: str, path: Path, *, count: int = 5, http: requests.Session | None = None) -> Table:
    """A candidates VOTable written by the server's own writer for ``count`` spectra of a live server; returns its rows.

    The positions, targets and DIDs are the archive's (from its SSA service), so the
    table's DataLink descriptor leads to real DataLink documents and SODA cutouts.
    """
    with contextlib.ExitStack() as stack:
        session = http or stack.enter_context(requests.Session())
        # The archive holds more than ``count`` spectra, which SSA reports as an overflow: expected.
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", pyvo.dal.exceptions.DALOverflowWarning)
        found = pyvo.dal.SSAService(f"{base_url}/ssa", session=session).search(maxrec=count)
        rows = found.to_table()[:count]
    n = len(rows)
    location = np.asarray(rows["ssa_location"], dtype=float).reshape(n, 2)
    meta = SpectraMeta(
        ids=[str(v) for v in rows["ssa_pubDID"]],
        ra=location[:, 0],
        dec=location[:, 1],
        target=[str(v) for v in rows["ssa_targname"]],
    )
    rng = np.random.default_rng(5)
    mean = rng.dirichlet(np.ones(len(CLASSES)), size=n).astype(np.float32)
    entropy = -(mean * np.log(mean)).sum(axis=1).astype(np.float32)
    predictions = Predictions(
        mean=mean, predicted=mean.argmax(axis=1), entropy=entropy, bald=entropy / 2,
        variation_ratio=np.full(n, 0.5, dtype=np.float32), embedding=np.zeros((n, 4), dtype=np.float32), samples=20,
    )  # fmt: skip
    result = IterationResult(
        predictions=predictions, model=None, oracle=np.arange(n, dtype=np.int64)[: n - 1],
        precision_sample=np.arange(n, dtype=np.int64)[n - 1 :], projection=rng.normal(size=(n, 2)),
        val_accuracy=None, val_macro_f1=None, mean_bald=None, mean_entropy=None, epochs=1,
    )  # fmt: skip
    settings = SessionSettings(classes=CLASSES, positive_class="emission")
    document = candidates_document(
        settings, session_id="s1", iteration=1, public_url=base_url, description="Candidates of a SAMP test"
    )
    body = write_candidates(
        document, np.arange(n, dtype=np.int64), ranks={i: i + 1 for i in range(n)}, result=result, meta=meta,
        settings=settings, public_url=base_url,
    )  # fmt: skip
    path.write_bytes(body)
    return Table.read(path, format="votable")
