/* The workbench's innermost loops in C: deduplication's word hashes, exact keys, shingles, MinHash
 * signatures, LSH band pairs, signature agreement and exact Jaccard similarities, and a batch of
 * texts' word counts, filler phrases and PII pre-check.
 *
 * Why C: numpy computes a MinHash signature in three passes over a permutations x shingles
 * temporary (xor, multiply, segmented minimum); one fused loop that keeps a text's signature in
 * registers is several times faster; the exact Jaccard of a pair is a sort and a merge of two
 * short runs instead of two Python sets; a text's words and filler phrases are counted in one
 * pass over its characters instead of a list of words or ten searches. Each gives exactly what
 * the numpy or Python code of metahuman_lib/_dedup.py and text_rules.py gives (tests/
 * test_kernels.py compares them); that code runs where this module was not built (no C compiler).
 *
 * Arrays come in through the buffer protocol (any C-contiguous array of the right item size) and
 * are checked before use; the GIL is released while the array loops run (the text loops read str
 * objects, so they keep it). VERSION must match _native.KERNELS_VERSION, so a module left over
 * from an older source is never used: raise both when a kernel changes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNELS_VERSION 5

static int
check_items(Py_buffer *view, Py_ssize_t itemsize, const char *name)
{
    if (view->len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items",
                     name, view->len, itemsize);
        return -1;
    }
    return 0;
}

static inline uint64_t
mix64(uint64_t value)
{
    uint64_t x = (value >> 30) ^ value;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t
load_le64(const unsigned char *bytes)
{
    uint64_t value;
    memcpy(&value, bytes, sizeof value);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

static unsigned char word_bytes[256];
/* as _dedup._WORD_OR_NUL: ASCII letters and digits, every non-ASCII byte, and NUL; filled when
 * the module loads */

static void
fill_word_bytes(void)
{
    for (int b = 0; b < 256; b++) {
        word_bytes[b] = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
                        || b >= 0x80 || b == 0;
    }
}

/* word_hashes_into(data, mix, hashes u64[cap], docs i64[cap]) -> words: the hash and text of
 * every word of data (texts joined by " \0 ", a space before, 17 spaces after, ASCII-lowered),
 * as _dedup._chunk_word_hashes computes them. */
static PyObject *
word_hashes_into(PyObject *self, PyObject *args)
{
    Py_buffer data, hashes, docs;
    unsigned long long mix;
    if (!PyArg_ParseTuple(args, "y*Kw*w*", &data, &mix, &hashes, &docs)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(&hashes, 8, "hashes") || check_items(&docs, 8, "docs")) {
        goto done;
    }
    const unsigned char *bytes = data.buf;
    Py_ssize_t n = data.len, cap = hashes.len / 8;
    if (docs.len / 8 != cap || n < 17 || bytes[0] != ' ') {
        PyErr_SetString(PyExc_ValueError, "word_hashes_into: bad sizes or unpadded data");
        goto done;
    }
    for (Py_ssize_t i = n - 17; i < n; i++) {
        if (bytes[i] != ' ') {
            PyErr_SetString(PyExc_ValueError, "word_hashes_into: data must end with 17 spaces");
            goto done;
        }
    }
    uint64_t *hash = hashes.buf;
    int64_t *doc = docs.buf;
    Py_ssize_t count = 0;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t text = 0;
    Py_ssize_t i = 1;
    while (i < n) {
        while (i < n && !word_bytes[bytes[i]]) {
            i++;
        }
        if (i == n) {
            break;
        }
        Py_ssize_t start = i;
        while (word_bytes[bytes[i]]) { /* the padding ends every word before the end */
            i++;
        }
        if (bytes[start] == 0) { /* a text separator */
            text++;
            continue;
        }
        if (count == cap) {
            full = 1;
            break;
        }
        uint64_t length = (uint64_t)(i - start);
        uint64_t low = load_le64(bytes + start), high = load_le64(bytes + start + 8);
        if (length < 8) {
            low &= (1ULL << (8 * length)) - 1;
        }
        if (length <= 8) {
            high = 0;
        } else if (length < 16) {
            high &= (1ULL << (8 * (length - 8))) - 1;
        }
        hash[count] = mix64(low * (uint64_t)mix + high + length);
        doc[count] = text;
        count++;
    }
    Py_END_ALLOW_THREADS
    if (full) {
        PyErr_SetString(PyExc_ValueError, "word_hashes_into: more words than room");
        goto done;
    }
    result = PyLong_FromSsize_t(count);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&hashes);
    PyBuffer_Release(&docs);
    return result;
}

/* exact_keys_into(words u64[n], docs i64[n] (non-decreasing), mix_position, mix_count,
 * keys u64[texts]): each text's order-sensitive key, as _dedup._exact_keys computes it (texts
 * without words keep what keys held, zero). */
static PyObject *
exact_keys_into(PyObject *self, PyObject *args)
{
    Py_buffer words, docs, keys;
    unsigned long long mix_position, mix_count;
    if (!PyArg_ParseTuple(args, "y*y*KKw*", &words, &docs, &mix_position, &mix_count, &keys)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(&words, 8, "words") || check_items(&docs, 8, "docs")
        || check_items(&keys, 8, "keys")) {
        goto done;
    }
    Py_ssize_t n = words.len / 8, texts = keys.len / 8;
    const uint64_t *word = words.buf;
    const int64_t *doc = docs.buf;
    uint64_t *key = keys.buf;
    if (docs.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "exact_keys_into: array sizes do not agree");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (doc[i] < 0 || doc[i] >= texts || (i && doc[i] < doc[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "exact_keys_into: docs must be ascending text indices");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    while (i < n) {
        int64_t d = doc[i];
        uint64_t sum = 0, position = 0;
        while (i < n && doc[i] == d) {
            sum += mix64(word[i] ^ (position * (uint64_t)mix_position));
            position++;
            i++;
        }
        key[d] = mix64(sum ^ (position * (uint64_t)mix_count)) | 1ULL;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&words);
    PyBuffer_Release(&docs);
    PyBuffer_Release(&keys);
    return result;
}

/* shingles_into(words u64[n], docs i64[n], width, multiplier, out u32[n]): for each word, the hash
 * of it and the next width - 1 words of the same text, as _dedup._shingles computes it. */
static PyObject *
shingles_into(PyObject *self, PyObject *args)
{
    Py_buffer words, docs, out;
    Py_ssize_t width;
    unsigned long long multiplier;
    if (!PyArg_ParseTuple(args, "y*y*nKw*", &words, &docs, &width, &multiplier, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(&words, 8, "words") || check_items(&docs, 8, "docs")
        || check_items(&out, 4, "out")) {
        goto done;
    }
    Py_ssize_t n = words.len / 8;
    if (docs.len / 8 != n || out.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "shingles_into: array sizes do not agree");
        goto done;
    }
    const uint64_t *word = words.buf;
    const int64_t *doc = docs.buf;
    uint32_t *shingle = out.buf;
    uint64_t m = (uint64_t)multiplier;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t combined = word[i];
        for (Py_ssize_t offset = 1; offset < width; offset++) {
            uint64_t following = (i + offset < n && doc[i + offset] == doc[i]) ? word[i + offset] : 0;
            combined = combined * m + following;
        }
        shingle[i] = (uint32_t)(mix64(combined) >> 32);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&words);
    PyBuffer_Release(&docs);
    PyBuffer_Release(&out);
    return result;
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) \
    && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One text's signature: the minimum of each permutation over its shingles (vectorised over the
 * permutations; with AVX2 where the CPU has it). */
VECTOR_CLONES static void
fold_run(const uint32_t *shingles, int64_t count, const uint32_t *x, const uint32_t *a,
         Py_ssize_t perms, uint32_t *row)
{
    for (int64_t i = 0; i < count; i++) {
        uint32_t s = shingles[i];
        for (Py_ssize_t p = 0; p < perms; p++) {
            uint32_t v = (s ^ x[p]) * a[p];
            row[p] = v < row[p] ? v : row[p];
        }
    }
}

/* minhash_into(shingles u32[], starts i64[texts], lengths i64[texts], xors u32[P], mults u32[P],
 * out u32[texts*P]): out[t*P + p] = min(out[t*P + p], min over text t's run of shingles of
 * (shingle ^ xors[p]) * mults[p] mod 2**32). */
static PyObject *
minhash_into(PyObject *self, PyObject *args)
{
    Py_buffer shingles, starts, lengths, xors, mults, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*", &shingles, &starts, &lengths, &xors, &mults,
                          &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(&shingles, 4, "shingles") || check_items(&starts, 8, "starts")
        || check_items(&lengths, 8, "lengths") || check_items(&xors, 4, "xors")
        || check_items(&mults, 4, "mults") || check_items(&out, 4, "out")) {
        goto done;
    }
    Py_ssize_t total = shingles.len / 4, texts = starts.len / 8, perms = xors.len / 4;
    if (lengths.len / 8 != texts || mults.len / 4 != perms || out.len / 4 != texts * perms) {
        PyErr_SetString(PyExc_ValueError, "minhash_into: array sizes do not agree");
        goto done;
    }
    const int64_t *start = starts.buf, *length = lengths.buf;
    for (Py_ssize_t t = 0; t < texts; t++) {
        if (length[t] < 0 || start[t] < 0 || start[t] > total - length[t]) {
            PyErr_Format(PyExc_ValueError, "minhash_into: text %zd runs outside the shingles", t);
            goto done;
        }
    }
    const uint32_t *sh = shingles.buf, *x = xors.buf, *a = mults.buf;
    uint32_t *sig = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < texts; t++) {
        fold_run(sh + start[t], length[t], x, a, perms, sig + t * perms);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&shingles);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&xors);
    PyBuffer_Release(&mults);
    PyBuffer_Release(&out);
    return result;
}

static void
sort_u32(uint32_t *values, uint32_t *scratch, Py_ssize_t n)
{
    if (n <= 48) { /* insertion sort: the usual text is short */
        for (Py_ssize_t i = 1; i < n; i++) {
            uint32_t v = values[i];
            Py_ssize_t j = i;
            while (j > 0 && values[j - 1] > v) {
                values[j] = values[j - 1];
                j--;
            }
            values[j] = v;
        }
        return;
    }
    /* least significant digit first radix sort, a byte at a time (four passes) */
    uint32_t *from = values, *to = scratch;
    for (int shift = 0; shift < 32; shift += 8) {
        Py_ssize_t counts[257] = {0};
        for (Py_ssize_t i = 0; i < n; i++) {
            counts[((from[i] >> shift) & 0xFF) + 1]++;
        }
        for (int b = 0; b < 256; b++) {
            counts[b + 1] += counts[b];
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            to[counts[(from[i] >> shift) & 0xFF]++] = from[i];
        }
        uint32_t *swap = from;
        from = to;
        to = swap;
    }
    /* four passes: the sorted values are back in `values` */
}

static Py_ssize_t
unique_sorted(uint32_t *values, Py_ssize_t n)
{
    if (n == 0) {
        return 0;
    }
    Py_ssize_t kept = 1;
    for (Py_ssize_t i = 1; i < n; i++) {
        if (values[i] != values[kept - 1]) {
            values[kept++] = values[i];
        }
    }
    return kept;
}

/* jaccard_into(shingles u32[], starts i64[texts], lengths i64[texts], first i64[m], second i64[m],
 * out f64[m]): out[i] = |A & B| / |A | B| of the shingle sets of texts first[i] and second[i]. */
static PyObject *
jaccard_into(PyObject *self, PyObject *args)
{
    Py_buffer shingles, starts, lengths, first, second, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*", &shingles, &starts, &lengths, &first, &second,
                          &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    uint32_t *buffer = NULL;
    if (check_items(&shingles, 4, "shingles") || check_items(&starts, 8, "starts")
        || check_items(&lengths, 8, "lengths") || check_items(&first, 8, "first")
        || check_items(&second, 8, "second") || check_items(&out, 8, "out")) {
        goto done;
    }
    Py_ssize_t total = shingles.len / 4, texts = starts.len / 8, pairs = first.len / 8;
    if (lengths.len / 8 != texts || second.len / 8 != pairs || out.len / 8 != pairs) {
        PyErr_SetString(PyExc_ValueError, "jaccard_into: array sizes do not agree");
        goto done;
    }
    const uint32_t *sh = shingles.buf;
    const int64_t *start = starts.buf, *length = lengths.buf, *one = first.buf, *two = second.buf;
    double *similarity = out.buf;
    int64_t longest = 0;
    for (Py_ssize_t t = 0; t < texts; t++) {
        if (length[t] < 0 || start[t] < 0 || start[t] > total - length[t]) {
            PyErr_Format(PyExc_ValueError, "jaccard_into: text %zd runs outside the shingles", t);
            goto done;
        }
        longest = length[t] > longest ? length[t] : longest;
    }
    for (Py_ssize_t i = 0; i < pairs; i++) {
        if (one[i] < 0 || one[i] >= texts || two[i] < 0 || two[i] >= texts) {
            PyErr_Format(PyExc_ValueError, "jaccard_into: pair %zd names a text outside 0..%zd",
                         i, texts - 1);
            goto done;
        }
    }
    buffer = PyMem_RawMalloc(sizeof(uint32_t) * (size_t)(4 * longest + 4));
    if (buffer == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    uint32_t *a = buffer, *b = buffer + longest + 1, *scratch = buffer + 2 * (longest + 1);
    for (Py_ssize_t i = 0; i < pairs; i++) {
        Py_ssize_t na = (Py_ssize_t)length[one[i]], nb = (Py_ssize_t)length[two[i]];
        memcpy(a, sh + start[one[i]], sizeof(uint32_t) * (size_t)na);
        memcpy(b, sh + start[two[i]], sizeof(uint32_t) * (size_t)nb);
        sort_u32(a, scratch, na);
        sort_u32(b, scratch, nb);
        na = unique_sorted(a, na);
        nb = unique_sorted(b, nb);
        Py_ssize_t common = 0, ia = 0, ib = 0;
        while (ia < na && ib < nb) {
            if (a[ia] < b[ib]) {
                ia++;
            } else if (a[ia] > b[ib]) {
                ib++;
            } else {
                common++;
                ia++;
                ib++;
            }
        }
        Py_ssize_t either = na + nb - common;
        similarity[i] = either ? (double)common / (double)either : 0.0;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(buffer);
    PyBuffer_Release(&shingles);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&first);
    PyBuffer_Release(&second);
    PyBuffer_Release(&out);
    return result;
}

/* band_pairs_into(signatures u32[texts*P], index i64[m], bands, rows, later i64[cap], earlier
 * i64[cap]) -> pairs: for each LSH band, each text of index (ascending) whose band key an earlier
 * one of index has, paired with the earliest such text (as _dedup._candidate_pairs), band after
 * band; repeats across bands are left for the caller to drop. */
static PyObject *
band_pairs_into(PyObject *self, PyObject *args)
{
    Py_buffer signatures, index, later, earlier;
    Py_ssize_t bands, rows;
    if (!PyArg_ParseTuple(args, "y*y*nnw*w*", &signatures, &index, &bands, &rows, &later, &earlier)) {
        return NULL;
    }
    PyObject *result = NULL;
    uint64_t *table_keys = NULL;
    int64_t *table_first = NULL;
    if (check_items(&signatures, 4, "signatures") || check_items(&index, 8, "index")
        || check_items(&later, 8, "later") || check_items(&earlier, 8, "earlier")) {
        goto done;
    }
    Py_ssize_t m = index.len / 8, cap = later.len / 8, perms = bands * rows;
    if (bands < 1 || rows < 1 || earlier.len / 8 != cap || (signatures.len / 4) % perms != 0) {
        PyErr_SetString(PyExc_ValueError, "band_pairs_into: array sizes do not agree");
        goto done;
    }
    int64_t texts = (int64_t)((signatures.len / 4) / perms);
    const int64_t *text = index.buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (text[i] < 0 || text[i] >= texts || (i && text[i] <= text[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "band_pairs_into: index must be ascending text numbers");
            goto done;
        }
    }
    Py_ssize_t size = 16;
    while (size < 2 * m) {
        size *= 2;
    }
    table_keys = PyMem_RawMalloc(sizeof(uint64_t) * (size_t)size);
    table_first = PyMem_RawMalloc(sizeof(int64_t) * (size_t)size);
    if (table_keys == NULL || table_first == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint32_t *sig = signatures.buf;
    int64_t *later_of = later.buf, *earlier_of = earlier.buf;
    Py_ssize_t count = 0;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t mask = (uint64_t)size - 1;
    for (Py_ssize_t band = 0; band < bands && !full; band++) {
        for (Py_ssize_t slot = 0; slot < size; slot++) {
            table_first[slot] = -1;
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            const uint32_t *row = sig + text[i] * perms + band * rows;
            uint64_t key = 0;
            for (Py_ssize_t column = 0; column < rows; column++) {
                key = mix64(key ^ (uint64_t)row[column] ^ ((uint64_t)column << 40));
            }
            uint64_t slot = key & mask;
            while (table_first[slot] >= 0 && table_keys[slot] != key) {
                slot = (slot + 1) & mask;
            }
            if (table_first[slot] < 0) {
                table_keys[slot] = key;
                table_first[slot] = text[i];
            } else if (count == cap) {
                full = 1;
                break;
            } else {
                later_of[count] = text[i];
                earlier_of[count] = table_first[slot];
                count++;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (full) {
        PyErr_SetString(PyExc_ValueError, "band_pairs_into: more pairs than room");
        goto done;
    }
    result = PyLong_FromSsize_t(count);
done:
    PyMem_RawFree(table_keys);
    PyMem_RawFree(table_first);
    PyBuffer_Release(&signatures);
    PyBuffer_Release(&index);
    PyBuffer_Release(&later);
    PyBuffer_Release(&earlier);
    return result;
}

/* agreement_into(signatures u32[texts*P], first i64[m], second i64[m], out f64[m]): the share of
 * equal values in the signatures of each pair (as _dedup._agreement). */
static PyObject *
agreement_into(PyObject *self, PyObject *args)
{
    Py_buffer signatures, first, second, out;
    Py_ssize_t perms;
    if (!PyArg_ParseTuple(args, "y*ny*y*w*", &signatures, &perms, &first, &second, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(&signatures, 4, "signatures") || check_items(&first, 8, "first")
        || check_items(&second, 8, "second") || check_items(&out, 8, "out")) {
        goto done;
    }
    Py_ssize_t m = first.len / 8;
    if (perms < 1 || second.len / 8 != m || out.len / 8 != m || (signatures.len / 4) % perms != 0) {
        PyErr_SetString(PyExc_ValueError, "agreement_into: array sizes do not agree");
        goto done;
    }
    int64_t texts = (int64_t)((signatures.len / 4) / perms);
    const int64_t *one = first.buf, *two = second.buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (one[i] < 0 || one[i] >= texts || two[i] < 0 || two[i] >= texts) {
            PyErr_Format(PyExc_ValueError, "agreement_into: pair %zd names a text outside 0..%lld", i,
                         (long long)texts - 1);
            goto done;
        }
    }
    const uint32_t *sig = signatures.buf;
    double *share = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {
        const uint32_t *a = sig + one[i] * perms, *b = sig + two[i] * perms;
        Py_ssize_t equal = 0;
        for (Py_ssize_t p = 0; p < perms; p++) {
            equal += a[p] == b[p];
        }
        share[i] = (double)equal / (double)perms;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&signatures);
    PyBuffer_Release(&first);
    PyBuffer_Release(&second);
    PyBuffer_Release(&out);
    return result;
}

/* ---- text rules ---------------------------------------------------------------------------- */

static inline int
unspaced_letter(Py_UCS4 c)
{
    /* text_rules._UNSPACED: scripts written without spaces between words */
    return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff)
           || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xff66 && c <= 0xff9f) || (c >= 0x0e00 && c <= 0x0eff)
           || (c >= 0x1000 && c <= 0x109f) || (c >= 0x1780 && c <= 0x17ff)
           || (c >= 0x20000 && c <= 0x2fa1f);
}

static inline int
unspaced_punctuation(Py_UCS4 c)
{
    /* text_rules._UNSPACED_PUNCTUATION */
    return (c >= 0x3000 && c <= 0x303f) || (c >= 0xff01 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20)
           || (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65);
}

static int
check_texts(PyObject *texts, Py_buffer *out, Py_ssize_t itemsize, const char *name)
{
    if (check_items(out, itemsize, name)) {
        return -1;
    }
    if (out->len / itemsize != PyList_GET_SIZE(texts)) {
        PyErr_Format(PyExc_ValueError, "%s: one result per text is needed", name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "%s: item %zd is not a str", name, i);
            return -1;
        }
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(text) < 0) { /* a legacy string made through the old C API */
            return -1;
        }
#endif
    }
    return 0;
}

static unsigned char latin1_space[256];
/* Py_UNICODE_ISSPACE of each one-byte character (what str.split splits at); filled on load */

/* count_words_into(texts: list[str], out i64[n]): text_rules.count_words of each text. */
static PyObject *
count_words_into(PyObject *self, PyObject *args)
{
    PyObject *texts;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "O!w*", &PyList_Type, &texts, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_texts(texts, &out, 8, "count_words_into")) {
        goto done;
    }
    int64_t *count = out.buf;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        if (kind == PyUnicode_1BYTE_KIND) { /* no unspaced script below U+0100: str.split */
            const Py_UCS1 *chars = data;
            int64_t words = 0;
            int in_word = 0;
            for (Py_ssize_t j = 0; j < length; j++) {
                int space = latin1_space[chars[j]];
                words += !space && !in_word;
                in_word = !space;
            }
            count[i] = words;
            continue;
        }
        /* words split by whitespace only (str.split), and split also at the letters and
         * punctuation of unspaced scripts; the second applies when the text has such letters */
        int64_t plain = 0, split = 0, unspaced = 0;
        int in_plain = 0, in_split = 0;
        for (Py_ssize_t j = 0; j < length; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            int space = Py_UNICODE_ISSPACE(c);
            int letter = !space && c >= 0x0e00 && unspaced_letter(c);
            int separator = space || letter || (c >= 0x3000 && unspaced_punctuation(c));
            unspaced += letter;
            plain += !space && !in_plain;
            in_plain = !space;
            split += !separator && !in_split;
            in_split = !separator;
        }
        count[i] = unspaced ? unspaced + split : plain;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&out);
    return result;
}

#define UNMATCHABLE 0x80 /* stands for a character that lowercases to no ASCII letter */

static unsigned char latin1_lowered[256];
/* each one-byte character as the filler search sees it: ASCII lowercased, the rest unmatchable */

/* filler_bits_into(texts: list[str], phrases: tuple[bytes], out u64[n]): bit k of out[i] is set
 * when phrases[k] (lowercase ASCII) occurs in texts[i].lower() with "’" read as "'" (as
 * text_rules.filler_phrases_in). */
static PyObject *
filler_bits_into(PyObject *self, PyObject *args)
{
    PyObject *texts, *phrases;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "O!O!w*", &PyList_Type, &texts, &PyTuple_Type, &phrases, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char *lowered = NULL;
    Py_ssize_t room = 0, count = PyTuple_GET_SIZE(phrases);
    if (check_texts(texts, &out, 8, "filler_bits_into")) {
        goto done;
    }
    if (count > 64) {
        PyErr_SetString(PyExc_ValueError, "filler_bits_into: at most 64 phrases");
        goto done;
    }
    const char *phrase[64];
    Py_ssize_t phrase_length[64];
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PyTuple_GET_ITEM(phrases, k);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) == 0) {
            PyErr_SetString(PyExc_TypeError, "filler_bits_into: phrases must be non-empty bytes");
            goto done;
        }
        phrase[k] = PyBytes_AS_STRING(item);
        phrase_length[k] = PyBytes_GET_SIZE(item);
    }
    /* the phrases that may start at a byte: those whose first byte it is and whose second byte
     * the next one is (every byte, for a phrase of one byte) */
    uint64_t first[256] = {0}, second[256] = {0};
    for (Py_ssize_t k = 0; k < count; k++) {
        first[(unsigned char)phrase[k][0]] |= (uint64_t)1 << k;
        for (int b = 0; b < 256; b++) {
            if (phrase_length[k] == 1 || b == (unsigned char)phrase[k][1]) {
                second[b] |= (uint64_t)1 << k;
            }
        }
    }
    uint64_t *bits = out.buf;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text), n = 0;
        if (2 * length + 1 > room) {
            PyMem_Free(lowered);
            room = 2 * length + 1;
            lowered = PyMem_Malloc((size_t)room + 1);
            if (lowered == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        if (kind == PyUnicode_1BYTE_KIND) {
            const Py_UCS1 *chars = data;
            for (Py_ssize_t j = 0; j < length; j++) {
                lowered[j] = latin1_lowered[chars[j]];
            }
            n = length;
        }
        for (Py_ssize_t j = 0; kind != PyUnicode_1BYTE_KIND && j < length; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            if (c < 0x80) {
                lowered[n++] = (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            } else if (c == 0x2019) { /* right single quotation mark */
                lowered[n++] = '\'';
            } else if (c == 0x212A) { /* Kelvin sign: lowercases to k */
                lowered[n++] = 'k';
            } else if (c == 0x130) { /* capital I with dot above: lowercases to i + combining dot */
                lowered[n++] = 'i';
                lowered[n++] = UNMATCHABLE;
            } else {
                lowered[n++] = UNMATCHABLE;
            }
        }
        uint64_t found = 0, all = count == 64 ? ~(uint64_t)0 : ((uint64_t)1 << count) - 1;
        lowered[n] = 0; /* a phrase of one byte: its second byte may be anything */
        for (Py_ssize_t j = 0; j < n && found != all; j++) {
            uint64_t maybe = first[lowered[j]] & second[lowered[j + 1]] & ~found;
            while (maybe) {
                int k = __builtin_ctzll(maybe);
                maybe &= maybe - 1;
                if (j + phrase_length[k] <= n
                    && memcmp(lowered + j, phrase[k], (size_t)phrase_length[k]) == 0) {
                    found |= (uint64_t)1 << k;
                }
            }
        }
        bits[i] = found;
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(lowered);
    PyBuffer_Release(&out);
    return result;
}

static inline int
token_char(Py_UCS4 c)
{
    /* text_rules._TOKEN_TABLE: [A-Za-z0-9_-] */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
           || c == '-';
}

static inline int
holds_at(int kind, const void *data, Py_ssize_t length, Py_ssize_t at, const char *needle,
         Py_ssize_t size)
{
    if (at + size > length) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < size; k++) {
        if (PyUnicode_READ(kind, data, at + k) != (Py_UCS4)(unsigned char)needle[k]) {
            return 0;
        }
    }
    return 1;
}

/* pii_flags_into(texts: list[str], min_digits, min_key_run, out u8[n]): text_rules.may_hold_pii_batch:
 * whether a text has min_digits ASCII digits, an '@', a run of min_key_run [A-Za-z0-9_-], or
 * says "earer" or "PRIVATE KEY". */
static PyObject *
pii_flags_into(PyObject *self, PyObject *args)
{
    PyObject *texts;
    Py_ssize_t min_digits, min_key_run;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "O!nnw*", &PyList_Type, &texts, &min_digits, &min_key_run, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_texts(texts, &out, 1, "pii_flags_into")) {
        goto done;
    }
    unsigned char *flag = out.buf;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text), digits = 0, run = 0;
        int found = 0;
        for (Py_ssize_t j = 0; j < length && !found; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            digits += c >= '0' && c <= '9';
            run = token_char(c) ? run + 1 : 0;
            found = digits >= min_digits || run >= min_key_run || c == '@'
                    || (c == 'e' && holds_at(kind, data, length, j, "earer", 5))
                    || (c == 'P' && holds_at(kind, data, length, j, "PRIVATE KEY", 11));
        }
        flag[i] = (unsigned char)found;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"band_pairs_into", band_pairs_into, METH_VARARGS,
     "band_pairs_into(signatures, index, bands, rows, later, earlier) -> pairs: LSH candidate "
     "pairs, band by band."},
    {"agreement_into", agreement_into, METH_VARARGS,
     "agreement_into(signatures, perms, first, second, out): the share of equal signature values "
     "of each pair."},
    {"pii_flags_into", pii_flags_into, METH_VARARGS,
     "pii_flags_into(texts, min_digits, min_key_run, out): whether each text may hold PII (uint8)."},
    {"count_words_into", count_words_into, METH_VARARGS,
     "count_words_into(texts, out): text_rules.count_words of each text (int64)."},
    {"filler_bits_into", filler_bits_into, METH_VARARGS,
     "filler_bits_into(texts, phrases, out): a bit per phrase found in each text (uint64)."},
    {"word_hashes_into", word_hashes_into, METH_VARARGS,
     "word_hashes_into(data, mix, hashes, docs) -> words: the hash and text of each word of "
     "joined, padded, ASCII-lowered texts."},
    {"exact_keys_into", exact_keys_into, METH_VARARGS,
     "exact_keys_into(words, docs, mix_position, mix_count, keys): each text's order-sensitive "
     "key of its word hashes."},
    {"shingles_into", shingles_into, METH_VARARGS,
     "shingles_into(words, docs, width, multiplier, out): the shingle hash of width words at each "
     "word."},
    {"minhash_into", minhash_into, METH_VARARGS,
     "minhash_into(shingles, starts, lengths, xors, mults, out): fold each text's run of shingles "
     "into its MinHash signature (out: texts x permutations, uint32, filled with 0xFFFFFFFF "
     "beforehand)."},
    {"jaccard_into", jaccard_into, METH_VARARGS,
     "jaccard_into(shingles, starts, lengths, first, second, out): the exact Jaccard similarity "
     "of the shingle sets of each pair of texts (float64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The workbench's innermost loops in C (see metahuman_lib/_native.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    fill_word_bytes();
    for (int b = 0; b < 256; b++) {
        latin1_space[b] = (unsigned char)Py_UNICODE_ISSPACE((Py_UCS4)b);
        latin1_lowered[b] = (unsigned char)(b >= 'A' && b <= 'Z' ? b + 32 : b < 0x80 ? b : UNMATCHABLE);
    }
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", KERNELS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
