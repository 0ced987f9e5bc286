"""Query strategies pick what they promise, only among unlabelled spectra, and the diverse one avoids duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from vocloud.server.ml import strategies
from vocloud.server.ml.strategies import projection_2d, select_batch

pytestmark = pytest.mark.timeout(30)


def test_strategies_are_listed() -> None:
    assert strategies.STRATEGIES == ("random", "entropy", "bald", "diverse")


@pytest.mark.parametrize("strategy", ["entropy", "bald"])
def test_top_score_strategies_pick_exactly_the_top_k(strategy: str) -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(200)
    unlabelled = np.arange(200)
    chosen = select_batch(strategy, unlabelled=unlabelled, batch_size=7, rng_seed=0, **{strategy: scores})
    assert chosen.dtype == np.int64
    np.testing.assert_array_equal(chosen, np.argsort(-scores)[:7])


def test_top_score_ties_go_to_the_lower_index() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    chosen = select_batch("bald", bald=scores, unlabelled=[4, 3, 2, 1, 0], batch_size=3, rng_seed=0)
    np.testing.assert_array_equal(chosen, [1, 3, 0])


@pytest.mark.parametrize("strategy", ["random", "entropy", "bald", "diverse"])
def test_only_unlabelled_spectra_are_returned(strategy: str) -> None:
    rng = np.random.default_rng(2)
    n = 300
    entropy = rng.random(n)
    bald = entropy * rng.random(n)
    embedding = rng.normal(size=(n, 5))
    unlabelled = rng.choice(n, size=120, replace=False)
    # The labelled spectra are made the most uncertain of all: a strategy that looked at them would pick them.
    labelled = np.setdiff1d(np.arange(n), unlabelled)
    entropy[labelled] += 10.0
    bald[labelled] += 10.0
    chosen = select_batch(
        strategy, entropy=entropy, bald=bald, embedding=embedding, unlabelled=unlabelled, batch_size=15, rng_seed=3
    )
    assert chosen.size == 15
    assert np.unique(chosen).size == 15
    assert set(chosen.tolist()) <= set(unlabelled.tolist())


@pytest.mark.parametrize("strategy", ["random", "entropy", "bald", "diverse"])
def test_a_batch_larger_than_the_unlabelled_set_returns_all_of_it(strategy: str) -> None:
    rng = np.random.default_rng(4)
    n = 20
    chosen = select_batch(
        strategy,
        entropy=rng.random(n),
        bald=rng.random(n),
        embedding=rng.normal(size=(n, 3)),
        unlabelled=[9, 3, 14],
        batch_size=5,
        rng_seed=0,
    )
    assert sorted(chosen.tolist()) == [3, 9, 14]


def test_an_empty_unlabelled_set_gives_an_empty_batch() -> None:
    chosen = select_batch(
        "entropy", entropy=np.ones(4), unlabelled=np.array([], dtype=np.int64), batch_size=2, rng_seed=0
    )
    assert chosen.size == 0


def test_random_is_seeded_and_reproducible() -> None:
    unlabelled = np.arange(1000)
    first = select_batch("random", unlabelled=unlabelled, batch_size=50, rng_seed=7)
    again = select_batch("random", unlabelled=unlabelled[::-1], batch_size=50, rng_seed=7)
    other = select_batch("random", unlabelled=unlabelled, batch_size=50, rng_seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_is_roughly_uniform() -> None:
    n, batch, draws = 20, 5, 4000
    counts = np.zeros(n)
    for seed in range(draws):
        counts[select_batch("random", unlabelled=np.arange(n), batch_size=batch, rng_seed=seed)] += 1
    expected = draws * batch / n
    # Each count is binomial(4000, 0.25): standard deviation about 27; 5 sigma is far from flaky.
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(draws * 0.25 * 0.75))


def clustered_candidates(*, clusters: int, copies: int, seed: int) -> dict[str, np.ndarray]:
    """Clusters of near-duplicate spectra far apart in the embedding; one cluster is the most uncertain of all."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(clusters, 8))
    embedding = np.repeat(centres, copies, axis=0) + rng.normal(scale=0.01, size=(clusters * copies, 8))
    # Uncertainty falls cluster by cluster, so the top scores all sit in the first clusters.
    bald = np.repeat(np.linspace(1.0, 0.5, clusters), copies) + rng.uniform(0, 0.01, clusters * copies)
    return {"embedding": embedding, "bald": bald, "entropy": bald + 0.1}


def test_diverse_picks_one_spectrum_per_cluster_where_bald_picks_duplicates() -> None:
    clusters, copies = 6, 10
    data = clustered_candidates(clusters=clusters, copies=copies, seed=5)
    unlabelled = np.arange(clusters * copies)
    diverse = select_batch("diverse", unlabelled=unlabelled, batch_size=clusters, rng_seed=0, **data)
    bald = select_batch("bald", unlabelled=unlabelled, batch_size=clusters, rng_seed=0, bald=data["bald"])
    assert sorted((diverse // copies).tolist()) == list(range(clusters))
    assert set((bald // copies).tolist()) == {0}
    # It starts from the most uncertain spectrum of all.
    assert diverse[0] == bald[0]


def test_diverse_only_looks_at_the_uncertain_pool() -> None:
    clusters, copies = 6, 10
    data = clustered_candidates(clusters=clusters, copies=copies, seed=6)
    # A pool of 2 * 3 = 6 spectra lies inside the most uncertain cluster: no other cluster may be chosen.
    chosen = select_batch(
        "diverse", unlabelled=np.arange(clusters * copies), batch_size=3, rng_seed=0, pool_factor=2, **data
    )
    assert set((chosen // copies).tolist()) == {0}


def test_diverse_is_deterministic_and_ignores_the_seed() -> None:
    data = clustered_candidates(clusters=5, copies=8, seed=7)
    runs = [select_batch("diverse", unlabelled=np.arange(40), batch_size=4, rng_seed=s, **data) for s in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_diverse_breaks_bald_ties_by_entropy() -> None:
    bald = np.zeros(4)
    entropy = np.array([0.1, 0.4, 0.3, 0.2])
    embedding = np.eye(4)
    chosen = select_batch(
        "diverse", bald=bald, entropy=entropy, embedding=embedding, unlabelled=np.arange(4), batch_size=1, rng_seed=0
    )
    np.testing.assert_array_equal(chosen, [1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "margin", "entropy": np.ones(3)}, "Unknown selection strategy 'margin'"),
        ({"strategy": "entropy", "entropy": np.ones(3), "batch_size": 0}, "batch_size must be at least 1"),
        ({"strategy": "diverse", "bald": np.ones(3), "entropy": np.ones(3), "pool_factor": 0}, "pool_factor"),
        ({"strategy": "bald", "entropy": np.ones(3)}, "bald scores are needed"),
        ({"strategy": "diverse", "bald": np.ones(3), "entropy": np.ones(4)}, "entropy scores 4 spectra"),
        ({"strategy": "diverse", "bald": np.ones(3), "entropy": np.ones(3)}, "embedding is needed"),
        (
            {"strategy": "diverse", "bald": np.ones(3), "entropy": np.ones(3), "embedding": np.ones((2, 4))},
            r"embedding must have shape \(3, D\)",
        ),
        ({"strategy": "entropy", "entropy": np.ones((3, 1))}, "1-D array"),
        ({"strategy": "entropy", "entropy": np.array([1.0, np.nan, 0.0])}, "must be finite"),
        ({"strategy": "entropy", "entropy": np.ones(3), "unlabelled": [0, 3]}, "index 3 but only 3 spectra"),
        ({"strategy": "entropy", "entropy": np.ones(3), "unlabelled": [-1]}, "negative index"),
        ({"strategy": "entropy", "entropy": np.ones(3), "unlabelled": [1, 1]}, "duplicate"),
        ({"strategy": "entropy", "entropy": np.ones(3), "unlabelled": [0.5]}, "integer indices"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"unlabelled": [0, 1, 2], "batch_size": 2, "rng_seed": 0} | kwargs
    strategy = arguments.pop("strategy")
    with pytest.raises(ValueError, match=message):
        select_batch(strategy, **arguments)  # type: ignore[arg-type]


def test_projection_has_two_columns_and_is_deterministic() -> None:
    rng = np.random.default_rng(8)
    embedding = rng.normal(size=(500, 16)).astype(np.float32)
    first = projection_2d(embedding, seed=0)
    again = projection_2d(embedding.copy(), seed=0)
    assert first.shape == (500, 2)
    np.testing.assert_array_equal(first, again)
    # The first axis carries at least as much variance as the second.
    assert first[:, 0].var() >= first[:, 1].var()


def test_projection_separates_clusters_along_its_first_axis() -> None:
    rng = np.random.default_rng(9)
    embedding = rng.normal(scale=0.1, size=(100, 10))
    embedding[50:, 3] += 5.0
    x = projection_2d(embedding, seed=0)[:, 0]
    assert min(x[:50].max(), x[50:].max()) < max(x[:50].min(), x[50:].min())


@pytest.mark.parametrize("shape", [(0, 4), (1, 4), (2, 4), (5, 1)])
def test_projection_of_degenerate_embeddings_is_padded_with_zeros(shape: tuple[int, int]) -> None:
    embedding = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    projected = projection_2d(embedding, seed=0)
    assert projected.shape == (shape[0], 2)
    assert np.all(np.isfinite(projected))
    if shape[0] < 3 or shape[1] < 2:
        np.testing.assert_array_equal(projected[:, 1], 0.0)


def test_projection_of_identical_spectra_is_zero() -> None:
    np.testing.assert_array_equal(projection_2d(np.ones((10, 4)), seed=0), np.zeros((10, 2)))


@pytest.mark.parametrize("embedding", [np.ones(4), np.array([[1.0, np.inf]])])
def test_projection_rejects_bad_embeddings(embedding: np.ndarray) -> None:
    with pytest.raises(ValueError, match="embedding must"):
        projection_2d(embedding, seed=0)
