"""Which unlabelled spectra to show the oracle next: query strategies of active learning, and a 2-D view.

Pure compute (numpy and scikit-learn); it reads the figures of a Bayesian CNN's
MC-dropout predictions (`vocloud.server.ml.bcnn.Predictions`) as plain arrays,
so it imports neither torch nor the web stack and can be tested without a model.

Strategies, each returning indices into the scored spectra:

* ``"random"``: a seeded uniform sample. The baseline every other strategy has
  to beat, and the only one whose labels give an unbiased estimate of the
  classifier's precision (`vocloud.server.ml.precision`).
* ``"entropy"``: the highest predictive entropy, total uncertainty; it also
  picks spectra that are merely noisy, where a label teaches little.
* ``"bald"``: the highest BALD score, where the sampled networks disagree, i.e.
  where a label is expected to change the model (Houlsby et al. 2011).
* ``"diverse"``: the top scores pick near-duplicates, because spectra that look
  alike are uncertain alike, and labelling ten copies of one confusing spectrum
  teaches about as much as labelling one. This strategy takes a candidate pool
  of the ``pool_factor * batch_size`` most uncertain spectra (by BALD, ties by
  entropy) and chooses among them by greedy k-center (farthest-first traversal,
  Sener & Savarese 2018) in the network's embedding: it starts at the most
  uncertain spectrum and repeatedly adds the candidate farthest from everything
  chosen so far, so the batch covers the pool rather than one corner of it.
  Its cost is O(pool * batch * D) with no pool-by-pool distance matrix.

Every strategy is deterministic: random for a given seed, the others outright;
ties in a score are broken by the lower index.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.decomposition import PCA

from .iteration import STRATEGIES, Strategy

__all__ = ["STRATEGIES", "Strategy", "projection_2d", "select_batch"]


DEFAULT_POOL_FACTOR = 10
"""Candidate pool of ``"diverse"`` in batches: wide enough to hold several clusters, narrow enough to stay uncertain."""


def select_batch(
    strategy: Strategy | str,
    *,
    unlabelled: ArrayLike,
    batch_size: int,
    rng_seed: int,
    entropy: ArrayLike | None = None,
    bald: ArrayLike | None = None,
    embedding: ArrayLike | None = None,
    pool_factor: int = DEFAULT_POOL_FACTOR,
) -> NDArray[np.int64]:
    """Choose the spectra to send to the oracle among the unlabelled ones.

    Score arrays cover all N scored spectra (labelled ones included, as `bcnn.predict_mc`
    returns them); ``unlabelled`` says which of them may be chosen, so labelled spectra are
    never asked for twice.

    Parameters
    ----------
    strategy
        One of `STRATEGIES`: ``"random"``, ``"entropy"``, ``"bald"`` or ``"diverse"``.
    unlabelled
        Indices (into the score arrays) of the spectra that may be chosen; distinct.
    batch_size
        How many spectra to choose; when fewer are unlabelled, all of them are returned.
    rng_seed
        Seed of ``"random"``; the other strategies are deterministic and ignore it.
    entropy
        (N,) predictive entropy; needed by ``"entropy"`` and ``"diverse"`` (as the tie-breaker).
    bald
        (N,) BALD scores; needed by ``"bald"`` and ``"diverse"``.
    embedding
        (N, D) embedding of the spectra; needed by ``"diverse"``.
    pool_factor
        ``"diverse"`` picks among the ``pool_factor * batch_size`` most uncertain spectra.

    Returns
    -------
    numpy.ndarray
        Chosen indices, int64, distinct, all from ``unlabelled``: in order of decreasing score
        for ``"entropy"`` and ``"bald"``, in order of choice for ``"diverse"`` (the most
        uncertain first), in drawing order for ``"random"``.

    Raises
    ------
    ValueError
        Raised if the strategy is unknown, ``batch_size`` or ``pool_factor`` is below 1, a
        score the strategy needs is missing, not finite, or of the wrong shape, or
        ``unlabelled`` holds duplicates or indices outside the scored spectra.
    """
    if batch_size < 1:
        msg = f"batch_size must be at least 1, not {batch_size}"
        raise ValueError(msg)
    if pool_factor < 1:
        msg = f"pool_factor must be at least 1, not {pool_factor}"
        raise ValueError(msg)
    match strategy:
        case "random":
            candidates = _candidates(unlabelled, _n_scored(entropy, bald, embedding))
            if candidates.size <= batch_size:
                return candidates
            rng = np.random.default_rng(rng_seed)
            return rng.choice(candidates, size=batch_size, replace=False).astype(np.int64)
        case "entropy":
            scores = _scores("entropy", entropy, None)
            candidates = _candidates(unlabelled, scores.size)
            return _ranked(candidates, scores)[:batch_size]
        case "bald":
            scores = _scores("bald", bald, None)
            candidates = _candidates(unlabelled, scores.size)
            return _ranked(candidates, scores)[:batch_size]
        case "diverse":
            primary = _scores("bald", bald, None)
            secondary = _scores("entropy", entropy, primary.size)
            vectors = _embedding(embedding, primary.size)
            candidates = _candidates(unlabelled, primary.size)
            pool = _ranked(candidates, primary, secondary)[: pool_factor * batch_size]
            return _k_center(pool, vectors, batch_size)
        case _:
            msg = f"Unknown selection strategy {strategy!r}; known: {', '.join(STRATEGIES)}"
            raise ValueError(msg)


def projection_2d(embedding: ArrayLike, *, seed: int = 0) -> NDArray[np.float64]:
    """Project the embedding onto its first two principal components, for the candidates table and its plot.

    PCA rather than t-SNE or UMAP because the projection is a display aid, not an analysis:
    PCA is deterministic (no random initialisation, components with a fixed sign), takes
    milliseconds where t-SNE takes minutes on an archive, needs no extra dependency, and a
    fitted projection places newly scored spectra without moving the old ones, whereas
    t-SNE and UMAP re-arrange every point whenever the set changes. Its price is that it
    keeps global variance, not local neighbourhoods, so clusters may overlap on screen.

    Parameters
    ----------
    embedding
        (N, D) embedding of N spectra.
    seed
        Seed of scikit-learn's randomised SVD, used on large inputs; fixes the result.

    Returns
    -------
    numpy.ndarray
        (N, 2) coordinates; columns beyond the data's rank (fewer than 3 spectra, D < 2,
        identical spectra) are zero.

    Raises
    ------
    ValueError
        Raised if the embedding is not a two-dimensional array of finite numbers.
    """
    vectors = np.asarray(embedding, dtype=np.float64)
    if vectors.ndim != 2:
        msg = f"embedding must be a 2-D array (spectra, dimensions), not of shape {vectors.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(vectors)):
        msg = "embedding must hold finite numbers only"
        raise ValueError(msg)
    n, d = vectors.shape
    out = np.zeros((n, 2), dtype=np.float64)
    components = min(2, n - 1, d)
    if components < 1 or np.ptp(vectors, axis=0).max() == 0.0:
        return out
    pca = PCA(n_components=components, random_state=seed)
    # A zero-variance second component makes scikit-learn divide 0 by 0 in its explained-variance ratio.
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, :components] = pca.fit_transform(vectors)
    return out


def _n_scored(*arrays: ArrayLike | None) -> int | None:
    """The number of scored spectra, from the first array given; None when none is (random needs no scores)."""
    for array in arrays:
        if array is not None:
            return int(np.shape(array)[0]) if np.ndim(array) > 0 else 0
    return None


def _scores(name: str, values: ArrayLike | None, n: int | None) -> NDArray[np.float64]:
    """A score array checked for presence, shape (matching ``n`` when given) and finiteness."""
    if values is None:
        msg = f"the {name} scores are needed by this strategy"
        raise ValueError(msg)
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1:
        msg = f"{name} must be a 1-D array of per-spectrum scores, not of shape {scores.shape}"
        raise ValueError(msg)
    if n is not None and scores.size != n:
        msg = f"{name} scores {scores.size} spectra where the other scores cover {n}"
        raise ValueError(msg)
    if not np.all(np.isfinite(scores)):
        msg = f"{name} scores must be finite"
        raise ValueError(msg)
    return scores


def _embedding(values: ArrayLike | None, n: int) -> NDArray[np.float64]:
    """The embedding checked for presence, shape (n, D) and finiteness."""
    if values is None:
        msg = "the embedding is needed by the diverse strategy"
        raise ValueError(msg)
    vectors = np.asarray(values, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        msg = f"embedding must have shape ({n}, D) to match the scores, not {vectors.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(vectors)):
        msg = "embedding must hold finite numbers only"
        raise ValueError(msg)
    return vectors


def _candidates(unlabelled: ArrayLike, n: int | None) -> NDArray[np.int64]:
    """The unlabelled indices as sorted int64, checked to be distinct and (when ``n`` is known) in range."""
    raw = np.asarray(unlabelled)
    if raw.ndim != 1:
        msg = f"unlabelled must be a 1-D array of indices, not of shape {raw.shape}"
        raise ValueError(msg)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        msg = f"unlabelled must hold integer indices, not {raw.dtype}"
        raise ValueError(msg)
    indices = np.sort(raw.astype(np.int64))
    if indices.size and indices[0] < 0:
        msg = f"unlabelled holds a negative index, {indices[0]}"
        raise ValueError(msg)
    if indices.size and n is not None and indices[-1] >= n:
        msg = f"unlabelled holds index {indices[-1]} but only {n} spectra are scored"
        raise ValueError(msg)
    if np.any(indices[1:] == indices[:-1]):
        msg = "unlabelled holds duplicate indices"
        raise ValueError(msg)
    return indices


def _ranked(
    candidates: NDArray[np.int64],
    primary: NDArray[np.float64],
    secondary: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """Candidates by decreasing primary score, then decreasing secondary score, then increasing index."""
    keys: list[NDArray[np.generic]] = [candidates]
    if secondary is not None:
        keys.append(-secondary[candidates])
    keys.append(-primary[candidates])
    # lexsort sorts by the last key first and is stable, so equal scores keep the (sorted) index order.
    return candidates[np.lexsort(keys)]


def _k_center(pool: NDArray[np.int64], vectors: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Greedy k-center over a pool ordered by uncertainty: start at its head, then add the farthest candidate.

    Only the distance of each candidate to its nearest chosen point is kept and updated once per
    pick. Ties (duplicates, equal distances) go to the earlier, i.e. more uncertain, candidate.
    """
    if pool.size <= k:
        return pool
    points = vectors[pool]
    chosen = np.zeros(k, dtype=np.int64)
    nearest = np.sum((points - points[0]) ** 2, axis=1)
    nearest[0] = -np.inf
    for i in range(1, k):
        pick = int(np.argmax(nearest))
        chosen[i] = pick
        # Chosen candidates sit at -inf and stay there under the minimum.
        nearest = np.minimum(nearest, np.sum((points - points[pick]) ** 2, axis=1))
        nearest[pick] = -np.inf
    return pool[chosen]
