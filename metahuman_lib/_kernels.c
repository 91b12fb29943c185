/* Deduplication's two inner loops in C: MinHash signatures and exact Jaccard similarities.
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

#define KERNELS_VERSION 1

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
    "Deduplication's MinHash and exact Jaccard loops in C (see metahuman_lib/_dedup.py).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", KERNELS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
