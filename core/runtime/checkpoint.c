/* checkpoint.c: safetensors checkpoints: an atomic save, a fully checked bit-exact load,
 * and the small JSON reader the header needs (objects, strings, integer arrays;
 * anything else is parsed and skipped). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/checkpoint.h"

/* The reference implementation's limit on the JSON header. */
#define MAX_HEADER 100000000ULL
#define MAX_DIMS 8 /* dims kept per file tensor; more are counted, not stored */
#define MAX_DEPTH 64
#define NBT_SUFFIX ".num_batches_tracked"

#if !defined(__BYTE_ORDER__) || (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ && __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__)
#error "checkpoint.c: unknown byte order"
#endif
#define HOST_LE (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

/* safetensors' dtypes, with their sizes in bits (F4 and F6 pack below a byte). */
static const struct { const char *name; int bits; } dtypes[] = {
    {"BOOL", 8},     {"U8", 8},       {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
    {"F4", 4},       {"F6_E2M3", 6},  {"F6_E3M2", 6},
    {"I16", 16},     {"U16", 16},     {"F16", 16}, {"BF16", 16},   {"I32", 32},    {"U32", 32},
    {"F32", 32},     {"F64", 64},     {"I64", 64}, {"U64", 64},    {"C64", 64},
};

static int dtype_bits(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return dtypes[i].bits;
    return 0;
}

/* Checks s[0..n) is UTF-8 (no overlongs, no surrogates, at most U+10FFFF);
 * returns the offset of the first bad byte, or n. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return n;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t u = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && u < size; i++)
        u += (size_t)(i < MAX_DIMS ? snprintf(buf + u, size - u, i ? ",%lld" : "%lld", (long long)shape[i])
                                   : snprintf(buf + u, size - u, ",..."));
    if (u < size)
        snprintf(buf + u, size - u, "]");
}

static void graph_shape(const cs_tensor *t, int64_t *shape)
{
    for (int i = 0; i < t->ndim; i++)
        shape[i] = t->shape[i];
}

/* ------------------------------------------------------------------ save */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_int(sbuf *b, int64_t v)
{
    char t[32];
    sb_put(b, t, (size_t)snprintf(t, sizeof t, "%lld", (long long)v));
}

/* A JSON string, as serde_json writes it. */
static void sb_json(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[8];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (c < 0x20)
                sb_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
            else
                sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

typedef struct out_tensor {
    char name[CS_NAME_MAX + sizeof NBT_SUFFIX];
    int i64;           /* num_batches_tracked: an I64 scalar 0 */
    const cs_tensor *t; /* else the graph's tensor */
    const float *data;
    uint64_t begin, end;
} out_tensor;

/* The reference writer's order: descending dtype alignment (I64 before F32), then name. */
static int out_cmp(const void *a, const void *b)
{
    const out_tensor *x = a, *y = b;
    if (x->i64 != y->i64)
        return y->i64 - x->i64;
    return strcmp(x->name, y->name);
}

typedef struct wfile {
    int fd;
    unsigned char buf[1 << 16];
    size_t n;
    int errnum; /* the first write error */
} wfile;

static void w_flush(wfile *w)
{
    size_t off = 0;
    while (off < w->n && !w->errnum) {
        ssize_t k = write(w->fd, w->buf + off, w->n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            w->errnum = k < 0 ? errno : EIO;
        else
            off += (size_t)k;
    }
    w->n = 0;
}

static void w_bytes(wfile *w, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n && !w->errnum) {
        if (w->n == sizeof w->buf)
            w_flush(w);
        size_t k = sizeof w->buf - w->n < n ? sizeof w->buf - w->n : n;
        memcpy(w->buf + w->n, s, k);
        w->n += k;
        s += k;
        n -= k;
    }
}

static void w_le(wfile *w, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    w_bytes(w, b, (size_t)bytes);
}

static void w_f32(wfile *w, const float *x, int64_t n)
{
    if (HOST_LE) {
        w_bytes(w, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        w_le(w, u, 4);
    }
}

/* fsync of the folder holding path, so the rename itself is durable; best effort. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static int check_meta(const char *path, const char *const *kv, cs_error *err)
{
    for (int i = 0; kv && kv[i]; i += 2) {
        const char *k = kv[i], *v = kv[i + 1];
        if (!*k)
            return cs_error_set(err, CS_ERR_ARG, "%s: metadata key %d is empty", path, i / 2 + 1);
        if (!v)
            return cs_error_set(err, CS_ERR_ARG, "%s: metadata key '%s' has no value (keys and values alternate)",
                                path, k);
        if (utf8_check((const unsigned char *)k, strlen(k)) != strlen(k) ||
            utf8_check((const unsigned char *)v, strlen(v)) != strlen(v))
            return cs_error_set(err, CS_ERR_ARG, "%s: metadata '%s': not UTF-8, which the format requires", path, k);
        for (int j = 0; j < i; j += 2)
            if (strcmp(kv[j], k) == 0)
                return cs_error_set(err, CS_ERR_ARG, "%s: metadata key '%s' given twice", path, k);
    }
    return CS_OK;
}

int cs_checkpoint_save(const char *path, const cs_graph *g, const float *params, const float *buffers,
                       const char *const *meta_kv, cs_error *err)
{
    if (!path || !*path)
        return cs_error_set(err, CS_ERR_ARG, "checkpoint: no file name given");
    if (!g)
        return cs_error_set(err, CS_ERR_ARG, "%s: no graph to save", path);
    cs_error gerr;
    if (cs_graph_status(g, &gerr))
        return cs_error_set(err, CS_ERR_ARG, "%s: the graph did not build (%s)", path, gerr.msg);
    if ((cs_graph_n_params(g) && !params) || (cs_graph_n_buffers(g) && !buffers))
        return cs_error_set(err, CS_ERR_ARG, "%s: no %s arena given", path, cs_graph_n_params(g) && !params ? "parameter" : "buffer");
    int rc = check_meta(path, meta_kv, err);
    if (rc)
        return rc;

    /* The tensors to write: every PARAM and BUFFER, and each batch norm's counter. */
    int n = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++)
        n += cs_graph_tensor(g, i)->kind == CS_TENSOR_PARAM || cs_graph_tensor(g, i)->kind == CS_TENSOR_BUFFER;
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        n += cs_graph_node(g, i)->op == CS_OP_BATCHNORM;
    out_tensor *ts = calloc(n ? (size_t)n : 1, sizeof *ts);
    if (!ts)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    int m = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        const cs_tensor *t = cs_graph_tensor(g, i);
        if (t->kind != CS_TENSOR_PARAM && t->kind != CS_TENSOR_BUFFER)
            continue;
        snprintf(ts[m].name, sizeof ts[m].name, "%s", t->name);
        ts[m].t = t;
        ts[m].data = (t->kind == CS_TENSOR_PARAM ? params : buffers) + t->offset;
        m++;
    }
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        if (cs_graph_node(g, i)->op != CS_OP_BATCHNORM)
            continue;
        snprintf(ts[m].name, sizeof ts[m].name, "%s" NBT_SUFFIX, cs_graph_node(g, i)->name);
        if (cs_graph_find(g, ts[m].name) >= 0) {
            rc = cs_error_set(err, CS_ERR_ARG, "%s: tensor %s: the graph has a tensor of the name a batch norm's "
                              "counter takes", path, ts[m].name);
            free(ts);
            return rc;
        }
        ts[m++].i64 = 1;
    }
    qsort(ts, (size_t)n, sizeof *ts, out_cmp);

    /* The header: metadata first, then the tensors in data order. */
    sbuf h = {0};
    sb_puts(&h, "{");
    if (meta_kv && meta_kv[0]) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; meta_kv[i]; i += 2) {
            if (i)
                sb_puts(&h, ",");
            sb_json(&h, meta_kv[i]);
            sb_puts(&h, ":");
            sb_json(&h, meta_kv[i + 1]);
        }
        sb_puts(&h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        out_tensor *o = &ts[i];
        if (i || (meta_kv && meta_kv[0]))
            sb_puts(&h, ",");
        sb_json(&h, o->name);
        sb_puts(&h, o->i64 ? ":{\"dtype\":\"I64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        if (!o->i64)
            for (int d = 0; d < o->t->ndim; d++) {
                if (d)
                    sb_puts(&h, ",");
                sb_int(&h, o->t->shape[d]);
            }
        o->begin = off;
        off += o->i64 ? 8 : (uint64_t)o->t->size * 4;
        o->end = off;
        sb_puts(&h, "],\"data_offsets\":[");
        sb_int(&h, (int64_t)o->begin);
        sb_puts(&h, ",");
        sb_int(&h, (int64_t)o->end);
        sb_puts(&h, "]}");
    }
    sb_puts(&h, "}");
    while (h.n % 8)
        sb_puts(&h, " ");
    if (h.oom || h.n > MAX_HEADER) {
        rc = h.oom ? cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path)
                   : cs_error_set(err, CS_ERR_ARG, "%s: the header would be %zu bytes, over the format's limit", path, h.n);
        free(h.p);
        free(ts);
        return rc;
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    wfile *w = malloc(sizeof *w);
    if (!tmp || !w) {
        free(tmp);
        free(w);
        free(h.p);
        free(ts);
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    w->n = 0;
    w->errnum = 0;
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot create %s (%s)", path, tmp, strerror(errno));
        goto done;
    }
    w_le(w, h.n, 8);
    w_bytes(w, h.p, h.n);
    static const unsigned char zero8[8];
    for (int i = 0; i < n; i++) {
        if (ts[i].i64)
            w_bytes(w, zero8, 8);
        else
            w_f32(w, ts[i].data, ts[i].t->size);
    }
    w_flush(w);
    if (w->errnum) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot write %s (%s)", path, tmp, strerror(w->errnum));
    } else if (fsync(w->fd) != 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot sync %s (%s)", path, tmp, strerror(errno));
    }
    if (close(w->fd) != 0 && rc == CS_OK)
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot write %s (%s)", path, tmp, strerror(errno));
    if (rc == CS_OK && rename(tmp, path) != 0)
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot rename %s over it (%s)", path, tmp, strerror(errno));
    if (rc == CS_OK)
        sync_dir(path);
    else
        unlink(tmp);
done:
    free(tmp);
    free(w);
    free(h.p);
    free(ts);
    return rc;
}

/* ------------------------------------------------------------------ the header's JSON */

typedef struct in_tensor {
    const char *name;
    const char *dtype;
    int bits;
    int ndim;
    int64_t shape[MAX_DIMS];
    uint64_t nelem;
    uint64_t begin, end;
    int used;
} in_tensor;

typedef struct jp {
    const char *s;
    size_t n, i;
    char *str;  /* decoded strings, each NUL-terminated; never longer than the header */
    size_t str_n;
    char why[160];
    /* results */
    in_tensor *ts;
    int n_ts, cap_ts;
    const char **meta; /* key, value, ... */
    int n_meta, cap_meta;
} jp;

static int jfail(jp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jp *p, const char *fmt, ...)
{
    if (!p->why[0]) {
        char m[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, sizeof m, fmt, ap);
        va_end(ap);
        snprintf(p->why, sizeof p->why, "(byte %zu of the JSON): %s", p->i, m);
    }
    return -1;
}

static void jws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jpeek(jp *p)
{
    jws(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int jexpect(jp *p, char c)
{
    if (jpeek(p) != c)
        return p->i < p->n ? jfail(p, "expected '%c', found '%c'", c, p->s[p->i]) : jfail(p, "expected '%c', found the end", c);
    p->i++;
    return 0;
}

static int hex4(jp *p, uint32_t *v)
{
    if (p->n - p->i < 4)
        return jfail(p, "\\u needs four hex digits");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return jfail(p, "\\u needs four hex digits");
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* A string, decoded into p->str; *out points at it. */
static int jstring(jp *p, const char **out)
{
    if (jexpect(p, '"'))
        return -1;
    char *o = p->str + p->str_n;
    size_t k = 0;
    for (;;) {
        if (p->i >= p->n)
            return jfail(p, "a string runs to the end of the header");
        unsigned char c = (unsigned char)p->s[p->i++];
        if (c == '"')
            break;
        if (c < 0x20)
            return jfail(p, "a control character in a string");
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        if (p->i >= p->n)
            return jfail(p, "a string runs to the end of the header");
        c = (unsigned char)p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/': o[k++] = (char)c; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp))
                return -1;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return jfail(p, "a lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return jfail(p, "a lone high surrogate");
                p->i += 2;
                if (hex4(p, &lo))
                    return -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return jfail(p, "a lone high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                return jfail(p, "\\u0000 in a string");
            if (cp < 0x80) {
                o[k++] = (char)cp;
            } else if (cp < 0x800) {
                o[k++] = (char)(0xc0 | cp >> 6);
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                o[k++] = (char)(0xe0 | cp >> 12);
                o[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else {
                o[k++] = (char)(0xf0 | cp >> 18);
                o[k++] = (char)(0x80 | (cp >> 12 & 0x3f));
                o[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: return jfail(p, "unknown escape '\\%c'", c);
        }
    }
    o[k++] = '\0';
    p->str_n += k;
    *out = o;
    return 0;
}

/* A non-negative integer (no sign, fraction or exponent), at most INT64_MAX. */
static int juint(jp *p, uint64_t *v)
{
    int c = jpeek(p);
    if (c < '0' || c > '9')
        return jfail(p, "expected a non-negative integer");
    size_t start = p->i;
    *v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i++] - '0');
        if (*v > ((uint64_t)INT64_MAX - d) / 10)
            return jfail(p, "an integer too large");
        *v = *v * 10 + d;
    }
    if (p->s[start] == '0' && p->i - start > 1)
        return jfail(p, "a number with a leading zero");
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return jfail(p, "expected an integer, found a fraction or exponent");
    return 0;
}

static int jskip(jp *p, int depth);

static int jskip_number(jp *p)
{
    size_t i = p->i;
    if (i < p->n && p->s[i] == '-')
        i++;
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9')
        return jfail(p, "expected a value");
    if (p->s[i] == '0')
        i++;
    else
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    if (i < p->n && p->s[i] == '.') {
        if (++i >= p->n || p->s[i] < '0' || p->s[i] > '9')
            return jfail(p, "a bad number");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        if (++i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9')
            return jfail(p, "a bad number");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    }
    p->i = i;
    return 0;
}

/* Any value, checked and thrown away (fields a tensor entry has that we do not use). */
static int jskip(jp *p, int depth)
{
    if (depth > MAX_DEPTH)
        return jfail(p, "nested deeper than %d", MAX_DEPTH);
    int c = jpeek(p);
    const char *s;
    if (c == '"') {
        size_t mark = p->str_n;
        int rc = jstring(p, &s);
        p->str_n = mark;
        return rc;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->i++;
        if (jpeek(p) == close) {
            p->i++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                size_t mark = p->str_n;
                int rc = jstring(p, &s);
                p->str_n = mark;
                if (rc || jexpect(p, ':'))
                    return -1;
            }
            if (jskip(p, depth + 1))
                return -1;
            int d = jpeek(p);
            p->i++;
            if (d == close)
                return 0;
            if (d != ',') {
                p->i--;
                return jfail(p, "expected ',' or '%c'", close);
            }
        }
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(words[k]);
        if (p->n - p->i >= l && memcmp(p->s + p->i, words[k], l) == 0) {
            p->i += l;
            return 0;
        }
    }
    return jskip_number(p);
}

/* Calls field(p, key, ctx) for each member of an object, which parses the value. */
static int jobject(jp *p, int (*field)(jp *, const char *, void *), void *ctx)
{
    if (jexpect(p, '{'))
        return -1;
    if (jpeek(p) == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        const char *key;
        if (jstring(p, &key) || jexpect(p, ':') || field(p, key, ctx))
            return -1;
        int d = jpeek(p);
        if (d == '}') {
            p->i++;
            return 0;
        }
        if (d != ',')
            return jfail(p, "expected ',' or '}'");
        p->i++;
    }
}

static int tensor_field(jp *p, const char *key, void *ctx)
{
    in_tensor *t = ctx;
    if (strcmp(key, "dtype") == 0) {
        if (t->dtype)
            return jfail(p, "tensor %s: dtype given twice", t->name);
        if (jpeek(p) != '"')
            return jfail(p, "tensor %s: dtype: expected a string", t->name);
        if (jstring(p, &t->dtype))
            return -1;
        if (!(t->bits = dtype_bits(t->dtype)))
            return jfail(p, "tensor %s: unknown dtype '%s'", t->name, t->dtype);
        return 0;
    }
    if (strcmp(key, "shape") == 0) {
        if (t->ndim >= 0)
            return jfail(p, "tensor %s: shape given twice", t->name);
        if (jexpect(p, '['))
            return -1;
        t->ndim = 0;
        t->nelem = 1;
        if (jpeek(p) == ']') {
            p->i++;
            return 0;
        }
        for (;;) {
            uint64_t v;
            if (juint(p, &v))
                return -1;
            if (t->ndim < MAX_DIMS)
                t->shape[t->ndim] = (int64_t)v;
            t->ndim++;
            if (v && t->nelem > (uint64_t)INT64_MAX / v)
                return jfail(p, "tensor %s: the shape's size overflows", t->name);
            t->nelem *= v;
            int d = jpeek(p);
            p->i++;
            if (d == ']')
                return 0;
            if (d != ',') {
                p->i--;
                return jfail(p, "tensor %s: shape: expected ',' or ']'", t->name);
            }
        }
    }
    if (strcmp(key, "data_offsets") == 0) {
        if (t->end != UINT64_MAX)
            return jfail(p, "tensor %s: data_offsets given twice", t->name);
        /* juint stops at INT64_MAX, so end never reads as the UINT64_MAX of "not given" */
        if (jexpect(p, '[') || juint(p, &t->begin) || jexpect(p, ',') || juint(p, &t->end) || jexpect(p, ']'))
            return -1;
        return 0;
    }
    return jskip(p, 2);
}

static int meta_field(jp *p, const char *key, void *ctx)
{
    (void)ctx;
    const char *v;
    if (jpeek(p) != '"')
        return jfail(p, "__metadata__ '%s': expected a string value (the format allows only strings)", key);
    if (jstring(p, &v))
        return -1;
    for (int i = 0; i < p->n_meta; i++)
        if (strcmp(p->meta[2 * i], key) == 0)
            return jfail(p, "__metadata__ '%s' given twice", key);
    if (p->n_meta == p->cap_meta) {
        int cap = p->cap_meta ? 2 * p->cap_meta : 16;
        const char **m = realloc(p->meta, (size_t)cap * 2 * sizeof *m);
        if (!m)
            return jfail(p, "out of memory");
        p->meta = m;
        p->cap_meta = cap;
    }
    p->meta[2 * p->n_meta] = key;
    p->meta[2 * p->n_meta + 1] = v;
    p->n_meta++;
    return 0;
}

static int top_field(jp *p, const char *key, void *ctx)
{
    int *seen_meta = ctx;
    if (strcmp(key, "__metadata__") == 0) {
        if ((*seen_meta)++)
            return jfail(p, "__metadata__ given twice");
        if (jpeek(p) != '{')
            return jfail(p, "__metadata__: expected an object");
        return jobject(p, meta_field, NULL);
    }
    if (p->n_ts == p->cap_ts) {
        int cap = p->cap_ts ? 2 * p->cap_ts : 64;
        in_tensor *t = realloc(p->ts, (size_t)cap * sizeof *t);
        if (!t)
            return jfail(p, "out of memory");
        p->ts = t;
        p->cap_ts = cap;
    }
    in_tensor *t = &p->ts[p->n_ts++];
    memset(t, 0, sizeof *t);
    t->name = key;
    t->ndim = -1;
    t->end = UINT64_MAX;
    if (jpeek(p) != '{')
        return jfail(p, "tensor %s: expected an object {\"dtype\", \"shape\", \"data_offsets\"}", key);
    if (jobject(p, tensor_field, t))
        return -1;
    if (!t->dtype || t->ndim < 0 || t->end == UINT64_MAX)
        return jfail(p, "tensor %s: no %s", key, !t->dtype ? "dtype" : t->ndim < 0 ? "shape" : "data_offsets");
    return 0;
}

/* ------------------------------------------------------------------ load */

static int by_offset(const void *a, const void *b)
{
    const in_tensor *x = *(in_tensor *const *)a, *y = *(in_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(in_tensor *const *)a)->name, (*(in_tensor *const *)b)->name);
}

static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int is_graph_bn_counter(const cs_graph *g, const char *name)
{
    size_t n = strlen(name), s = sizeof NBT_SUFFIX - 1;
    if (n <= s || strcmp(name + n - s, NBT_SUFFIX) != 0)
        return 0;
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        if (cs_graph_node(g, i)->op == CS_OP_BATCHNORM && strlen(cs_graph_node(g, i)->name) == n - s &&
            memcmp(cs_graph_node(g, i)->name, name, n - s) == 0)
            return 1;
    return 0;
}

/* The weight or bias of a linear or cosine classifier: the tensors CS_CKPT_GROW_ROWS may grow. */
static int is_classifier(const cs_graph *g, int t)
{
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        const cs_node *nd = cs_graph_node(g, i);
        if ((nd->op == CS_OP_LINEAR || nd->op == CS_OP_COSINE_LINEAR) &&
            ((nd->n_in > 1 && nd->in[1] == t) || (nd->op == CS_OP_LINEAR && nd->n_in > 2 && nd->in[2] == t)))
            return 1;
    }
    return 0;
}

const char *cs_checkpoint_meta(const cs_checkpoint_info *info, const char *key)
{
    if (!info || !key)
        return NULL;
    int n = info->n_meta < CS_CKPT_META_MAX ? info->n_meta : CS_CKPT_META_MAX;
    for (int i = 0; i < n; i++)
        if (strcmp(info->meta_key[i], key) == 0)
            return info->meta_value[i];
    return NULL;
}

int cs_checkpoint_load(const char *path, const cs_graph *g, float *params, float *buffers,
                       cs_checkpoint_info *info, cs_error *err)
{
    return cs_checkpoint_load_ex(path, g, params, buffers, 0, info, err);
}

/* What to do with one graph tensor. */
typedef struct plan {
    const in_tensor *src; /* NULL: leave it */
    float *dst;
    int64_t n; /* floats to read */
} plan;

int cs_checkpoint_load_ex(const char *path, const cs_graph *g, float *params, float *buffers, unsigned flags,
                          cs_checkpoint_info *info, cs_error *err)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!path || !*path)
        return cs_error_set(err, CS_ERR_ARG, "checkpoint: no file name given");
    if (!g)
        return cs_error_set(err, CS_ERR_ARG, "%s: no graph to load into", path);
    cs_error gerr;
    if (cs_graph_status(g, &gerr))
        return cs_error_set(err, CS_ERR_ARG, "%s: the graph did not build (%s)", path, gerr.msg);
    if ((cs_graph_n_params(g) && !params) || (cs_graph_n_buffers(g) && !buffers))
        return cs_error_set(err, CS_ERR_ARG, "%s: no %s arena given", path, cs_graph_n_params(g) && !params ? "parameter" : "buffer");
    if (flags & ~(unsigned)(CS_CKPT_ALLOW_MISSING | CS_CKPT_GROW_ROWS))
        return cs_error_set(err, CS_ERR_ARG, "%s: unknown load flags 0x%x", path, flags);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(err, CS_ERR_IO, errno == ENOENT ? "%s: missing file" : "%s: cannot open (%s)", path,
                            strerror(errno));
    int rc = CS_OK;
    char *hdr = NULL;
    jp p = {0};
    in_tensor **order = NULL, **names = NULL;
    plan *pl = NULL;
    struct stat st;
    unsigned char len8[8];
    uint64_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: is a folder, expected a safetensors file", path);
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: %llu bytes, too short for the 8-byte header "
                          "length", path, (unsigned long long)size);
        goto done;
    }
    if (read_at(fd, len8, 8, 0)) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
        goto done;
    }
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len8[i];
    if (n > MAX_HEADER || n < 2) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: header length %llu is absurd (expected "
                          "2 to %llu bytes)", path, (unsigned long long)n, MAX_HEADER);
        goto done;
    }
    if (n > size - 8) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: truncated: the header length says %llu bytes, %llu follow it", path,
                          (unsigned long long)n, (unsigned long long)(size - 8));
        goto done;
    }
    hdr = malloc(n + 1);
    p.str = malloc(n + 1);
    if (!hdr || !p.str) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory reading a %llu-byte header", path, (unsigned long long)n);
        goto done;
    }
    if (read_at(fd, hdr, n, 8)) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
        goto done;
    }
    hdr[n] = '\0';
    if (hdr[0] != '{') {
        rc = cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: the header does not start with '{'", path);
        goto done;
    }
    size_t bad = utf8_check((const unsigned char *)hdr, n);
    if (bad != n) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: bad header: not UTF-8 at header byte %zu", path, bad);
        goto done;
    }
    p.s = hdr;
    p.n = n;
    int seen_meta = 0;
    if (jobject(&p, top_field, &seen_meta) == 0 && jpeek(&p) != -1)
        jfail(&p, "text after the header's object");
    if (p.why[0]) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: bad JSON header %s", path, p.why);
        goto done;
    }

    /* The tensors must tile the data region exactly, in offset order. */
    int nt = p.n_ts;
    order = malloc((nt ? (size_t)nt : 1) * sizeof *order);
    names = malloc((nt ? (size_t)nt : 1) * sizeof *names);
    pl = calloc(cs_graph_n_tensors(g) ? (size_t)cs_graph_n_tensors(g) : 1, sizeof *pl);
    if (!order || !names || !pl) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < nt; i++)
        order[i] = names[i] = &p.ts[i];
    qsort(names, (size_t)nt, sizeof *names, by_name);
    for (int i = 1; i < nt; i++)
        if (strcmp(names[i - 1]->name, names[i]->name) == 0) {
            rc = cs_error_set(err, CS_ERR_IO, "%s: bad header: tensor %s appears twice", path, names[i]->name);
            goto done;
        }
    qsort(order, (size_t)nt, sizeof *order, by_offset);
    uint64_t at = 0;
    for (int i = 0; i < nt; i++) {
        const in_tensor *t = order[i];
        char sh[160];
        if (t->begin != at || t->end < t->begin) {
            rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: data_offsets [%llu,%llu] %s", path, t->name,
                              (unsigned long long)t->begin, (unsigned long long)t->end,
                              t->end < t->begin ? "run backwards" : t->begin < at ? "overlap another tensor's"
                                                                                   : "leave a gap before them");
            goto done;
        }
        if (t->nelem > UINT64_MAX / (uint64_t)t->bits || (t->nelem * (uint64_t)t->bits) % 8 ||
            t->end - t->begin != t->nelem * (uint64_t)t->bits / 8) {
            shape_str(t->shape, t->ndim, sh, sizeof sh);
            if (t->nelem > UINT64_MAX / (uint64_t)t->bits || (t->nelem * (uint64_t)t->bits) % 8)
                rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: %s %s is not a whole number of bytes", path, t->name,
                                  t->dtype, sh);
            else
                rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: data_offsets [%llu,%llu] span %llu bytes, %s %s "
                                  "needs %llu", path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                  (unsigned long long)(t->end - t->begin), t->dtype, sh,
                                  (unsigned long long)(t->nelem * (uint64_t)t->bits / 8));
            goto done;
        }
        at = t->end;
    }
    uint64_t data_len = size - 8 - n;
    if (at > data_len) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: truncated: the tensors need %llu bytes of data, %llu are there", path,
                          (unsigned long long)at, (unsigned long long)data_len);
        goto done;
    }
    if (at < data_len) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: %llu bytes after the last tensor's data (the header accounts for %llu)",
                          path, (unsigned long long)(data_len - at), (unsigned long long)at);
        goto done;
    }

    /* Match the graph's tensors, all checked before anything is written. */
    int loaded = 0, grown = 0, missing = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        const cs_tensor *gt = cs_graph_tensor(g, i);
        if (gt->kind != CS_TENSOR_PARAM && gt->kind != CS_TENSOR_BUFFER)
            continue;
        in_tensor key = {.name = gt->name}, *kp = &key;
        in_tensor **hit = nt ? bsearch(&kp, names, (size_t)nt, sizeof *names, by_name) : NULL;
        in_tensor *ft = hit ? *hit : NULL;
        int64_t gs[4];
        graph_shape(gt, gs);
        char a[160], b[160];
        if (!ft) {
            if (!(flags & CS_CKPT_ALLOW_MISSING)) {
                shape_str(gs, gt->ndim, a, sizeof a);
                rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s (a %s %s of the graph) is missing from the file",
                                  path, gt->name, a, gt->kind == CS_TENSOR_PARAM ? "parameter" : "buffer");
                goto done;
            }
        } else {
            ft->used = 1;
            if (strcmp(ft->dtype, "F32") != 0) {
                rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: dtype %s, expected F32", path, gt->name, ft->dtype);
                goto done;
            }
        }
        int same = ft && ft->ndim == gt->ndim;
        for (int d = 0; same && d < gt->ndim; d++)
            same = ft->shape[d] == gs[d];
        int rows = ft && (flags & CS_CKPT_GROW_ROWS) && !same && ft->ndim == gt->ndim && gt->ndim >= 1 &&
                   ft->shape[0] < gs[0] && is_classifier(g, i);
        for (int d = 1; rows && d < gt->ndim; d++)
            rows = ft->shape[d] == gs[d];
        if (ft && !same && !rows && !(flags & CS_CKPT_ALLOW_MISSING)) {
            shape_str(ft->shape, ft->ndim, a, sizeof a);
            shape_str(gs, gt->ndim, b, sizeof b);
            rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: shape %s in the file, %s in the graph%s", path, gt->name,
                              a, b, (flags & CS_CKPT_GROW_ROWS) ? " (CS_CKPT_GROW_ROWS only adds rows to a classifier)" : "");
            goto done;
        }
        if (ft && (same || rows)) {
            pl[i].src = ft;
            pl[i].dst = (gt->kind == CS_TENSOR_PARAM ? params : buffers) + gt->offset;
            pl[i].n = (int64_t)ft->nelem;
            loaded++;
            grown += rows;
        } else {
            if (!missing && info)
                snprintf(info->first_missing, sizeof info->first_missing, "%s", gt->name);
            missing++;
        }
    }

    uint64_t data0 = 8 + n;
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        if (!pl[i].src)
            continue;
        if (read_at(fd, pl[i].dst, (size_t)pl[i].n * sizeof(float), data0 + pl[i].src->begin)) {
            rc = cs_error_set(err, CS_ERR_IO, "%s: tensor %s: cannot read (%s)", path, cs_graph_tensor(g, i)->name,
                              strerror(errno));
            goto done;
        }
        if (!HOST_LE)
            for (int64_t k = 0; k < pl[i].n; k++) {
                unsigned char *q = (unsigned char *)&pl[i].dst[k], t0 = q[0], t1 = q[1];
                q[0] = q[3];
                q[1] = q[2];
                q[2] = t1;
                q[3] = t0;
            }
    }

    if (info) {
        info->n_file = nt;
        info->n_loaded = loaded;
        info->n_grown = grown;
        info->n_missing = missing;
        for (int i = 0; i < nt; i++)
            info->n_ignored += !p.ts[i].used && !is_graph_bn_counter(g, p.ts[i].name);
        info->n_meta = p.n_meta;
        for (int i = 0; i < p.n_meta && i < CS_CKPT_META_MAX; i++) {
            snprintf(info->meta_key[i], sizeof info->meta_key[i], "%s", p.meta[2 * i]);
            snprintf(info->meta_value[i], sizeof info->meta_value[i], "%s", p.meta[2 * i + 1]);
        }
    }
done:
    close(fd);
    free(hdr);
    free(p.str);
    free(p.ts);
    free(p.meta);
    free(order);
    free(names);
    free(pl);
    return rc;
}
