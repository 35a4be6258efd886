/* Optional compiled speedups for the audit hot path and verification (infertrail._native).
 *
 * Every function here has a pure-Python twin that gives the same result (the tests compare
 * them); the package works without this module. What it saves is Python's per-value and
 * per-call overhead, not algorithmic work:
 *   fast_form(obj)          the type walk RFC 8785 canonicalization does before orjson writes
 *                           (infertrail.audit.canonical._fast is the reference);
 *   leaf_hashes(records)    RFC 6962 leaf hashes SHA-256(0x00 || record), one bytes each;
 *   leaf_hashes_arrow(...)  the same over the buffers of an Arrow binary array, in place,
 *                           returned back to back in one bytes object;
 *   node_hashes(ls, rs)     RFC 6962 node hashes SHA-256(0x01 || left || right);
 *   node_level(level, skip) the same over pairs of one level of hashes held back to back;
 *   join_numbered(hs, ts, n)  records numbered around their seqs, head + digits + tail (the
 *                           audit writer's per-batch join; bytes % formatting costs ~0.9 us each);
 *   top_level_int(data, key)  the integer a JSON object's top-level ``key`` holds, read
 *                           without building the object (verification reads each WAL record's
 *                           claimed seq this way; orjson.loads(data).get(key) is the reference).
 * Hashing uses OpenSSL's SHA-256 (the library CPython's hashlib uses) with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

#define HASH_SIZE 32
#define MAX_DEPTH 64 /* deeper values take the Python path, which reports recursion itself */

/* ---- fast_form --------------------------------------------------------------------------- */

#define MAX_SAFE_INTEGER 9007199254740991.0 /* 2**53 - 1: JCS refuses larger integers */

/* A NULL return with no exception set: "not for the fast path" (the caller goes to Python). */
static PyObject *form(PyObject *obj, int depth);

static int float_ready(double v)
{
    /* orjson writes these exactly as ECMAScript Number::toString does (see canonical.py) */
    if (!((1e-5 <= v && v < 1e16) || (-1e16 < v && v <= -1e-5)))
        return 0;
    return v != floor(v); /* integral floats print as "2.0" in orjson, "2" in JCS */
}

static PyObject *float_form(PyObject *obj)
{
    double v = PyFloat_AS_DOUBLE(obj);
    if (float_ready(v))
        return Py_NewRef(obj);
    /* Integral and safe (this includes 0.0 and -0.0): JCS writes it as the integer it is. */
    if (v == floor(v) && -MAX_SAFE_INTEGER <= v && v <= MAX_SAFE_INTEGER)
        return PyLong_FromDouble(v == 0.0 ? 0.0 : v);
    return NULL; /* tiny, huge or not finite: Python writes a fragment or reports it */
}

/* Items of a list or tuple: the same object if none changed, else a new list. */
static PyObject *items_form(PyObject *obj, PyObject *const *items, Py_ssize_t n, int depth)
{
    PyObject *copy = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = form(items[i], depth);
        if (item == NULL) {
            Py_XDECREF(copy);
            return NULL;
        }
        if (item != items[i] && copy == NULL) {
            copy = PyList_New(n);
            if (copy == NULL) {
                Py_DECREF(item);
                return NULL;
            }
            for (Py_ssize_t j = 0; j < i; j++)
                PyList_SET_ITEM(copy, j, Py_NewRef(items[j]));
        }
        if (copy != NULL)
            PyList_SET_ITEM(copy, i, item); /* steals the reference */
        else
            Py_DECREF(item);
    }
    return copy != NULL ? copy : Py_NewRef(obj);
}

static PyObject *dict_form(PyObject *obj, int depth)
{
    PyObject *copy = NULL, *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        if (Py_TYPE(key) != &PyUnicode_Type) {
            Py_XDECREF(copy);
            return NULL;
        }
        PyObject *item = form(value, depth);
        if (item == NULL) {
            Py_XDECREF(copy);
            return NULL;
        }
        if (item != value && copy == NULL && (copy = PyDict_Copy(obj)) == NULL) {
            Py_DECREF(item);
            return NULL;
        }
        int failed = copy != NULL && item != value && PyDict_SetItem(copy, key, item) < 0;
        Py_DECREF(item);
        if (failed) {
            Py_DECREF(copy);
            return NULL;
        }
    }
    return copy != NULL ? copy : Py_NewRef(obj);
}

static PyObject *form(PyObject *obj, int depth)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t == &PyUnicode_Type || obj == Py_None || t == &PyLong_Type || t == &PyBool_Type)
        return Py_NewRef(obj);
    if (t == &PyFloat_Type)
        return float_form(obj);
    if (depth >= MAX_DEPTH)
        return NULL;
    if (t == &PyDict_Type)
        return dict_form(obj, depth + 1);
    if (t == &PyList_Type)
        return items_form(obj, ((PyListObject *)obj)->ob_item, PyList_GET_SIZE(obj), depth + 1);
    if (t == &PyTuple_Type)
        return items_form(obj, ((PyTupleObject *)obj)->ob_item, PyTuple_GET_SIZE(obj), depth + 1);
    return NULL;
}

PyDoc_STRVAR(fast_form_doc,
"fast_form(obj) -> object | None\n\n"
"``obj``, or a copy with integral floats as ints, that orjson (sorted keys, strict integers)\n"
"writes exactly as RFC 8785 does: only exact dict (str keys), list, tuple, str, int, bool,\n"
"None and floats. None when something needs the caller's slower, exact path (another type, a\n"
"float orjson writes differently or that has no JSON form, nesting deeper than 64).");

static PyObject *fast_form(PyObject *self, PyObject *obj)
{
    (void)self;
    PyObject *out = form(obj, 0);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

/* ---- hashing ----------------------------------------------------------------------------- */

/* Byte views of a sequence's items, each kept alive by a reference, for use without the GIL. */
typedef struct {
    Py_ssize_t n;
    PyObject **owners;
    const unsigned char **data;
    Py_ssize_t *size;
} Views;

static void views_free(Views *v)
{
    for (Py_ssize_t i = 0; i < v->n; i++)
        Py_XDECREF(v->owners[i]);
    PyMem_Free(v->owners);
    PyMem_Free(v->data);
    PyMem_Free(v->size);
}

/* Fill ``v`` from a sequence of bytes; -1 with an exception set on failure. Only exact bytes
 * are taken: their buffers cannot change or move while a reference is held. */
static int views_of(PyObject *seq, Views *v, const char *what, Py_ssize_t fixed)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    v->n = 0;
    v->owners = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    v->data = PyMem_Calloc(n ? n : 1, sizeof(unsigned char *));
    v->size = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (v->owners == NULL || v->data == NULL || v->size == NULL) {
        views_free(v);
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!PyBytes_CheckExact(item)) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be bytes, not %.100s", what, i,
                         Py_TYPE(item)->tp_name);
            views_free(v);
            Py_DECREF(fast);
            return -1;
        }
        if (fixed >= 0 && PyBytes_GET_SIZE(item) != fixed) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be %zd bytes, got %zd", what, i, fixed,
                         PyBytes_GET_SIZE(item));
            views_free(v);
            Py_DECREF(fast);
            return -1;
        }
        Py_INCREF(item);
        v->owners[i] = item;
        v->data[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        v->size[i] = PyBytes_GET_SIZE(item);
        v->n = i + 1;
    }
    Py_DECREF(fast);
    return 0;
}

/* A list of ``n`` 32-byte bytes objects cut from ``digests``. */
static PyObject *digest_list(const unsigned char *digests, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)digests + i * HASH_SIZE, HASH_SIZE);
        if (b == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, b);
    }
    return out;
}

PyDoc_STRVAR(leaf_hashes_doc,
"leaf_hashes(records) -> list[bytes]\n\n"
"RFC 6962 leaf hashes SHA-256(0x00 || record) of a sequence of bytes, in order.");

static PyObject *leaf_hashes(PyObject *self, PyObject *records)
{
    (void)self;
    Views v;
    if (views_of(records, &v, "records", -1) < 0)
        return NULL;
    unsigned char *digests = PyMem_Malloc(v.n ? v.n * HASH_SIZE : 1);
    if (digests == NULL) {
        views_free(&v);
        return PyErr_NoMemory();
    }
    static const unsigned char prefix = 0x00;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < v.n; i++) {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &prefix, 1);
        SHA256_Update(&ctx, v.data[i], (size_t)v.size[i]);
        SHA256_Final(digests + i * HASH_SIZE, &ctx);
    }
    Py_END_ALLOW_THREADS
    PyObject *out = digest_list(digests, v.n);
    PyMem_Free(digests);
    views_free(&v);
    return out;
}

PyDoc_STRVAR(leaf_hashes_arrow_doc,
"leaf_hashes_arrow(offsets, data, start, count, offset_size) -> bytes\n\n"
"Leaf hashes of values start..start+count of an Arrow binary array, read in place from its\n"
"offsets buffer (int32 or int64 entries: offset_size 4 or 8) and data buffer; concatenated,\n"
"32 bytes each (no bytes object per hash).");

static PyObject *leaf_hashes_arrow(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer offsets, data;
    Py_ssize_t start, count;
    int offset_size;
    if (!PyArg_ParseTuple(args, "y*y*nni", &offsets, &data, &start, &count, &offset_size))
        return NULL;
    PyObject *out = NULL;
    if (offset_size != 4 && offset_size != 8) {
        PyErr_Format(PyExc_ValueError, "offset_size must be 4 or 8, got %d", offset_size);
        goto done;
    }
    if (start < 0 || count < 0 || (start + count + 1) > offsets.len / offset_size) {
        PyErr_Format(PyExc_ValueError, "values %zd..%zd are outside an offsets buffer of %zd bytes",
                     start, start + count, offsets.len);
        goto done;
    }
    /* Every offset used must lie inside the data and never decrease: checked before hashing. */
    const unsigned char *base = offsets.buf;
    long long previous = -1;
    for (Py_ssize_t i = start; i <= start + count; i++) {
        long long at = offset_size == 4 ? (long long)((const int32_t *)base)[i]
                                        : (long long)((const int64_t *)base)[i];
        if (at < previous || at < 0 || at > data.len) {
            PyErr_Format(PyExc_ValueError, "offset %lld of value %zd is out of order or outside "
                         "a data buffer of %zd bytes", at, i, data.len);
            goto done;
        }
        previous = at;
    }
    out = PyBytes_FromStringAndSize(NULL, count * HASH_SIZE);
    if (out == NULL)
        goto done;
    /* Filled without the GIL: no other code can see this bytes object yet. */
    unsigned char *digests = (unsigned char *)PyBytes_AS_STRING(out);
    static const unsigned char prefix = 0x00;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *bytes = data.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t k = start + i;
        long long begin = offset_size == 4 ? (long long)((const int32_t *)base)[k]
                                           : (long long)((const int64_t *)base)[k];
        long long end = offset_size == 4 ? (long long)((const int32_t *)base)[k + 1]
                                         : (long long)((const int64_t *)base)[k + 1];
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &prefix, 1);
        SHA256_Update(&ctx, bytes + begin, (size_t)(end - begin));
        SHA256_Final(digests + i * HASH_SIZE, &ctx);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return out;
}

PyDoc_STRVAR(node_hashes_doc,
"node_hashes(lefts, rights) -> list[bytes]\n\n"
"RFC 6962 node hashes SHA-256(0x01 || lefts[i] || rights[i]); both of 32-byte bytes, same length.");

static PyObject *node_hashes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "node_hashes expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    Views left, right;
    if (views_of(args[0], &left, "lefts", HASH_SIZE) < 0)
        return NULL;
    if (views_of(args[1], &right, "rights", HASH_SIZE) < 0) {
        views_free(&left);
        return NULL;
    }
    if (left.n != right.n) {
        PyErr_Format(PyExc_ValueError, "lefts has %zd hashes but rights has %zd", left.n, right.n);
        views_free(&left);
        views_free(&right);
        return NULL;
    }
    Py_ssize_t n = left.n;
    unsigned char *digests = PyMem_Malloc(n ? n * HASH_SIZE : 1);
    if (digests == NULL) {
        views_free(&left);
        views_free(&right);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    unsigned char message[1 + 2 * HASH_SIZE];
    message[0] = 0x01;
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(message + 1, left.data[i], HASH_SIZE);
        memcpy(message + 1 + HASH_SIZE, right.data[i], HASH_SIZE);
        /* Not the one-shot SHA256(): in OpenSSL 3 it fetches the algorithm on every call. */
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, message, sizeof message);
        SHA256_Final(digests + i * HASH_SIZE, &ctx);
    }
    Py_END_ALLOW_THREADS
    PyObject *out = digest_list(digests, n);
    PyMem_Free(digests);
    views_free(&left);
    views_free(&right);
    return out;
}

PyDoc_STRVAR(node_level_doc,
"node_level(level, skip) -> bytes\n\n"
"One tree level up: ``level`` holds 32-byte hashes back to back; node i of the result is\n"
"SHA-256(0x01 || hash[skip + 2i] || hash[skip + 2i + 1]), for every whole pair from ``skip``\n"
"(0 or 1). Concatenated like its input.");

static PyObject *node_level(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer level;
    int skip;
    if (!PyArg_ParseTuple(args, "y*i:node_level", &level, &skip))
        return NULL;
    PyObject *out = NULL;
    if (level.len % HASH_SIZE) {
        PyErr_Format(PyExc_ValueError, "a level of 32-byte hashes cannot be %zd bytes long",
                     level.len);
        goto done;
    }
    if (skip != 0 && skip != 1) {
        PyErr_Format(PyExc_ValueError, "skip must be 0 or 1, got %d", skip);
        goto done;
    }
    Py_ssize_t count = level.len / HASH_SIZE;
    Py_ssize_t pairs = count > skip ? (count - skip) / 2 : 0;
    out = PyBytes_FromStringAndSize(NULL, pairs * HASH_SIZE);
    if (out == NULL)
        goto done;
    unsigned char *digests = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *hashes = (const unsigned char *)level.buf + skip * HASH_SIZE;
    static const unsigned char prefix = 0x01;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < pairs; i++) {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &prefix, 1);
        SHA256_Update(&ctx, hashes + 2 * i * HASH_SIZE, 2 * HASH_SIZE);
        SHA256_Final(digests + i * HASH_SIZE, &ctx);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&level);
    return out;
}

/* ---- top_level_int ----------------------------------------------------------------------- */

static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* ``p`` at a string's opening quote: just past its closing quote (NULL if it has none). With
 * ``escaped``, it is set when the string holds a backslash escape. */
static const unsigned char *skip_string(const unsigned char *p, const unsigned char *end,
                                        int *escaped)
{
    const unsigned char *from = ++p;
    for (;;) {
        const unsigned char *quote = memchr(p, '"', (size_t)(end - p));
        if (quote == NULL)
            return NULL;
        const unsigned char *run = quote; /* a quote after an odd run of backslashes is text */
        while (run > p && run[-1] == '\\')
            run--;
        if (((quote - run) & 1) == 0) {
            if (escaped != NULL && memchr(from, '\\', (size_t)(quote - from)) != NULL)
                *escaped = 1;
            return quote + 1;
        }
        p = quote + 1;
    }
}

/* Just past one value starting at ``p`` (a string, an object or array, or a scalar, which ends
 * at whitespace, ',' or the enclosing '}'); NULL if it does not end or is empty. Nested values
 * are skipped by bracket depth and strings: enough to find the top level of valid JSON. */
static const unsigned char *skip_value(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *start = p;
    int depth = 0;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"') {
            p = skip_string(p, end, NULL);
            if (p == NULL || depth == 0)
                return p;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                break;
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            break;
        }
        p++;
    }
    return depth == 0 && p > start ? p : NULL;
}

/* A JSON integer in [p, end) that fits int64 with room to spare (at most 18 digits). */
static int parse_int(const unsigned char *p, const unsigned char *end, long long *out)
{
    int negative = p < end && *p == '-';
    p += negative;
    Py_ssize_t digits = end - p;
    if (digits < 1 || digits > 18 || (*p == '0' && digits > 1))
        return 0;
    long long value = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        value = value * 10 + (*p - '0');
    }
    *out = negative ? -value : value;
    return 1;
}

/* 1 if [p, end) is one JSON object whose top-level keys were all read; then *found says
 * whether its last ``key`` holds such an integer, stored in *value. 0: undecided. */
static int scan_object(const unsigned char *p, const unsigned char *end, const char *key,
                       Py_ssize_t key_size, int *found, long long *value)
{
    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end;
    for (;;) {
        if (p == end || *p != '"')
            return 0;
        const unsigned char *name = p + 1;
        int escaped = 0;
        p = skip_string(p, end, &escaped);
        if (p == NULL || escaped) /* an escaped key could spell ``key``: not decided here */
            return 0;
        int match = p - 1 - name == key_size && memcmp(name, key, (size_t)key_size) == 0;
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            return 0;
        const unsigned char *v = skip_ws(p + 1, end);
        p = skip_value(v, end);
        if (p == NULL)
            return 0;
        if (match) /* JSON parsers keep the last of repeated keys */
            *found = parse_int(v, p, value);
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        return p < end && *p == '}' && skip_ws(p + 1, end) == end;
    }
}

PyDoc_STRVAR(top_level_int_doc,
"top_level_int(data, key) -> int | None\n\n"
"The integer the top-level ``key`` of the JSON object ``data`` holds (the last, if repeated),\n"
"as orjson.loads(data).get(key) gives it. None when this scan cannot say: no such member, not\n"
"an integer of at most 18 digits, a key with escapes, not an object; the caller then parses.\n"
"Only the top level is checked for syntax: on bytes that are not JSON it may return a number.");

static PyObject *top_level_int(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer data;
    const char *key;
    Py_ssize_t key_size;
    if (!PyArg_ParseTuple(args, "y*y#:top_level_int", &data, &key, &key_size))
        return NULL;
    const unsigned char *p = data.buf;
    int found = 0;
    long long value = 0;
    int ok = scan_object(p, p + data.len, key, key_size, &found, &value);
    PyBuffer_Release(&data);
    if (ok && found)
        return PyLong_FromLongLong(value);
    Py_RETURN_NONE;
}

/* ---- join_numbered ----------------------------------------------------------------------- */

PyDoc_STRVAR(join_numbered_doc,
"join_numbered(heads, tails, first) -> list[bytes]\n\n"
"heads[i] + b\"%d\" % (first + i) + tails[i] for every i (lists of bytes of equal length,\n"
"first >= 0): the audit writer numbering a batch of records around their seqs.");

static PyObject *join_numbered(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *heads, *tails;
    long long first;
    if (!PyArg_ParseTuple(args, "O!O!L:join_numbered", &PyList_Type, &heads, &PyList_Type,
                          &tails, &first))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(heads);
    if (PyList_GET_SIZE(tails) != n) {
        PyErr_Format(PyExc_ValueError, "%zd heads but %zd tails", n, PyList_GET_SIZE(tails));
        return NULL;
    }
    if (first < 0 || first > (1LL << 62)) {
        PyErr_Format(PyExc_ValueError, "first seq must be in [0, 2**62], got %lld", first);
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *head = PyList_GET_ITEM(heads, i), *tail = PyList_GET_ITEM(tails, i);
        if (!PyBytes_CheckExact(head) || !PyBytes_CheckExact(tail)) {
            PyErr_Format(PyExc_TypeError, "heads[%zd] and tails[%zd] must be bytes", i, i);
            Py_DECREF(out);
            return NULL;
        }
        char digits[24], *end = digits + sizeof digits, *d = end;
        unsigned long long seq = (unsigned long long)first + (unsigned long long)i;
        do {
            *--d = (char)('0' + seq % 10);
            seq /= 10;
        } while (seq);
        Py_ssize_t hs = PyBytes_GET_SIZE(head), ds = end - d, ts = PyBytes_GET_SIZE(tail);
        PyObject *record = PyBytes_FromStringAndSize(NULL, hs + ds + ts);
        if (record == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        char *p = PyBytes_AS_STRING(record);
        memcpy(p, PyBytes_AS_STRING(head), (size_t)hs);
        memcpy(p + hs, d, (size_t)ds);
        memcpy(p + hs + ds, PyBytes_AS_STRING(tail), (size_t)ts);
        PyList_SET_ITEM(out, i, record);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"fast_form", fast_form, METH_O, fast_form_doc},
    {"leaf_hashes", leaf_hashes, METH_O, leaf_hashes_doc},
    {"leaf_hashes_arrow", leaf_hashes_arrow, METH_VARARGS, leaf_hashes_arrow_doc},
    {"node_hashes", (PyCFunction)(void (*)(void))node_hashes, METH_FASTCALL, node_hashes_doc},
    {"node_level", node_level, METH_VARARGS, node_level_doc},
    {"top_level_int", top_level_int, METH_VARARGS, top_level_int_doc},
    {"join_numbered", join_numbered, METH_VARARGS, join_numbered_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "infertrail._native",
    .m_doc = "Compiled speedups for canonicalization and Merkle hashing (see _native.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
