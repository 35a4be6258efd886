/* Optional compiled speedups for the audit hot path and verification (infertrail._native).
 *
 * Every function here has a pure-Python twin that gives the same result (the tests compare
 * them); the package works without this module. What it saves is mostly Python's per-value and
 * per-call overhead:
 *   canonical(obj)          RFC 8785 (JCS) bytes in one pass, floats by the Schubfach shortest
 *                           round-trip algorithm (infertrail.audit.canonical's exact encoder is
 *                           the reference; anything it cannot vouch for is left to that one);
 *   canonical_parts(obj, k) the same around the place of one integer member (the seq);
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

/* ---- RFC 8785 encoder ------------------------------------------------------------------- */

/* Results of the encoder's steps. DECLINE (no exception set) hands the value to Python's exact
 * encoder, which covers everything RFC 8785 allows and names whatever it refuses. */
#define ENC_OK 0
#define ENC_FAIL (-1)
#define ENC_DECLINE 1

#define MAX_SAFE_INTEGER 9007199254740991LL /* 2**53 - 1: JCS refuses larger integers */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char local[4096];
} Out;

static void out_init(Out *o)
{
    o->data = o->local;
    o->len = 0;
    o->cap = sizeof o->local;
}

static void out_free(Out *o)
{
    if (o->data != o->local)
        PyMem_Free(o->data);
}

static int out_grow(Out *o, Py_ssize_t need)
{
    if (need > PY_SSIZE_T_MAX / 2 - o->len) {
        PyErr_NoMemory();
        return ENC_FAIL;
    }
    Py_ssize_t cap = o->cap * 2 > o->len + need ? o->cap * 2 : o->len + need;
    char *p = o->data == o->local ? PyMem_Malloc((size_t)cap)
                                  : PyMem_Realloc(o->data, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return ENC_FAIL;
    }
    if (o->data == o->local)
        memcpy(p, o->local, (size_t)o->len);
    o->data = p;
    o->cap = cap;
    return ENC_OK;
}

/* Room for `need` more bytes; ENC_OK or ENC_FAIL. */
static inline int out_reserve(Out *o, Py_ssize_t need)
{
    return o->cap - o->len >= need ? ENC_OK : out_grow(o, need);
}

static inline int out_put(Out *o, const char *s, Py_ssize_t n)
{
    if (out_reserve(o, n) != ENC_OK)
        return ENC_FAIL;
    memcpy(o->data + o->len, s, (size_t)n);
    o->len += n;
    return ENC_OK;
}

static const char DIGIT_PAIRS[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal digits of v ending at `end` (room for 20 before it); returns where they start. */
static char *digits_of(unsigned long long v, char *end)
{
    while (v >= 100000000) { /* eight digits at a time in 32-bit arithmetic */
        uint32_t low = (uint32_t)(v % 100000000);
        v /= 100000000;
        for (int i = 0; i < 4; i++) {
            end -= 2;
            memcpy(end, DIGIT_PAIRS + 2 * (low % 100), 2);
            low /= 100;
        }
    }
    while (v >= 100) {
        end -= 2;
        memcpy(end, DIGIT_PAIRS + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, DIGIT_PAIRS + 2 * v, 2);
    } else {
        *--end = (char)('0' + v);
    }
    return end;
}

static int put_integer(Out *o, long long v)
{
    char buf[24], *end = buf + sizeof buf;
    char *p = digits_of(v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, end);
    if (v < 0)
        *--p = '-';
    return out_put(o, p, end - p);
}

/* Strings: RFC 8785 3.2.2.2 escapes '"', '\\' and the C0 controls (\b \f \n \r \t by name,
 * the rest as \u00xx in lowercase hex) and writes everything else as raw UTF-8. */
static const unsigned char ESCAPE_EXTRA[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* \b \t \n \f \r take 2 bytes, others 6 */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
};

#define ONES 0x0101010101010101ULL

/* High bits set where one of x's 8 bytes is '"', '\\' or below 0x20 (and maybe in the bytes
 * above such a byte, from the borrow; none when there is none): (x - b) & ~x & 0x80 marks a byte
 * below b (b <= 0x80), and x ^ c turns bytes equal to c into zero bytes. */
static inline uint64_t escape_bits(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
    return (((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & (ONES * 0x80);
}

/* Copies n bytes from p to w, eight at a time; nonzero if one of them needs an escape. */
static inline uint64_t copy_plain(char *w, const unsigned char *p, Py_ssize_t n)
{
    uint64_t x, found = 0;
    if (n < 8) {
        for (Py_ssize_t i = 0; i < n; i++) {
            w[i] = (char)p[i];
            found |= ESCAPE_EXTRA[p[i]];
        }
        return found;
    }
    for (Py_ssize_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, p + i, 8);
        memcpy(w + i, &x, 8);
        found |= escape_bits(x);
    }
    memcpy(&x, p + n - 8, 8); /* the last eight, overlapping what was copied */
    memcpy(w + n - 8, &x, 8);
    return found | escape_bits(x);
}

/* The string, quoted, with its escapes (what copy_plain wrote past o->len is overwritten). */
static int put_escaped(Out *o, const unsigned char *p, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t extra = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        extra += ESCAPE_EXTRA[p[i]];
    if (out_reserve(o, n + extra + 2) != ENC_OK)
        return ENC_FAIL;
    char *w = o->data + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (!ESCAPE_EXTRA[c]) {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            memcpy(w, "u00", 3);
            w[3] = hex[c >> 4];
            w[4] = hex[c & 15];
            w += 5;
        }
    }
    *w++ = '"';
    o->len = w - o->data;
    return ENC_OK;
}

static int put_string(Out *o, PyObject *s)
{
    const unsigned char *p;
    Py_ssize_t n;
    if (PyUnicode_IS_ASCII(s)) {
        p = PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    } else {
        p = (const unsigned char *)PyUnicode_AsUTF8AndSize(s, &n);
        if (p == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return ENC_FAIL;
            PyErr_Clear(); /* a lone surrogate: the exact encoder reports it with its path */
            return ENC_DECLINE;
        }
    }
    if (out_reserve(o, n + 2) != ENC_OK)
        return ENC_FAIL;
    char *w = o->data + o->len;
    *w = '"';
    if (copy_plain(w + 1, p, n))
        return put_escaped(o, p, n);
    w[n + 1] = '"';
    o->len += n + 2;
    return ENC_OK;
}

/* Numbers: ECMAScript Number::toString (ECMA-262 7.1.12.1), as RFC 8785 3.2.2.3 requires. Its
 * digits are the shortest that round-trip, the closest to the value on a tie: Schubfach
 * (R. Giulietti, "The Schubfach way to render doubles", 2020) computes them with 128-bit
 * products against the table of powers of ten scripts/gen_shortest_table.py writes. Subnormals,
 * and compilers without 128-bit integers, take CPython's repr (David Gay's dtoa), which gives the
 * same digits more slowly. */
#include "_shortest_table.h"

#define C_MIN (1ULL << 52)
#define Q_MIN (-1074)
#define MASK_63 ((1ULL << 63) - 1)

/* floor(q * log10(2)), floor(q * log10(2) + log10(3/4)), floor(e * log2(10)); exact over the
 * exponents of doubles (scripts/gen_shortest_table.py and the tests check them) */
static inline int flog10pow2(int q) { return (int)(((int64_t)q * 661971961083LL) >> 41); }
static inline int flog10_three_quarters_pow2(int q)
{
    return (int)(((int64_t)q * 661971961083LL - 274743187321LL) >> 41);
}
static inline int flog2pow10(int e) { return (int)(((int64_t)e * 913124641741LL) >> 38); }

#ifdef __SIZEOF_INT128__
/* (g * cp) >> 127 rounded to odd, g = g1 * 2**63 + g0 */
static inline uint64_t rop(uint64_t g1, uint64_t g0, uint64_t cp)
{
    unsigned __int128 x = (unsigned __int128)g0 * cp, y = (unsigned __int128)g1 * cp;
    uint64_t z = ((uint64_t)y >> 1) + (uint64_t)(x >> 64);
    uint64_t vbp = (uint64_t)(y >> 64) + (z >> 63);
    return vbp | (((z & MASK_63) + MASK_63) >> 63);
}

/* The shortest decimal f * 10**e that rounds to c * 2**q, c a normal double's significand. */
static void schubfach(int q, uint64_t c, uint64_t *f, int *e)
{
    int out = (int)(c & 1), k;
    uint64_t cb = c << 2, cbr = cb + 2, cbl;
    if (c != C_MIN) {
        cbl = cb - 2;
        k = flog10pow2(q);
    } else { /* a power of two: the gap below is half the gap above */
        cbl = cb - 1;
        k = flog10_three_quarters_pow2(q);
    }
    int h = q + flog2pow10(-k) + 2; /* 2..5 */
    uint64_t g1 = G[-k - G_MIN][0], g0 = G[-k - G_MIN][1];
    uint64_t vb = rop(g1, g0, cb << h), vbl = rop(g1, g0, cbl << h), vbr = rop(g1, g0, cbr << h);
    uint64_t s = vb >> 2;
    if (s >= 100) { /* one digit fewer, when a multiple of ten lies in the rounding interval */
        uint64_t sp10 = 10 * (s / 10), tp10 = sp10 + 10;
        int upin = vbl + out <= sp10 << 2, wpin = (tp10 << 2) + out <= vbr;
        if (upin != wpin) {
            *f = upin ? sp10 : tp10;
            *e = k;
            return;
        }
    }
    uint64_t t = s + 1;
    int uin = vbl + out <= s << 2, win = (t << 2) + out <= vbr;
    if (uin != win) {
        *f = uin ? s : t;
    } else { /* both in: the closer one, the even one on a tie */
        int64_t cmp = (int64_t)(vb - ((s + t) << 1));
        *f = cmp < 0 || (cmp == 0 && (s & 1) == 0) ? s : t;
    }
    *e = k;
}
#endif

/* The shortest round-trip digits of finite v > 0 (no leading or trailing zeros) into
 * digits[0..*count) and ECMAScript's n: v = 0.d1d2...dk * 10**n. ENC_OK or ENC_FAIL. */
static int shortest(double v, char *digits, int *count, int *n)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int biased = (int)(bits >> 52);
#ifdef __SIZEOF_INT128__
    if (biased != 0) {
        uint64_t f;
        int e;
        schubfach(biased - 1075, (bits & (C_MIN - 1)) | C_MIN, &f, &e);
        while (f % 10 == 0) {
            f /= 10;
            e++;
        }
        char buf[24], *end = buf + sizeof buf, *p = digits_of(f, end);
        *count = (int)(end - p);
        memcpy(digits, p, (size_t)*count);
        *n = *count + e;
        return ENC_OK;
    }
#endif
    (void)biased;
    char *text = PyOS_double_to_string(v, 'r', 0, 0, NULL); /* "d.ddde-310", "123.45" */
    if (text == NULL)
        return ENC_FAIL;
    char all[32];
    int m = 0, point = -1, exponent = 0, lead = 0;
    for (const char *p = text; *p && m < (int)sizeof all; p++) {
        if (*p == '.') {
            point = m;
        } else if (*p == 'e') {
            exponent = atoi(p + 1);
            break;
        } else {
            all[m++] = *p;
        }
    }
    PyMem_Free(text);
    if (point < 0)
        point = m;
    while (lead < m - 1 && all[lead] == '0') /* 0.000ddd: n counts from the first nonzero */
        lead++;
    int k = m - lead;
    while (k > 1 && all[lead + k - 1] == '0')
        k--;
    memcpy(digits, all + lead, (size_t)k);
    *count = k;
    *n = point - lead + exponent;
    return ENC_OK;
}

static int put_float(Out *o, double v)
{
    if (!isfinite(v))
        return ENC_DECLINE; /* the exact encoder names it: JSON has no NaN or Infinity */
    if (v == floor(v) && fabs(v) <= (double)MAX_SAFE_INTEGER)
        return put_integer(o, (long long)v); /* 2.0 is "2"; -0.0 is "0" */
    char digits[24];
    int k, n;
    if (shortest(fabs(v), digits, &k, &n) != ENC_OK)
        return ENC_FAIL;
    if (out_reserve(o, 32) != ENC_OK) /* at most 1 + 17 + 1 + 1 + 1 + 3 chars, or 22 + 1 */
        return ENC_FAIL;
    char *w = o->data + o->len;
    if (v < 0)
        *w++ = '-';
    if (k <= n && n <= 21) { /* an integer: the digits, then zeros */
        memcpy(w, digits, (size_t)k);
        memset(w + k, '0', (size_t)(n - k));
        w += n;
    } else if (0 < n && n <= 21) { /* the point inside the digits */
        memcpy(w, digits, (size_t)n);
        w[n] = '.';
        memcpy(w + n + 1, digits + n, (size_t)(k - n));
        w += k + 1;
    } else if (-6 < n && n <= 0) { /* 0.000ddd */
        memcpy(w, "0.", 2);
        memset(w + 2, '0', (size_t)-n);
        memcpy(w + 2 - n, digits, (size_t)k);
        w += 2 - n + k;
    } else { /* d.ddde+x or d.ddde-x */
        *w++ = digits[0];
        if (k > 1) {
            *w++ = '.';
            memcpy(w, digits + 1, (size_t)(k - 1));
            w += k - 1;
        }
        *w++ = 'e';
        *w++ = n - 1 < 0 ? '-' : '+';
        char buf[24], *end = buf + sizeof buf, *p = digits_of((unsigned long long)abs(n - 1), end);
        memcpy(w, p, (size_t)(end - p));
        w += end - p;
    }
    o->len = w - o->data;
    return ENC_OK;
}

static int encode(Out *o, PyObject *obj, int depth);

/* Object members in RFC 8785 order: by UTF-16 code units. Keys without characters above U+FFFF
 * (the 1- and 2-byte string kinds; dicts with others are declined) have one code unit per code
 * point, so comparing code points is comparing UTF-16. */
#define SMALL_OBJECT 32 /* members sorted on the stack; larger objects allocate */
#define ENC_MAX_DEPTH 32 /* stack use: ~2.5 KB per level; deeper values go to Python, which
                          * encodes them or reports the recursion itself */

typedef struct {
    PyObject *key, *value; /* value NULL: the numbered member's slot */
    const void *data;      /* the key's characters, `length` of them, of `kind` */
    Py_ssize_t length;
    int kind;
    uint64_t prefix; /* 1-byte kind: the first 8 characters big-endian, zero-padded */
} Member;

static void member_set(Member *m, PyObject *key, PyObject *value)
{
    m->key = key;
    m->value = value;
    m->data = PyUnicode_DATA(key);
    m->length = PyUnicode_GET_LENGTH(key);
    m->kind = PyUnicode_KIND(key);
    m->prefix = 0;
    if (m->kind != PyUnicode_1BYTE_KIND)
        return;
    const unsigned char *c = m->data;
    if (m->length >= 8) { /* built byte by byte: no endianness, no store-to-load stall */
        for (int i = 0; i < 8; i++)
            m->prefix = m->prefix << 8 | c[i];
    } else if (m->length > 0) { /* the empty key's prefix is 0: shifting 64 bits is undefined */
        for (Py_ssize_t i = 0; i < m->length; i++)
            m->prefix = m->prefix << 8 | c[i];
        m->prefix <<= 8 * (8 - m->length);
    }
}

static int member_cmp(const Member *a, const Member *b)
{
    Py_ssize_t m = a->length < b->length ? a->length : b->length;
    if (a->kind == PyUnicode_1BYTE_KIND && b->kind == PyUnicode_1BYTE_KIND) {
        if (a->prefix != b->prefix)
            return a->prefix < b->prefix ? -1 : 1;
        int c = m > 8 ? memcmp(a->data, b->data, (size_t)m) : 0;
        if (c != 0)
            return c;
    } else {
        for (Py_ssize_t i = 0; i < m; i++) {
            Py_UCS4 ca = PyUnicode_READ(a->kind, a->data, i);
            Py_UCS4 cb = PyUnicode_READ(b->kind, b->data, i);
            if (ca != cb)
                return ca < cb ? -1 : 1;
        }
    }
    return a->length < b->length ? -1 : a->length > b->length;
}

static int member_qsort_cmp(const void *a, const void *b)
{
    return member_cmp(*(const Member *const *)a, *(const Member *const *)b);
}

/* Sorts pointers (moving 56-byte members costs more than comparing them). */
static void sort_members(const Member **m, Py_ssize_t n)
{
    if (n > SMALL_OBJECT) {
        qsort(m, (size_t)n, sizeof *m, member_qsort_cmp);
        return;
    }
    /* Binary insertion sort: n - 1 comparisons when already in order (derive_record's records
     * are), about n log2 n otherwise. */
    for (Py_ssize_t i = 1; i < n; i++) {
        if (member_cmp(m[i - 1], m[i]) <= 0)
            continue;
        const Member *x = m[i];
        Py_ssize_t lo = 0, hi = i - 1; /* x goes before m[hi] */
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (member_cmp(m[mid], x) > 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        memmove(&m[lo + 1], &m[lo], (size_t)(i - lo) * sizeof *m);
        m[lo] = x;
    }
}

/* A dict, with `slot_key` (when not NULL) as one more member whose value's place is stored in
 * *slot_at. No Python code runs while it is encoded (exact types only), so the borrowed
 * references stay valid. */
/* A record is often cold in the CPU caches when appended (built a while before, or among many):
 * loading its values' first two cache lines up front lets those misses overlap instead of
 * stalling the encoder one by one (~10% of the append rate on 200k pre-built records). */
static inline void prefetch_object(PyObject *obj)
{
    __builtin_prefetch(obj);
    __builtin_prefetch((const char *)obj + 64); /* a string's characters after its header */
}

/* ,"key": (without the comma before the first member) */
static int put_key(Out *o, const Member *m, int first)
{
    if (m->kind != PyUnicode_1BYTE_KIND || !PyUnicode_IS_ASCII(m->key)) {
        int rc = first ? ENC_OK : out_put(o, ",", 1);
        if (rc == ENC_OK)
            rc = put_string(o, m->key);
        return rc == ENC_OK ? out_put(o, ":", 1) : rc;
    }
    Py_ssize_t n = m->length;
    if (out_reserve(o, n + 4) != ENC_OK)
        return ENC_FAIL;
    char *w = o->data + o->len;
    if (!first)
        *w++ = ',';
    *w = '"';
    if (copy_plain(w + 1, m->data, n)) {
        o->len = w - o->data;
        return put_escaped(o, m->data, n) == ENC_OK ? out_put(o, ":", 1) : ENC_FAIL;
    }
    w[n + 1] = '"';
    w[n + 2] = ':';
    o->len = w + n + 3 - o->data;
    return ENC_OK;
}

static int put_dict(Out *o, PyObject *obj, int depth, PyObject *slot_key, Py_ssize_t *slot_at)
{
    Member local[SMALL_OBJECT], *m = local;
    const Member *local_order[SMALL_OBJECT], **order = local_order;
    Py_ssize_t n = PyDict_GET_SIZE(obj) + (slot_key != NULL), i = 0, pos = 0;
    if (n > SMALL_OBJECT) {
        m = PyMem_Malloc((size_t)n * sizeof *m);
        order = PyMem_Malloc((size_t)n * sizeof *order);
        if (m == NULL || order == NULL) {
            PyMem_Free(m);
            PyMem_Free(order);
            PyErr_NoMemory();
            return ENC_FAIL;
        }
    }
    PyObject *key, *value;
    int rc = ENC_OK;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND) {
            rc = ENC_DECLINE; /* not a str, or maybe a character beyond the BMP */
            goto done;
        }
        prefetch_object(value);
        member_set(&m[i], key, value);
        order[i] = &m[i];
        i++;
    }
    if (slot_key != NULL) {
        member_set(&m[i], slot_key, NULL);
        order[i] = &m[i];
    }
    sort_members(order, n);
    if ((rc = out_put(o, "{", 1)) != ENC_OK)
        goto done;
    for (i = 0; i < n; i++) {
        if ((rc = put_key(o, order[i], i == 0)) != ENC_OK)
            goto done;
        if (order[i]->value == NULL)
            *slot_at = o->len;
        else if ((rc = encode(o, order[i]->value, depth)) != ENC_OK)
            goto done;
    }
    rc = out_put(o, "}", 1);
done:
    if (m != local) {
        PyMem_Free(m);
        PyMem_Free(order);
    }
    return rc;
}

static int put_items(Out *o, PyObject *const *items, Py_ssize_t n, int depth)
{
    for (Py_ssize_t i = 0; i < n && i < SMALL_OBJECT; i++)
        prefetch_object(items[i]);
    int rc = out_put(o, "[", 1);
    for (Py_ssize_t i = 0; i < n && rc == ENC_OK; i++)
        if (!i || (rc = out_put(o, ",", 1)) == ENC_OK)
            rc = encode(o, items[i], depth);
    return rc != ENC_OK ? rc : out_put(o, "]", 1);
}

static int encode(Out *o, PyObject *obj, int depth)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t == &PyUnicode_Type)
        return put_string(o, obj);
    if (obj == Py_None)
        return out_put(o, "null", 4);
    if (t == &PyFloat_Type)
        return put_float(o, PyFloat_AS_DOUBLE(obj));
    if (t == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (v == -1 && PyErr_Occurred())
            return ENC_FAIL;
        if (overflow || v > MAX_SAFE_INTEGER || v < -MAX_SAFE_INTEGER)
            return ENC_DECLINE; /* the exact encoder refuses it, with its path */
        return put_integer(o, v);
    }
    if (obj == Py_True)
        return out_put(o, "true", 4);
    if (obj == Py_False)
        return out_put(o, "false", 5);
    if (depth >= ENC_MAX_DEPTH)
        return ENC_DECLINE;
    if (t == &PyDict_Type)
        return put_dict(o, obj, depth + 1, NULL, NULL);
    if (t == &PyList_Type)
        return put_items(o, ((PyListObject *)obj)->ob_item, PyList_GET_SIZE(obj), depth + 1);
    if (t == &PyTuple_Type)
        return put_items(o, ((PyTupleObject *)obj)->ob_item, PyTuple_GET_SIZE(obj), depth + 1);
    return ENC_DECLINE; /* another type, or a subclass: the exact encoder decides */
}

PyDoc_STRVAR(canonical_doc,
"canonical(obj) -> bytes | None\n\n"
"RFC 8785 (JCS) bytes of obj, for exact dict (str keys), list, tuple, str, int, float, bool and\n"
"None. None when the caller's exact encoder must decide: another type or a subclass, a\n"
"non-finite float, an int beyond +-(2**53 - 1), a lone surrogate, an object key with a\n"
"character beyond U+FFFF, nesting deeper than 64.");

static PyObject *canonical(PyObject *self, PyObject *obj)
{
    (void)self;
    Out o;
    out_init(&o);
    int rc = encode(&o, obj, 0);
    PyObject *result = rc == ENC_OK ? PyBytes_FromStringAndSize(o.data, o.len)
                       : rc == ENC_DECLINE ? Py_NewRef(Py_None) : NULL;
    out_free(&o);
    return result;
}

PyDoc_STRVAR(canonical_parts_doc,
"canonical_parts(obj, key) -> tuple[bytes, bytes] | None\n\n"
"(head, tail) with canonical({**obj, key: n}) == head + b\"%d\" % n + tail for any int n,\n"
"for a dict obj without the member key. None as canonical() declines.");

static PyObject *canonical_parts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "canonical_parts(obj, key) takes a dict and a str");
        return NULL;
    }
    PyObject *obj = args[0], *key = args[1];
    int has = PyDict_Contains(obj, key);
    if (has != 0) {
        if (has > 0)
            PyErr_Format(PyExc_ValueError, "the object already has the member %R", key);
        return NULL;
    }
    if (!PyDict_CheckExact(obj) || !PyUnicode_CheckExact(key)
        || PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND)
        Py_RETURN_NONE;
    Out o;
    out_init(&o);
    Py_ssize_t slot = -1;
    int rc = put_dict(&o, obj, 1, key, &slot);
    PyObject *result = NULL;
    if (rc == ENC_OK) {
        PyObject *head = PyBytes_FromStringAndSize(o.data, slot);
        PyObject *tail = head ? PyBytes_FromStringAndSize(o.data + slot, o.len - slot) : NULL;
        if (tail != NULL)
            result = PyTuple_Pack(2, head, tail);
        Py_XDECREF(head);
        Py_XDECREF(tail);
    } else if (rc == ENC_DECLINE) {
        result = Py_NewRef(Py_None);
    }
    out_free(&o);
    return result;
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

/* Entry k of an Arrow offsets buffer of int32 (size 4) or int64 entries. Read with memcpy: a
 * buffer from Python need not be aligned for its entries (a memoryview can start anywhere). */
static inline long long arrow_offset(const unsigned char *base, Py_ssize_t k, int size)
{
    if (size == 4) {
        int32_t v;
        memcpy(&v, base + k * 4, sizeof v);
        return v;
    }
    int64_t v;
    memcpy(&v, base + k * 8, sizeof v);
    return v;
}

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
    /* start + count + 1 <= entries, written so that no sum can overflow */
    Py_ssize_t entries = offsets.len / offset_size;
    if (start < 0 || count < 0 || start >= entries || count > entries - 1 - start) {
        PyErr_Format(PyExc_ValueError, "values from %zd, %zd of them, are outside an offsets "
                     "buffer of %zd bytes", start, count, offsets.len);
        goto done;
    }
    /* Every offset used must lie inside the data and never decrease: checked before hashing. */
    const unsigned char *base = offsets.buf;
    long long previous = -1;
    for (Py_ssize_t i = start; i <= start + count; i++) {
        long long at = arrow_offset(base, i, offset_size);
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
    int changed = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *bytes = data.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t k = start + i;
        long long begin = arrow_offset(base, k, offset_size);
        long long end = arrow_offset(base, k + 1, offset_size);
        /* Checked again: a writable buffer (a bytearray) may be changed by another thread
         * while the GIL is released; what is read must still lie inside the data. */
        if (begin < 0 || end < begin || end > data.len) {
            changed = 1;
            break;
        }
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &prefix, 1);
        SHA256_Update(&ctx, bytes + begin, (size_t)(end - begin));
        SHA256_Final(digests + i * HASH_SIZE, &ctx);
    }
    Py_END_ALLOW_THREADS
    if (changed) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_ValueError, "the offsets changed while their values were hashed");
    }
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
        char digits[24], *end = digits + sizeof digits;
        char *d = digits_of((unsigned long long)first + (unsigned long long)i, end);
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
    {"canonical", canonical, METH_O, canonical_doc},
    {"canonical_parts", (PyCFunction)(void (*)(void))canonical_parts, METH_FASTCALL,
     canonical_parts_doc},
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
