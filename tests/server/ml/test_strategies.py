"""Query strategies pick what they promise, only among unlabelled spectra; the diverse one (BADGE) avoids duplicates."""

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
    probabilities = rng.dirichlet(np.ones(3), size=n)
    entropy = rng.random(n)
    bald = entropy * rng.random(n)
    embedding = rng.normal(size=(n, 5))
    unlabelled = rng.choice(n, size=120, replace=False)
    # The labelled spectra are made the most uncertain of all: a strategy that looked at them would pick them.
    labelled = np.setdiff1d(np.arange(n), unlabelled)
    entropy[labelled] += 10.0
    bald[labelled] += 10.0
    # Labelled spectra hesitate most: their gradients are the longest.
    probabilities[labelled] = 1.0 / 3.0
    chosen = select_batch(
        strategy,
        entropy=entropy,
        bald=bald,
        embedding=embedding,
        probabilities=probabilities,
        unlabelled=unlabelled,
        batch_size=15,
        rng_seed=3,
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
        probabilities=rng.dirichlet(np.ones(3), size=n),
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
    """Clusters of near-duplicate spectra far apart in the embedding; uncertainty falls cluster by cluster.

    Every spectrum hesitates between classes 0 and 1; the first cluster is the most uncertain
    (probabilities nearest 0.5/0.5), so BALD's top scores all sit in it.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(clusters, 8))
    embedding = np.repeat(centres, copies, axis=0) + rng.normal(scale=0.01, size=(clusters * copies, 8))
    bald = np.repeat(np.linspace(1.0, 0.5, clusters), copies) + rng.uniform(0, 0.01, clusters * copies)
    p_top = 1.0 - 0.5 * bald / bald.max()
    probabilities = np.stack([p_top, 1.0 - p_top, np.zeros_like(p_top)], axis=1)
    return {"embedding": embedding, "bald": bald, "entropy": bald + 0.1, "probabilities": probabilities}


def test_diverse_picks_one_spectrum_per_cluster_where_bald_picks_duplicates() -> None:
    clusters, copies = 6, 10
    data = clustered_candidates(clusters=clusters, copies=copies, seed=5)
    unlabelled = np.arange(clusters * copies)
    for seed in range(5):
        diverse = select_batch("diverse", unlabelled=unlabelled, batch_size=clusters, rng_seed=seed, **data)
        assert sorted((diverse // copies).tolist()) == list(range(clusters))
    bald = select_batch("bald", unlabelled=unlabelled, batch_size=clusters, rng_seed=0, bald=data["bald"])
    assert set((bald // copies).tolist()) == {0}


def test_diverse_starts_at_the_longest_gradient() -> None:
    # Equal embeddings' lengths: the longest gradient is that of the most uncertain spectrum.
    embedding = np.tile([1.0, 0.0], (4, 1)) + np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.95, 0.05]])
    chosen = select_batch(
        "diverse", embedding=embedding, probabilities=probabilities, unlabelled=np.arange(4), batch_size=1, rng_seed=0
    )
    np.testing.assert_array_equal(chosen, [1])


def test_diverse_takes_at_most_one_confident_spectrum() -> None:
    # Confident spectra have zero gradients: once one is chosen the others are at distance 0 from it.
    rng = np.random.default_rng(11)
    n_confident, n_uncertain = 200, 30
    probabilities = np.vstack(
        [np.tile([1.0, 0.0, 0.0], (n_confident, 1)), np.tile([0.4, 0.35, 0.25], (n_uncertain, 1))]
    )
    embedding = rng.normal(size=(n_confident + n_uncertain, 6))
    for seed in range(10):
        chosen = select_batch(
            "diverse",
            embedding=embedding,
            probabilities=probabilities,
            unlabelled=np.arange(n_confident + n_uncertain),
            batch_size=20,
            rng_seed=seed,
        )
        assert np.sum(chosen < n_confident) <= 1


def test_diverse_is_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(7)
    probabilities = rng.dirichlet(np.ones(3), size=300)
    data = {"embedding": rng.normal(size=(300, 5)), "probabilities": probabilities}
    runs = [select_batch("diverse", unlabelled=np.arange(300), batch_size=10, rng_seed=s, **data) for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_diverse_fills_the_batch_when_only_duplicates_remain() -> None:
    # Three identical spectra: after the first, every distance is zero, yet three are asked for.
    embedding = np.ones((3, 4))
    probabilities = np.tile([0.5, 0.5], (3, 1))
    chosen = select_batch(
        "diverse", embedding=embedding, probabilities=probabilities, unlabelled=[0, 1, 2], batch_size=3, rng_seed=0
    )
    assert sorted(chosen.tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "margin", "entropy": np.ones(3)}, "Unknown selection strategy 'margin'"),
        ({"strategy": "entropy", "entropy": np.ones(3), "batch_size": 0}, "batch_size must be at least 1"),
        ({"strategy": "bald", "entropy": np.ones(3)}, "bald scores are needed"),
        ({"strategy": "diverse", "probabilities": np.ones((3, 2))}, "embedding is needed"),
        ({"strategy": "diverse", "embedding": np.ones((3, 4))}, "class probabilities are needed"),
        (
            {"strategy": "diverse", "embedding": np.ones((3, 4)), "probabilities": np.ones((2, 2))},
            r"probabilities must have shape \(3, K\)",
        ),
        ({"strategy": "diverse", "embedding": np.ones(3), "probabilities": np.ones((3, 2))}, "2-D array"),
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
