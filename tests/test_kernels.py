"""The C kernels of deduplication (``metahuman_lib/_kernels.c``) give exactly what the numpy and
Python code gives, reject arrays that do not fit, and are left unused when stale."""

from __future__ import annotations

import logging
import shutil
import sys
import sysconfig
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metahuman_lib
from metahuman_lib import _dedup, _native, text_rules
from metahuman_lib.curation import CurationOptions
from metahuman_lib.dataset import write_curated_dataset
from metahuman_lib.demo import write_demo_profile
from metahuman_lib.quality import curate_profile
from metahuman_lib.text_rules import (
    FILLER_PHRASES,
    count_words,
    count_words_of,
    filler_bits,
    filler_phrases_in,
    may_hold_pii_batch,
    scrub_pii,
)

KERNELS = _dedup._kernels
needs_kernels = pytest.mark.skipif(KERNELS is None, reason="metahuman_lib._kernels was not built here")

# words short and long (past the 16 bytes a word hash reads), cased, accented, CJK, a lone
# surrogate, NUL (the join's separator), and the separators between words
TOKENS = ["a", "B", "the", "The", "greenhouse", "GREENHOUSE", "x1", "2025", "ünïcödé", "日本語",
          "abcdefghijklmnopq", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", "\ud800", "\x00", "é",
          " ", "  ", "\t", "\n", ", ", ".", "-", "_", "'", "!?"]
TEXTS = st.lists(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join), max_size=40)


@contextmanager
def numpy_only() -> Iterator[None]:
    """The numpy and Python code, as without the C module."""
    saved = _dedup._kernels
    _dedup._kernels = text_rules._kernels = None
    try:
        yield
    finally:
        _dedup._kernels = text_rules._kernels = saved


def assert_same_fingerprints(one: _dedup.Fingerprints, other: _dedup.Fingerprints) -> None:
    for name in ("keys", "signatures", "shingles", "starts", "lengths"):
        a, b = getattr(one, name), getattr(other, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name


def test_the_kernels_are_built_where_a_compiler_is() -> None:
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers.exists():
        pytest.skip("no C compiler or no Python headers on this machine: the numpy code is used")
    assert KERNELS is not None, "a C compiler is here but metahuman_lib._kernels is missing: run `make venv`"


@needs_kernels
@settings(max_examples=150, deadline=None)
@given(texts=TEXTS, num_perm=st.sampled_from([None, 1, 7, 32, 64]))
def test_fingerprints_are_the_same_with_and_without_the_kernels(texts: list[str], num_perm: int | None) -> None:
    with_c = _dedup.fingerprint(texts, num_perm)
    with numpy_only():
        without = _dedup.fingerprint(texts, num_perm)
    assert_same_fingerprints(with_c, without)


@needs_kernels
@settings(max_examples=100, deadline=None)
@given(texts=TEXTS, threshold=st.sampled_from([0.3, 0.5, 0.8]))
def test_duplicates_are_the_same_with_and_without_the_kernels(texts: list[str], threshold: float) -> None:
    texts = texts + [text + " more" for text in texts]  # near-duplicates to score exactly
    with_c = _dedup.find_duplicates(texts, threshold=threshold)
    with numpy_only():
        without = _dedup.find_duplicates(texts, threshold=threshold)
    for name in ("exact_of", "near_of", "near_similarity"):
        assert np.array_equal(getattr(with_c, name), getattr(without, name)), name


@needs_kernels
def test_signatures_and_jaccard_of_random_runs_are_the_same() -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        lengths = rng.integers(0, 400 if trial % 2 else 6, size=int(rng.integers(1, 40)))
        docs = np.repeat(np.arange(lengths.size), lengths)
        shingles = rng.integers(0, 2**32 if trial % 3 else 40, size=docs.size, dtype=np.uint32)
        for num_perm in (1, 32, 64):
            with_c = _dedup.minhash_signatures(shingles, docs, lengths.size, num_perm)
            assert np.array_equal(with_c, _dedup._minhash_numpy(shingles, docs, lengths.size, num_perm))
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        prints = _dedup.Fingerprints(np.zeros(lengths.size, np.uint64), None, shingles, starts,
                                     lengths.astype(np.int64))
        texts = np.flatnonzero(lengths)
        if texts.size:
            pairs = rng.choice(texts, size=(25, 2))
            expected = [_dedup._jaccard(prints.shingles_of(a), prints.shingles_of(b)) for a, b in pairs.tolist()]
            assert _dedup.jaccard_of_pairs(pairs, prints).tolist() == expected


@needs_kernels
@pytest.mark.parametrize(("num_perm", "bands", "rows"), [(32, 8, 4), (32, 32, 1), (64, 4, 16), (6, 2, 3)])
def test_band_pairs_and_agreement_are_the_same(num_perm: int, bands: int, rows: int) -> None:
    rng = np.random.default_rng(num_perm + bands)
    signatures = rng.integers(0, 3, size=(500, num_perm), dtype=np.uint32)  # many equal bands
    signatures[300:350] = signatures[:50]  # and some equal throughout
    eligible = rng.random(500) < 0.8
    with_c = _dedup._candidate_pairs(signatures, eligible, bands, rows)
    with numpy_only():
        without = _dedup._candidate_pairs(signatures, eligible, bands, rows)
        assert np.array_equal(_dedup._candidate_pairs(signatures, eligible & False, bands, rows),
                              np.empty((0, 2), dtype=np.int64))
    assert with_c.shape[0] >= 20 and np.array_equal(with_c, without)
    assert _dedup._candidate_pairs(signatures, eligible & False, bands, rows).shape == (0, 2)
    first, second = with_c[:, 0], with_c[:, 1]
    agree = _dedup._agreement(signatures, first, second)
    with numpy_only():
        assert np.array_equal(agree, _dedup._agreement(signatures, first, second))


@needs_kernels
def test_unordered_docs_take_the_numpy_code() -> None:
    shingles = np.array([5, 9, 1, 7], dtype=np.uint32)
    docs = np.array([1, 0, 1, 0])
    got = _dedup.minhash_signatures(shingles, docs, 3, 8)
    assert np.array_equal(got, _dedup._minhash_numpy(shingles, docs, 3, 8))
    assert (got[2] == np.iinfo(np.uint32).max).all()  # a text without shingles


@needs_kernels
def test_the_kernels_reject_arrays_that_do_not_fit() -> None:
    shingles = np.arange(10, dtype=np.uint32)
    xors, mults = _dedup._permutations(4)
    out = np.zeros((2, 4), dtype=np.uint32)
    with pytest.raises(ValueError, match="outside the shingles"):
        KERNELS.minhash_into(shingles, np.array([0, 8]), np.array([5, 5]), xors, mults, out)
    with pytest.raises(ValueError, match="do not agree"):
        KERNELS.minhash_into(shingles, np.array([0]), np.array([5]), xors, mults, out)
    with pytest.raises(ValueError, match="17 spaces"):
        KERNELS.word_hashes_into(b" words" + b" " * 16, 3, np.empty(8, np.uint64), np.empty(8, np.int64))
    with pytest.raises(ValueError, match="more words than room"):
        KERNELS.word_hashes_into(b" a b c" + b" " * 17, 3, np.empty(2, np.uint64), np.empty(2, np.int64))
    with pytest.raises(ValueError, match="ascending"):
        KERNELS.exact_keys_into(np.ones(2, np.uint64), np.array([1, 0]), 3, 5, np.zeros(2, np.uint64))
    prints_starts, prints_lengths = np.array([0, 5]), np.array([5, 5])
    with pytest.raises(ValueError, match="names a text outside"):
        KERNELS.jaccard_into(shingles, prints_starts, prints_lengths, np.array([0]), np.array([2]),
                             np.empty(1))
    signatures = np.zeros((3, 4), dtype=np.uint32)
    with pytest.raises(ValueError, match="ascending"):
        KERNELS.band_pairs_into(signatures, np.array([2, 1]), 2, 2, np.empty(4, np.int64), np.empty(4, np.int64))
    with pytest.raises(ValueError, match="more pairs than room"):
        KERNELS.band_pairs_into(signatures, np.array([0, 1, 2]), 2, 2, np.empty(1, np.int64), np.empty(1, np.int64))
    with pytest.raises(ValueError, match="names a text outside"):
        KERNELS.agreement_into(signatures, 4, np.array([0]), np.array([3]), np.empty(1))
    with pytest.raises(ValueError, match="whole number"):
        KERNELS.shingles_into(np.ones(2, np.uint64), np.zeros(2, np.int64), 3, 7, np.empty(3, np.uint16))


# filler phrases in every case, the characters that lowercase to ASCII (İ, the Kelvin sign), curly
# apostrophes, unspaced scripts (CJK, Thai, Lao, Burmese, Khmer, an astral CJK letter) with
# their punctuation, and every kind of whitespace str.split knows
PIECES = [*FILLER_PHRASES, "AS AN AI", "As A Language Model", "I’m just", "i’m here to", "ALRİGHT, SO",
          "LET ME THİNK", "OKAY, \u212aO", "CERTAINLY", "certain", "aİ", "İ", "\u212a", "’", "'",
          "日本語", "ひらがな", "カタカナ", "ไทย", "ລາວ", "မြန်မာ", "ខ្មែរ", "\U00020b9f", "。", "、", "！",
          "ｱｲｳ", "\uff01", "한국어", "word", "x", "2025", " ", "  ", "\t", "\n", "\r", "\x0b", "\x0c",
          "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\x00", "\ud800", ",", "."]
PIECE_TEXTS = st.lists(st.lists(st.sampled_from(PIECES), max_size=30).map("".join), max_size=30)


@needs_kernels
@settings(max_examples=300, deadline=None)
@given(texts=PIECE_TEXTS)
def test_word_counts_and_filler_are_the_same_with_and_without_the_kernels(texts: list[str]) -> None:
    assert count_words_of(texts) == [count_words(text) for text in texts]
    bits = filler_bits(texts).tolist()
    expected = [sum(1 << bit for bit, phrase in enumerate(FILLER_PHRASES) if phrase in filler_phrases_in(text))
                for text in texts]
    assert bits == expected
    with numpy_only():
        assert filler_bits(texts).tolist() == expected


PII_PIECES = ["mail me at ana@example.org", "@", "call 555-123-4567", "0791 112 3456", "12345678",
              "1234567", "4111 1111 1111 1111", "Bearer abcdefghijklmnopqrstuvwxyz0123", "bearer",
              "earer", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "PRIVATE KEY",
              "sk-abcdefghijklmnopqrstuvwx", "abcdefghijklm", "abcdefghijklmn", "a_b-c", "GB82WEST12345698765432",
              "078-05-1120", "é", "日本", "\x00", " ", "\n", "word", "9"]


@needs_kernels
@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(PII_PIECES), max_size=12).map("".join), max_size=20))
def test_the_pii_pre_check_is_the_same_with_and_without_the_kernels(texts: list[str]) -> None:
    flags = may_hold_pii_batch(texts)
    with numpy_only():
        expected = may_hold_pii_batch(texts)
    if not any("\x00" in text for text in texts):
        assert flags.tolist() == expected.tolist()
    else:  # the numpy code flags a whole batch that holds NUL; the C code checks text by text
        assert expected.all()
    for text, flagged in zip(texts, flags.tolist(), strict=True):
        assert flagged or scrub_pii(text) == text  # never a text that scrubbing would change


@needs_kernels
def test_the_text_kernels_take_lists_of_str_only() -> None:
    with pytest.raises(TypeError, match="not a str"):
        KERNELS.count_words_into(["a", b"b"], np.empty(2, np.int64))
    with pytest.raises(ValueError, match="one result per text"):
        KERNELS.filler_bits_into(["a"], (b"a",), np.empty(2, np.uint64))
    with pytest.raises(ValueError, match="at most 64"):
        KERNELS.filler_bits_into(["a"], (b"a",) * 65, np.empty(1, np.uint64))


def test_texts_that_are_all_repeats_or_wordless_have_no_near_duplicates() -> None:
    texts = ["", "!!!", "", "..."]  # no text is eligible for the LSH search
    with numpy_only():
        without = _dedup.find_duplicates(texts)
    for result in (_dedup.find_duplicates(texts), without):
        assert result.exact_of.tolist() == [-1] * 4 and result.near_of.tolist() == [-1] * 4


def test_a_module_built_from_an_older_source_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    stale = types.ModuleType("metahuman_lib._kernels")
    stale.VERSION = _native.KERNELS_VERSION - 1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "metahuman_lib._kernels", stale)
    monkeypatch.setattr(metahuman_lib, "_kernels", stale, raising=False)
    with caplog.at_level(logging.WARNING, logger="metahuman_lib._native"):
        assert _native.load_kernels() is None
    assert "make venv" in caplog.text


def test_a_missing_module_leaves_the_numpy_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "metahuman_lib._kernels", None)  # import raises ImportError
    monkeypatch.delattr(metahuman_lib, "_kernels", raising=False)
    assert _native.load_kernels() is None


@needs_kernels
def test_the_dataset_is_the_same_with_and_without_the_kernels(tmp_path: Path) -> None:
    root = tmp_path / "root"
    profile = write_demo_profile(root)
    options = CurationOptions(username="demo", near_dup_threshold=0.6)
    with_c = write_curated_dataset(profile, options, tmp_path / "with.jsonl", dropped=tmp_path / "with.csv")
    with numpy_only():
        without = write_curated_dataset(profile, options, tmp_path / "without.jsonl",
                                        dropped=tmp_path / "without.csv")
        table_metrics = curate_profile(profile, options).metrics
    assert with_c.metrics == without.metrics == table_metrics and with_c.metrics.duplicates_near > 0
    assert (tmp_path / "with.jsonl").read_bytes() == (tmp_path / "without.jsonl").read_bytes()
    assert (tmp_path / "with.csv").read_bytes() == (tmp_path / "without.csv").read_bytes()
