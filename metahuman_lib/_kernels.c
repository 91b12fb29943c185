/* Deduplication's inner loops in C: word hashes, exact keys, shingles, MinHash signatures and
 * exact Jaccard similarities.
 *
 * Why C: numpy computes a MinHash signature in three passes over a permutations x shingles
 * temporary (xor, multiply, segmented minimum); one fused loop that keeps a text's signature in
 * registers is several times faster, and the exact Jaccard of a pair is a sort and a merge of
 * two short runs instead of two Python sets. Both give exactly what the numpy and Python code
 * of metahuman_lib/_dedup.py gives (the tests compare them); that code is the fallback when this
 * module was not built (no C compiler).
 *
 * Arrays come in through the buffer protocol (any C-contiguous array of the right item size);
 * the GIL is released while the loops run. VERSION must match _dedup._KERNELS_VERSION, so a
 * module left over from an older source is never used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNELS_VERSION 2

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

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
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

static PyMethodDef methods[] = {
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
    "Deduplication's inner loops in C (see metahuman_lib/_dedup.py).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    fill_word_bytes();
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", KERNELS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
