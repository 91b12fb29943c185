"""Exact and near-duplicate detection (MinHash + LSH banding, linear time)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from metahuman_lib._dedup import (
    duplicates_of,
    find_duplicates,
    fingerprint,
    join_fingerprints,
    lsh_bands,
    minhash_signatures,
)

BASE = ("the greenhouse vents opened at nine and the tomatoes finally look happy again after a "
        "cold week of frost warnings and covered beds in the garden while the dog dug holes near "
        "the fence and I read a novel on the porch with coffee")


def test_exact_duplicates_ignore_case_punctuation_and_spacing() -> None:
    texts = ["Hello, world! This is it.", "hello   WORLD this is it", "Hello world, this is not it."]
    result = find_duplicates(texts)
    assert result.exact_of.tolist() == [-1, 0, -1]


def test_near_duplicates_at_and_below_threshold() -> None:
    words = BASE.split()
    one_word_changed = " ".join(words[:-1] + ["allotment"])  # 3 of n shingles differ
    half_changed = " ".join(words[:20] + [f"other{i}" for i in range(20)])
    result = find_duplicates([BASE, one_word_changed, half_changed], threshold=0.8)
    assert result.exact_of.tolist() == [-1, -1, -1]
    assert result.near_of.tolist() == [-1, 0, -1]
    n = len(words)
    assert result.near_similarity[1] == pytest.approx((n - 3) / (n + 3), abs=0.1)
    assert find_duplicates([BASE, one_word_changed], threshold=0.9).near_of.tolist() == [-1, -1]
    assert find_duplicates([BASE, one_word_changed], threshold=1.0).near_of.tolist() == [-1, -1]


def test_many_random_texts_find_only_the_planted_duplicates() -> None:
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(3000)])
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(40, 80)))) for _ in range(3000)]
    for index in range(100, 3000, 300):
        texts[index] = texts[index - 1] + " plus"
    result = find_duplicates(texts)
    planted = list(range(100, 3000, 300))
    assert np.flatnonzero(result.near_of >= 0).tolist() == planted
    assert result.near_of[planted].tolist() == [i - 1 for i in planted]
    assert (result.exact_of < 0).all()


def test_empty_and_wordless_texts_are_never_paired() -> None:
    result = find_duplicates(["", "!!!", "", "real words here"])
    assert result.exact_of.tolist() == [-1, -1, -1, -1]
    assert result.near_of.tolist() == [-1, -1, -1, -1]


def test_minhash_agreement_estimates_jaccard() -> None:
    rng = np.random.default_rng(3)
    shared = rng.integers(0, 2**32, size=400, dtype=np.uint32)
    a = np.concatenate([shared, rng.integers(0, 2**32, size=100, dtype=np.uint32)])
    b = np.concatenate([shared, rng.integers(0, 2**32, size=100, dtype=np.uint32)])
    docs = np.repeat([0, 1], 500)
    signatures = minhash_signatures(np.concatenate([a, b]), docs, 2, 256)
    assert (signatures[0] == signatures[1]).mean() == pytest.approx(400 / 600, abs=0.08)


@pytest.mark.parametrize(("num_perm", "threshold", "expected"), [
    (32, 0.8, (8, 4)), (32, 0.5, (16, 2)), (64, 0.8, (8, 8)),
])
def test_lsh_bands(num_perm: int, threshold: float, expected: tuple[int, int]) -> None:
    bands, rows = lsh_bands(num_perm, threshold)
    assert (bands, rows) == expected and bands * rows == num_perm


def _corpus() -> list[str]:
    rng = np.random.default_rng(7)
    words = BASE.split()
    texts = []
    for index in range(300):
        picked = rng.choice(len(words), size=30, replace=True)
        texts.append(" ".join(words[i] for i in picked))
        if index % 7 == 0:  # near and exact repeats of earlier texts, and empty ones
            texts.append(texts[-1].replace(words[picked[3]], "changed", 1))
            texts.append(texts[rng.integers(len(texts))].upper())
            texts.append("")
    return texts


def _same(a, b) -> None:
    assert a.exact_of.tolist() == b.exact_of.tolist()
    assert a.near_of.tolist() == b.near_of.tolist()
    assert a.near_similarity.tolist() == b.near_similarity.tolist()


def test_fingerprints_of_parts_join_to_the_whole() -> None:
    texts = _corpus()
    whole = find_duplicates(texts)
    assert (whole.near_of >= 0).any() and (whole.exact_of >= 0).any()
    cut = [0, 37, 38, 200, len(texts)]
    parts = [fingerprint(texts[lo:hi]) for lo, hi in itertools.pairwise(cut)]
    _same(duplicates_of(join_fingerprints(parts)), whole)


def test_fingerprints_taken_in_another_order_equal_the_texts_in_that_order() -> None:
    texts = _corpus()
    order = np.random.default_rng(3).permutation(len(texts))
    shuffled = find_duplicates([texts[i] for i in order])
    _same(duplicates_of(fingerprint(texts).take(order)), shuffled)
    exact_only = find_duplicates([texts[i] for i in order], threshold=1.0)
    _same(duplicates_of(fingerprint(texts, None).take(order), threshold=1.0), exact_only)


def test_exactly_two_candidates_that_are_near_duplicates() -> None:
    words = BASE.split()
    one_word_changed = " ".join(words[:-1] + ["allotment"])
    result = find_duplicates([BASE, one_word_changed], threshold=0.8)
    assert result.near_of.tolist() == [-1, 0] and result.near_similarity[1] >= 0.8
    assert find_duplicates([one_word_changed, BASE], threshold=0.8).near_of.tolist() == [-1, 0]


def test_pairs_scored_in_shards_and_chunks_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many near-duplicate pairs, some near the threshold (exact Jaccard) and some far above it
    (the refined estimate): scoring them on several cores, a few texts and pairs at a time,
    changes nothing."""
    from metahuman_lib import _dedup, _shards

    rng = np.random.default_rng(7)
    vocab = np.array([f"w{i}" for i in range(500)])
    texts = []
    for _ in range(300):
        words = list(rng.choice(vocab, size=int(rng.integers(30, 120))))
        texts.append(" ".join(words))
        texts.append(" ".join([*words, "appended"]))
        for changed in (1, 3, 6):
            variant = list(words)
            for position in rng.choice(len(words), size=changed, replace=False):
                variant[position] = f"x{rng.integers(10**6)}"
            texts.append(" ".join(variant))
    monkeypatch.setenv(_shards.WORKERS_ENV, "1")
    expected = find_duplicates(texts)
    monkeypatch.setenv(_shards.WORKERS_ENV, "3")
    monkeypatch.setattr(_dedup, "_MIN_PAIR_SHARD", 50)
    monkeypatch.setattr(_dedup, "_TEXT_CHUNK", 17)
    monkeypatch.setattr(_dedup, "_PAIR_CHUNK", 29)
    got = find_duplicates(texts)
    similarity = expected.near_similarity
    assert (similarity >= 0.95).sum() > 50 and ((similarity > 0) & (similarity < 0.95)).sum() > 50
    for name in ("exact_of", "near_of", "near_similarity"):
        assert getattr(got, name).tolist() == getattr(expected, name).tolist()
