"""Exact and near-duplicate detection over many short texts, in linear time with numpy.

Why not Python loops: curation must handle 100k memories in well under a second of dedup work,
so every text is turned into word hashes by vectorised byte operations, words into 3-word
shingles, shingles into a MinHash signature, and signatures into LSH bands whose equal keys
name candidate pairs. Only the few candidates are then checked with an exact Jaccard.

Words are runs of ASCII letters and digits or of non-ASCII bytes in the UTF-8 text, with ASCII
letters case-folded, so case, punctuation and spacing never make two texts look different.

The innermost loops (word hashes, exact keys, shingles, MinHash signatures, LSH band pairs,
signature agreement, the exact Jaccard of a pair) run in C (``metahuman_lib/_kernels.c``) where
that module was built: one pass each instead of several numpy passes or a Python loop. The numpy and Python code here gives the same results and is
used where it was not (no C compiler at install).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from metahuman_lib._native import kernels as _kernels
from metahuman_lib._shards import map_shards

_SHINGLE_WORDS = 3
_AGREEMENT_SLACK = 0.25
_REFINED_PERM = 64
_REFINED_SLACK = 0.1
_SURE_MARGIN = 0.15
"""Candidates whose MinHash agreement is this far below the threshold are not checked exactly:
with 32 permutations the agreement's standard deviation near 0.8 is about 0.07, so a true
pair falls below the slack less than once in ten thousand. The survivors are estimated again
with 64 permutations (standard deviation about 0.05): a pair estimated 0.15 or more above the
threshold is a near-duplicate with that estimate as its similarity; one estimated from 0.1
below to 0.15 above gets the exact Jaccard; the rest are different."""
_CHUNK_BYTES = 1 << 20
_SIG_CHUNK_VALUES = 1 << 20
"""Permuted values per MinHash chunk (4 MiB): small enough to stay in the CPU cache, which
makes the chunked passes about a third faster than 16 MiB chunks."""
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _word_or_nul_table() -> bytes:
    """A ``bytes.translate`` table: word bytes and NUL (the text separator) -> 1, others -> 0."""
    table = np.zeros(256, dtype=np.uint8)
    for lo, hi in ((ord("0"), ord("9")), (ord("a"), ord("z")), (ord("A"), ord("Z"))):
        table[lo : hi + 1] = 1
    table[0x80:] = 1
    table[0] = 1
    return table.tobytes()


_WORD_OR_NUL = _word_or_nul_table()
_PAD = b" " * 17
_LENGTH_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)
_RNG = np.random.default_rng(0x5EED_CAFE)
_SHINGLE_MULT = np.uint64(0x9E3779B97F4A7C15)
_POSITION_MIX = _RNG.integers(0, 2**63, size=2, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@dataclass(frozen=True)
class DedupResult:
    """Which texts are duplicates of an earlier one.

    Attributes:
        exact_of: for each text, the index of the earlier text it equals after normalisation, or -1.
        near_of: for each text not an exact duplicate, the index of an earlier kept text whose
            shingle Jaccard similarity is at least the threshold, or -1.
        near_similarity: the Jaccard similarity behind ``near_of`` (0.0 where -1): exact near
            the threshold, the 64-permutation MinHash estimate well above it.
    """

    exact_of: np.ndarray
    near_of: np.ndarray
    near_similarity: np.ndarray


def _mix64(values: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64), so combined hashes stay uniformly spread."""
    with np.errstate(over="ignore"):
        x = values >> np.uint64(30)
        x ^= values  # in place from here on: one array instead of one per step
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return x


def _chunk_word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes and the text index of each word, for one chunk of texts.

    A word's hash mixes its first 16 bytes (read as two little-endian 64-bit windows, masked
    to the word's length) with its length; longer words sharing 16 bytes are rare enough.
    Texts are joined with a NUL word between them, which marks where each text ends.
    """
    clean = (t.replace("\x00", " ") if "\x00" in t else t for t in texts)
    # bytes.lower folds ASCII letters only, and bytes.translate classifies every byte, both in
    # C at about a nanosecond per byte (several times faster than numpy table lookups).
    data = (b" " + " \x00 ".join(clean).encode("utf-8", "surrogatepass") + _PAD).lower()
    if _kernels is not None:
        room = len(data) // 2  # a word is followed by at least one other byte
        hashes, docs = np.empty(room, dtype=np.uint64), np.empty(room, dtype=np.int64)
        found = _kernels.word_hashes_into(data, int(_POSITION_MIX[0]), hashes, docs)
        return hashes[:found], docs[:found]
    buf = np.frombuffer(data, dtype=np.uint8)
    is_word = np.frombuffer(data.translate(_WORD_OR_NUL), dtype=bool)
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
    starts, ends = edges[0::2], edges[1::2]
    windows = np.ndarray((buf.size - 8,), dtype="<u8", buffer=buf, offset=0, strides=(1,))
    length = ends - starts
    low = windows[starts] & _LENGTH_MASKS[np.minimum(length, 8)]
    high = windows[starts + 8] & _LENGTH_MASKS[np.clip(length - 8, 0, 8)]
    with np.errstate(over="ignore"):
        hashes = _mix64(low * _POSITION_MIX[0] + high + length.astype(np.uint64))
    separator = buf[starts] == 0
    text_of_word = np.cumsum(separator)
    return hashes[~separator], text_of_word[~separator]


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of all texts, processed in chunks of a few MB to bound memory."""
    all_hashes, all_docs = [], []
    start, size = 0, 0
    for index, text in enumerate(texts):
        size += len(text) + 1
        if size >= _CHUNK_BYTES or index == len(texts) - 1:
            hashes, docs = _chunk_word_hashes(texts[start : index + 1])
            all_hashes.append(hashes)
            all_docs.append(docs + start)
            start, size = index + 1, 0
    if not all_hashes:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    return np.concatenate(all_hashes), np.concatenate(all_docs)


def _exact_keys(words: np.ndarray, docs: np.ndarray, n_texts: int) -> np.ndarray:
    """One order-sensitive 64-bit key per text from its word sequence (0 for a text without words)."""
    keys = np.zeros(n_texts, dtype=np.uint64)
    if words.size == 0:
        return keys
    if _kernels is not None:
        _kernels.exact_keys_into(np.ascontiguousarray(words), np.ascontiguousarray(docs, dtype=np.int64),
                                 int(_POSITION_MIX[0]), int(_POSITION_MIX[1]), keys)
        return keys
    first = np.r_[0, np.flatnonzero(np.diff(docs)) + 1]
    position = np.arange(words.size, dtype=np.int64) - np.repeat(first, np.diff(np.r_[first, words.size]))
    with np.errstate(over="ignore"):
        contrib = _mix64(words ^ (position.astype(np.uint64) * _POSITION_MIX[0]))
    sums = np.add.reduceat(contrib, first)
    counts = np.diff(np.r_[first, words.size]).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys[docs[first]] = _mix64(sums ^ (counts * _POSITION_MIX[1])) | np.uint64(1)
    return keys


def _shingles(words: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """One 32-bit hash per word position: that word and the next two of the same text."""
    if _kernels is not None:
        shingles = np.empty(words.size, dtype=np.uint32)
        _kernels.shingles_into(np.ascontiguousarray(words), np.ascontiguousarray(docs, dtype=np.int64),
                               _SHINGLE_WORDS, int(_SHINGLE_MULT), shingles)
        return shingles
    with np.errstate(over="ignore"):
        combined = words.copy()
        for offset in range(1, _SHINGLE_WORDS):
            following = np.zeros_like(words)
            same = docs[offset:] == docs[:-offset]
            following[:-offset] = np.where(same, words[offset:], np.uint64(0))
            combined = combined * _SHINGLE_MULT + following
        return (_mix64(combined) >> np.uint64(32)).astype(np.uint32)


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0xD1CE + num_perm)
    xors = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
    mults = (rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * 2 + 1).astype(np.uint32)
    return xors[:, None], mults[:, None]


def minhash_signatures(shingles: np.ndarray, docs: np.ndarray, n_texts: int, num_perm: int) -> np.ndarray:
    """MinHash signature (``n_texts x num_perm`` uint32) of each text's shingle set.

    Each permutation is ``(s ^ x) * a`` modulo 2**32 with odd ``a``: a bijection of an already
    uniform hash, so the minimum of each row is a fair MinHash. Texts without shingles keep the
    all-ones signature. ``docs`` gives each shingle's text.
    """
    if _kernels is None or (docs.size > 1 and bool((docs[1:] < docs[:-1]).any())):
        return _minhash_numpy(shingles, docs, n_texts, num_perm)
    starts = np.searchsorted(docs, np.arange(n_texts))
    return _signatures_of_runs(shingles, starts, np.bincount(docs, minlength=n_texts), num_perm)


def _signatures_of_runs(shingles: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                        num_perm: int) -> np.ndarray:
    """The MinHash signatures of texts whose shingles are the runs ``shingles[start:start+length]``
    (the C kernel reads the runs where they are; numpy first gathers them)."""
    if _kernels is None:
        runs = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        docs = np.repeat(np.arange(starts.size), lengths)
        return _minhash_numpy(shingles[runs + np.arange(runs.size)], docs, starts.size, num_perm)
    signatures = np.full((starts.size, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    xors, mults = _permutations(num_perm)
    _kernels.minhash_into(np.ascontiguousarray(shingles, dtype=np.uint32),
                          np.ascontiguousarray(starts, dtype=np.int64),
                          np.ascontiguousarray(lengths, dtype=np.int64), xors, mults, signatures)
    return signatures


def _minhash_numpy(shingles: np.ndarray, docs: np.ndarray, n_texts: int, num_perm: int) -> np.ndarray:
    """:func:`minhash_signatures` without the C kernel. Work is laid out as permutations x
    shingles, in chunks, so every pass is a contiguous vector operation."""
    signatures = np.full((num_perm, n_texts), np.iinfo(np.uint32).max, dtype=np.uint32)
    if shingles.size == 0:
        return signatures.T.copy()
    xors, mults = _permutations(num_perm)
    chunk = max(1024, _SIG_CHUNK_VALUES // num_perm)
    for lo in range(0, shingles.size, chunk):
        part_docs = docs[lo : lo + chunk]
        with np.errstate(over="ignore"):
            permuted = shingles[None, lo : lo + chunk] ^ xors
            permuted *= mults  # in place: one chunk-sized temporary fewer
        first = np.r_[0, np.flatnonzero(np.diff(part_docs)) + 1]
        target = part_docs[first]
        mins = np.minimum.reduceat(permuted, first, axis=1)
        signatures[:, target] = np.minimum(signatures[:, target], mins)
    return signatures.T.copy()


def lsh_bands(num_perm: int, threshold: float, miss_weight: float = 0.9) -> tuple[int, int]:
    """Bands and rows (``bands * rows == num_perm``) that best separate pairs at ``threshold``.

    Minimises the weighted area of false positives below the threshold and false negatives
    above it under the S-curve ``1 - (1 - s**rows)**bands`` (datasketch's rule, which weighs
    both equally). Misses weigh more here because every candidate is then checked exactly,
    so an extra candidate costs a little time while a missed pair is a duplicate kept.
    """
    grid_low = np.linspace(0.0, threshold, 201)
    grid_high = np.linspace(threshold, 1.0, 201)
    best, best_error = (num_perm, 1), float("inf")
    for rows in range(1, num_perm + 1):
        if num_perm % rows:
            continue
        bands = num_perm // rows
        false_pos = np.trapezoid(1 - (1 - grid_low**rows) ** bands, grid_low)
        false_neg = np.trapezoid((1 - grid_high**rows) ** bands, grid_high)
        error = (1 - miss_weight) * false_pos + miss_weight * false_neg
        if error < best_error:
            best, best_error = (bands, rows), error
    return best


def _candidate_pairs(signatures: np.ndarray, eligible: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Pairs (later, earlier) of eligible texts that share at least one LSH band.

    Within a band bucket every later member is paired with the bucket's earliest member only,
    which keeps the number of pairs linear in the number of texts.
    """
    index = np.flatnonzero(eligible)
    if index.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    if _kernels is not None:
        room = bands * (index.size - 1)
        later, earlier = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
        found = _kernels.band_pairs_into(np.ascontiguousarray(signatures, dtype=np.uint32),
                                         index.astype(np.int64), bands, rows, later, earlier)
        return _unique_pairs(np.column_stack((later[:found], earlier[:found])), signatures.shape[0])
    pairs = []
    for band in range(bands):
        block = signatures[index, band * rows : (band + 1) * rows].astype(np.uint64)
        key = np.zeros(index.size, dtype=np.uint64)
        for column in range(rows):
            key = _mix64(key ^ block[:, column] ^ np.uint64(column << 40))
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
        group_first = np.maximum.accumulate(np.where(starts, np.arange(index.size), 0))
        member = ~starts
        pairs.append(np.column_stack((index[order[member]], index[order[group_first[member]]])))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return _unique_pairs(np.concatenate(pairs), signatures.shape[0])


def _unique_pairs(found: np.ndarray, width: int) -> np.ndarray:
    """The distinct rows of ``found`` (pairs of text numbers below ``width``), sorted."""
    if not found.size:
        return found.reshape(0, 2)
    # One int64 key per pair sorts like the (later, earlier) rows; sorting the keys and
    # dropping repeats is many times faster than np.unique (of rows, or even of the keys).
    keys = np.sort(found[:, 0] * width + found[:, 1])
    later, earlier = np.divmod(keys[np.r_[True, keys[1:] != keys[:-1]]], width)
    return np.column_stack((later, earlier))


def jaccard_of_pairs(pairs: np.ndarray, prints: Fingerprints) -> np.ndarray:
    """The exact Jaccard similarity of the shingle sets of each pair of texts ``(a, b)``."""
    similarity = np.empty(len(pairs))
    if _kernels is not None:
        _kernels.jaccard_into(np.ascontiguousarray(prints.shingles, dtype=np.uint32),
                              np.ascontiguousarray(prints.starts, dtype=np.int64),
                              np.ascontiguousarray(prints.lengths, dtype=np.int64),
                              np.ascontiguousarray(pairs[:, 0], dtype=np.int64),
                              np.ascontiguousarray(pairs[:, 1], dtype=np.int64), similarity)
        return similarity
    for index, (first, second) in enumerate(pairs.tolist()):
        similarity[index] = _jaccard(prints.shingles_of(first), prints.shingles_of(second))
    return similarity


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle sets (Python sets beat numpy at this size)."""
    set_a, set_b = set(a.tolist()), set(b.tolist())
    inter = len(set_a & set_b)
    return inter / (len(set_a) + len(set_b) - inter)


@dataclass(frozen=True)
class Fingerprints:
    """What deduplication needs of each text, computed text by text: so shards of a list can be
    fingerprinted apart (in parallel), joined (:func:`join_fingerprints`) and put in priority
    order (:meth:`take`) without moving any shingle.

    Attributes:
        keys: one order-sensitive 64-bit key per text (0 for a text without words).
        signatures: ``n_texts x num_perm`` MinHash signatures, or None when only exact
            duplicates are wanted.
        shingles: the 3-word shingle hashes of all texts, each text's in one run.
        starts, lengths: where each text's run of ``shingles`` is.

    A text with the same words as an earlier text of the list shares that text's run of
    shingles and its signature (they would be equal), so they are computed once.
    """

    keys: np.ndarray
    signatures: np.ndarray | None
    shingles: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.keys.size)

    def take(self, indices: np.ndarray) -> Fingerprints:
        """The fingerprints of the texts at ``indices``, in that order."""
        signatures = None if self.signatures is None else self.signatures[indices]
        return Fingerprints(self.keys[indices], signatures, self.shingles,
                            self.starts[indices], self.lengths[indices])

    def shingles_of(self, text: int) -> np.ndarray:
        start = self.starts[text]
        return self.shingles[start : start + self.lengths[text]]


def fingerprint(texts: Sequence[str], num_perm: int | None = 32) -> Fingerprints:
    """Exact keys, shingles and MinHash signatures (``num_perm`` permutations; None: keys only)."""
    n_texts = len(texts)
    words, docs = _word_hashes(texts)
    keys = _exact_keys(words, docs, n_texts)
    if num_perm is None:
        nothing = np.zeros(n_texts, dtype=np.int64)
        return Fingerprints(keys, None, np.empty(0, np.uint32), nothing, nothing)
    first = _first_of_equal(keys)
    in_fresh = (first < 0)[docs]
    words, docs = words[in_fresh], docs[in_fresh]
    shingles = _shingles(words, docs)
    starts = np.searchsorted(docs, np.arange(n_texts))
    lengths = np.bincount(docs, minlength=n_texts).astype(np.int64)
    signatures = minhash_signatures(shingles, docs, n_texts, num_perm)
    repeats = np.flatnonzero(first >= 0)  # the same words: share the first one's shingles
    starts[repeats], lengths[repeats] = starts[first[repeats]], lengths[first[repeats]]
    signatures[repeats] = signatures[first[repeats]]
    return Fingerprints(keys, signatures, shingles, starts, lengths)


def join_fingerprints(parts: Sequence[Fingerprints]) -> Fingerprints:
    """The fingerprints of consecutive lists of texts, as if of one list."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [part.shingles.size for part in parts[:-1]])
    signatures = None
    if parts and all(part.signatures is not None for part in parts):
        signatures = np.concatenate([part.signatures for part in parts])
    return Fingerprints(
        np.concatenate([part.keys for part in parts]) if parts else np.empty(0, np.uint64),
        signatures,
        np.concatenate([part.shingles for part in parts]) if parts else np.empty(0, np.uint32),
        np.concatenate([part.starts + offset for part, offset in zip(parts, offsets, strict=True)])
        if parts else np.empty(0, np.int64),
        np.concatenate([part.lengths for part in parts]) if parts else np.empty(0, np.int64),
    )


def find_duplicates(texts: Sequence[str], *, threshold: float = 0.8, num_perm: int = 32) -> DedupResult:
    """Mark each text that repeats an earlier one, exactly or nearly.

    Args:
        texts: in priority order; the earlier of two duplicates is the one kept.
        threshold: Jaccard similarity of 3-word shingle sets at or above which two texts are
            near-duplicates; 1.0 or more turns near-duplicate detection off.
        num_perm: MinHash permutations; more finds borderline pairs more reliably but costs more.

    Returns:
        A :class:`DedupResult` with, for every text, the earlier text it duplicates or -1.
    """
    return duplicates_of(fingerprint(texts, num_perm if threshold < 1.0 else None), threshold)


def duplicates_of(prints: Fingerprints, threshold: float = 0.8) -> DedupResult:
    """Duplicates among fingerprinted texts (in priority order; see :func:`find_duplicates`)."""
    n_texts = len(prints)
    keys = prints.keys
    exact_of = _first_of_equal(keys)
    near_of = np.full(n_texts, -1, dtype=np.int64)
    similarity = np.zeros(n_texts, dtype=np.float64)
    if threshold >= 1.0 or n_texts < 2 or prints.signatures is None:
        return DedupResult(exact_of, near_of, similarity)
    keep = (exact_of < 0) & (keys != 0)
    signatures = prints.signatures
    num_perm = signatures.shape[1]
    bands, rows = lsh_bands(num_perm, threshold)
    pairs = _candidate_pairs(signatures, keep, bands, rows)
    if pairs.size:
        agree = _agreement(signatures, pairs[:, 0], pairs[:, 1])
        pairs = pairs[agree >= max(0.0, threshold - _AGREEMENT_SLACK)]
    refined, exact = np.zeros(0), np.zeros(0)
    if pairs.size:  # the pairs' scores, shards of them on all cores
        scored = map_shards(lambda start, stop: _scores(pairs[start:stop], prints, threshold),
                            len(pairs), min_shard=_MIN_PAIR_SHARD)
        refined, exact = (np.concatenate(parts) for parts in zip(*scored, strict=True))
        keep_pair = refined >= threshold - _REFINED_SLACK
        pairs, refined, exact = pairs[keep_pair], refined[keep_pair], exact[keep_pair]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    for (later, earlier), estimate, jaccard in zip(pairs[order].tolist(), refined[order].tolist(),
                                                   exact[order].tolist(), strict=True):
        if near_of[later] >= 0:
            continue
        score = estimate if estimate >= threshold + _SURE_MARGIN else jaccard
        if score >= threshold:
            near_of[later], similarity[later] = earlier, score
    return DedupResult(exact_of, near_of, similarity)


_MIN_PAIR_SHARD = 65536 if _kernels is not None else 8192
"""Candidate pairs worth a worker process of their own: about 50 ms of scoring with the C
kernels, 30 ms without (measured: 63k pairs scored in 0.05 s in one process and in two alike)."""


def _scores(pairs: np.ndarray, prints: Fingerprints, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's refined MinHash agreement, and its exact Jaccard similarity where the refined
    estimate leaves the verdict open (from :data:`_REFINED_SLACK` below the threshold to
    :data:`_SURE_MARGIN` above it); NaN elsewhere."""
    refined = _refined_agreement(pairs, prints)
    exact = np.full(refined.size, np.nan)
    unsure = (refined >= threshold - _REFINED_SLACK) & (refined < threshold + _SURE_MARGIN)
    exact[unsure] = jaccard_of_pairs(pairs[unsure], prints)
    return refined, exact


def _refined_agreement(pairs: np.ndarray, prints: Fingerprints) -> np.ndarray:
    """MinHash agreement of each candidate pair with :data:`_REFINED_PERM` permutations: a
    sharper estimate, so that only the pairs it keeps get the exact (per-pair) Jaccard. The
    signatures are computed for the candidates' texts only (a few percent of all texts)."""
    texts, slot = np.unique(pairs, return_inverse=True)
    refined = np.empty((texts.size, _REFINED_PERM), dtype=np.uint32)
    for lo in range(0, texts.size, _TEXT_CHUNK):  # a chunk of texts at a time bounds the memory
        chunk = texts[lo : lo + _TEXT_CHUNK]
        refined[lo : lo + chunk.size] = _signatures_of_runs(prints.shingles, prints.starts[chunk],
                                                            prints.lengths[chunk], _REFINED_PERM)
    slot = slot.reshape(pairs.shape)
    return _agreement(refined, slot[:, 0], slot[:, 1])


_TEXT_CHUNK = 8192


_PAIR_CHUNK = 8192
"""Pairs compared at a time: the rows gathered for a comparison stay a few MB."""


def _agreement(signatures: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The share of equal MinHash values of each pair of rows, compared a chunk of pairs at a time."""
    agree = np.empty(first.size)
    if _kernels is not None:
        _kernels.agreement_into(np.ascontiguousarray(signatures, dtype=np.uint32), signatures.shape[1],
                                np.ascontiguousarray(first, dtype=np.int64),
                                np.ascontiguousarray(second, dtype=np.int64), agree)
        return agree
    for lo in range(0, first.size, _PAIR_CHUNK):
        hi = lo + _PAIR_CHUNK
        agree[lo:hi] = (signatures[first[lo:hi]] == signatures[second[lo:hi]]).mean(axis=1)
    return agree


def _first_of_equal(keys: np.ndarray) -> np.ndarray:
    """For each non-zero key, the index of the first earlier equal key, or -1."""
    result = np.full(keys.size, -1, dtype=np.int64)
    if keys.size == 0:
        return result
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(keys.size), 0))
    dup = ~starts & (sorted_keys != 0)
    result[order[dup]] = order[first[dup]]
    return result
