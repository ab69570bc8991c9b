/* checkpoint.c: safetensors checkpoints: the save (the header's JSON, then the
 * tensors, written through the atomic writer) and the fully checked bit-exact
 * load (read the header, check the layout, match the graph, copy). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/atomic.h"
#include "runtime/checkpoint.h"
#include "runtime/json.h"

/* The reference implementation's limit on the JSON header. */
#define MAX_HEADER 100000000ULL
#define MAX_DIMS 8 /* dims kept per file tensor; more are counted, not stored */
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

/* What a save and a load both need: a file name, a graph that built, its arenas. */
static int check_args(const char *path, const cs_graph *g, const float *params, const float *buffers,
                      const char *verb, cs_error *err)
{
    if (!path || !*path)
        return cs_error_set(err, CS_ERR_ARG, "checkpoint: no file name given");
    if (!g)
        return cs_error_set(err, CS_ERR_ARG, "%s: no graph to %s", path, verb);
    cs_error gerr;
    if (cs_graph_status(g, &gerr))
        return cs_error_set(err, CS_ERR_ARG, "%s: the graph did not build (%s)", path, gerr.msg);
    if ((cs_graph_n_params(g) && !params) || (cs_graph_n_buffers(g) && !buffers))
        return cs_error_set(err, CS_ERR_ARG, "%s: no %s arena given", path,
                            cs_graph_n_params(g) && !params ? "parameter" : "buffer");
    return CS_OK;
}

/* ------------------------------------------------------------------ save */

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

static void put_le(cs_atomic *a, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    cs_atomic_put(a, b, (size_t)bytes);
}

static void put_f32(cs_atomic *a, const float *x, int64_t n)
{
    if (HOST_LE) {
        cs_atomic_put(a, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        put_le(a, u, 4);
    }
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

/* The tensors to write, in the file's order: every PARAM and BUFFER, and each
 * batch norm's counter. *out is the caller's to free. */
static int collect_tensors(const char *path, const cs_graph *g, const float *params, const float *buffers,
                           out_tensor **out, int *out_n, cs_error *err)
{
    int n = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++)
        n += cs_graph_tensor(g, i)->kind == CS_TENSOR_PARAM || cs_graph_tensor(g, i)->kind == CS_TENSOR_BUFFER;
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        n += cs_graph_node(g, i)->op == CS_OP_BATCHNORM;
    out_tensor *ts = calloc(n ? (size_t)n : 1, sizeof *ts);
    if (!ts)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    *out = ts;
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
        if (cs_graph_find(g, ts[m].name) >= 0)
            return cs_error_set(err, CS_ERR_ARG, "%s: tensor %s: the graph has a tensor of the name a batch norm's "
                                "counter takes", path, ts[m].name);
        ts[m++].i64 = 1;
    }
    qsort(ts, (size_t)n, sizeof *ts, out_cmp);
    *out_n = n;
    return CS_OK;
}

/* The header: metadata first, then the tensors in data order (whose offsets
 * it sets), padded with spaces to a multiple of 8. NULL when out of memory. */
static char *header_json(const char *const *meta_kv, out_tensor *ts, int n, size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return NULL;
    cs_json j;
    cs_json_start(&j, f, CS_JSON_ESC_SERDE);
    cs_json_object(&j, &cs_json_compact);
    if (meta_kv && meta_kv[0]) {
        cs_json_key(&j, "__metadata__");
        cs_json_object(&j, &cs_json_compact);
        for (int i = 0; meta_kv[i]; i += 2) {
            cs_json_key(&j, meta_kv[i]);
            cs_json_string(&j, meta_kv[i + 1]);
        }
        cs_json_end(&j);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        out_tensor *o = &ts[i];
        o->begin = off;
        off += o->i64 ? 8 : (uint64_t)o->t->size * 4;
        o->end = off;
        cs_json_key(&j, o->name);
        cs_json_object(&j, &cs_json_compact);
        cs_json_key(&j, "dtype");
        cs_json_string(&j, o->i64 ? "I64" : "F32");
        cs_json_key(&j, "shape");
        cs_json_array(&j, &cs_json_compact);
        for (int d = 0; !o->i64 && d < o->t->ndim; d++)
            cs_json_int(&j, o->t->shape[d]);
        cs_json_end(&j);
        cs_json_key(&j, "data_offsets");
        cs_json_array(&j, &cs_json_compact);
        cs_json_int(&j, (long long)o->begin);
        cs_json_int(&j, (long long)o->end);
        cs_json_end(&j);
        cs_json_end(&j);
    }
    cs_json_end(&j);
    long at = ftell(f);
    for (; at > 0 && at % 8; at++)
        fputc(' ', f);
    int bad = at < 0 || ferror(f);
    if (fclose(f) != 0 || bad) {
        free(text);
        return NULL;
    }
    *len = size;
    return text;
}

/* The 8-byte header length, the header, then the tensors' bytes. */
static int write_file(const char *path, const char *hdr, size_t hlen, const out_tensor *ts, int n, cs_error *err)
{
    static const unsigned char zero8[8];
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, 0644, err);
    if (rc == CS_OK) {
        put_le(&a, hlen, 8);
        cs_atomic_put(&a, hdr, hlen);
        for (int i = 0; i < n; i++) {
            if (ts[i].i64)
                cs_atomic_put(&a, zero8, 8);
            else
                put_f32(&a, ts[i].data, ts[i].t->size);
        }
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}

int cs_checkpoint_save(const char *path, const cs_graph *g, const float *params, const float *buffers,
                       const char *const *meta_kv, cs_error *err)
{
    int rc = check_args(path, g, params, buffers, "save", err);
    if (rc)
        return rc;
    if ((rc = check_meta(path, meta_kv, err)))
        return rc;

    out_tensor *ts = NULL;
    int n = 0;
    char *hdr = NULL;
    size_t hlen = 0;
    if ((rc = collect_tensors(path, g, params, buffers, &ts, &n, err)))
        goto done;
    if (!(hdr = header_json(meta_kv, ts, n, &hlen)))
        rc = cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    else if (hlen > MAX_HEADER)
        rc = cs_error_set(err, CS_ERR_ARG, "%s: the header would be %zu bytes, over the format's limit", path, hlen);
    else
        rc = write_file(path, hdr, hlen, ts, n, err);
done:
    free(hdr);
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

/* The header, read and parsed. */
typedef struct header {
    char *text;
    uint64_t n; /* its length in bytes */
    cs_json_reader r;
    in_tensor *ts;
    int n_ts, cap_ts;
    const char **meta; /* key, value, ...; in r's strings */
    int n_meta, cap_meta;
    int seen_meta;
} header;

static int tensor_field(cs_json_reader *p, const char *key, void *ctx)
{
    in_tensor *t = ctx;
    if (strcmp(key, "dtype") == 0) {
        if (t->dtype)
            return cs_json_fail(p, "tensor %s: dtype given twice", t->name);
        if (cs_json_peek(p) != '"')
            return cs_json_fail(p, "tensor %s: dtype: expected a string", t->name);
        if (cs_json_read_string(p, &t->dtype))
            return -1;
        if (!(t->bits = dtype_bits(t->dtype)))
            return cs_json_fail(p, "tensor %s: unknown dtype '%s'", t->name, t->dtype);
        return 0;
    }
    if (strcmp(key, "shape") == 0) {
        if (t->ndim >= 0)
            return cs_json_fail(p, "tensor %s: shape given twice", t->name);
        if (cs_json_expect(p, '['))
            return -1;
        t->ndim = 0;
        t->nelem = 1;
        if (cs_json_peek(p) == ']') {
            p->i++;
            return 0;
        }
        for (;;) {
            uint64_t v;
            if (cs_json_read_uint(p, &v))
                return -1;
            if (t->ndim < MAX_DIMS)
                t->shape[t->ndim] = (int64_t)v;
            t->ndim++;
            if (v && t->nelem > (uint64_t)INT64_MAX / v)
                return cs_json_fail(p, "tensor %s: the shape's size overflows", t->name);
            t->nelem *= v;
            int d = cs_json_peek(p);
            p->i++;
            if (d == ']')
                return 0;
            if (d != ',') {
                p->i--;
                return cs_json_fail(p, "tensor %s: shape: expected ',' or ']'", t->name);
            }
        }
    }
    if (strcmp(key, "data_offsets") == 0) {
        if (t->end != UINT64_MAX)
            return cs_json_fail(p, "tensor %s: data_offsets given twice", t->name);
        /* read_uint stops at INT64_MAX, so end never reads as the UINT64_MAX of "not given" */
        if (cs_json_expect(p, '[') || cs_json_read_uint(p, &t->begin) || cs_json_expect(p, ',') ||
            cs_json_read_uint(p, &t->end) || cs_json_expect(p, ']'))
            return -1;
        return 0;
    }
    return cs_json_skip(p, 2);
}

static int meta_field(cs_json_reader *p, const char *key, void *ctx)
{
    header *h = ctx;
    const char *v;
    if (cs_json_peek(p) != '"')
        return cs_json_fail(p, "__metadata__ '%s': expected a string value (the format allows only strings)", key);
    if (cs_json_read_string(p, &v))
        return -1;
    for (int i = 0; i < h->n_meta; i++)
        if (strcmp(h->meta[2 * i], key) == 0)
            return cs_json_fail(p, "__metadata__ '%s' given twice", key);
    if (h->n_meta == h->cap_meta) {
        int cap = h->cap_meta ? 2 * h->cap_meta : 16;
        const char **m = realloc(h->meta, (size_t)cap * 2 * sizeof *m);
        if (!m)
            return cs_json_fail(p, "out of memory");
        h->meta = m;
        h->cap_meta = cap;
    }
    h->meta[2 * h->n_meta] = key;
    h->meta[2 * h->n_meta + 1] = v;
    h->n_meta++;
    return 0;
}

static int top_field(cs_json_reader *p, const char *key, void *ctx)
{
    header *h = ctx;
    if (strcmp(key, "__metadata__") == 0) {
        if (h->seen_meta++)
            return cs_json_fail(p, "__metadata__ given twice");
        if (cs_json_peek(p) != '{')
            return cs_json_fail(p, "__metadata__: expected an object");
        return cs_json_read_object(p, meta_field, h);
    }
    if (h->n_ts == h->cap_ts) {
        int cap = h->cap_ts ? 2 * h->cap_ts : 64;
        in_tensor *t = realloc(h->ts, (size_t)cap * sizeof *t);
        if (!t)
            return cs_json_fail(p, "out of memory");
        h->ts = t;
        h->cap_ts = cap;
    }
    in_tensor *t = &h->ts[h->n_ts++];
    memset(t, 0, sizeof *t);
    t->name = key;
    t->ndim = -1;
    t->end = UINT64_MAX;
    if (cs_json_peek(p) != '{')
        return cs_json_fail(p, "tensor %s: expected an object {\"dtype\", \"shape\", \"data_offsets\"}", key);
    if (cs_json_read_object(p, tensor_field, t))
        return -1;
    if (!t->dtype || t->ndim < 0 || t->end == UINT64_MAX)
        return cs_json_fail(p, "tensor %s: no %s", key, !t->dtype ? "dtype" : t->ndim < 0 ? "shape" : "data_offsets");
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

/* One load, from the open file to the filled arenas. */
typedef struct load {
    const char *path;
    const cs_graph *g;
    unsigned flags;
    int fd;
    uint64_t size; /* the file's */
    header h;
    in_tensor **order, **names; /* the file's tensors by offset and by name */
    plan *pl;                   /* one per graph tensor */
    int loaded, grown, missing;
} load;

static void load_free(load *L)
{
    if (L->fd >= 0)
        close(L->fd);
    free(L->h.text);
    cs_json_reader_free(&L->h.r);
    free(L->h.ts);
    free(L->h.meta);
    free(L->order);
    free(L->names);
    free(L->pl);
}

/* Step 1: the file is a regular one with a sane header length; the header is
 * read, is UTF-8 and parses. */
static int read_header(load *L, cs_error *err)
{
    const char *path = L->path;
    struct stat st;
    unsigned char len8[8];
    uint64_t n = 0;
    if (fstat(L->fd, &st) != 0)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cs_error_set(err, CS_ERR_IO, "%s: is a folder, expected a safetensors file", path);
    if (!S_ISREG(st.st_mode))
        return cs_error_set(err, CS_ERR_IO, "%s: not a regular file", path);
    uint64_t size = L->size = (uint64_t)st.st_size;
    if (size < 8)
        return cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: %llu bytes, too short for the 8-byte "
                            "header length", path, (unsigned long long)size);
    if (read_at(L->fd, len8, 8, 0))
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len8[i];
    if (n > MAX_HEADER || n < 2)
        return cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: header length %llu is absurd (expected "
                            "2 to %llu bytes)", path, (unsigned long long)n, MAX_HEADER);
    if (n > size - 8)
        return cs_error_set(err, CS_ERR_IO, "%s: truncated: the header length says %llu bytes, %llu follow it", path,
                            (unsigned long long)n, (unsigned long long)(size - 8));
    header *h = &L->h;
    h->n = n;
    h->text = malloc(n + 1);
    if (!h->text || cs_json_reader_init(&h->r, h->text, n))
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory reading a %llu-byte header", path,
                            (unsigned long long)n);
    if (read_at(L->fd, h->text, n, 8))
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    h->text[n] = '\0';
    if (h->text[0] != '{')
        return cs_error_set(err, CS_ERR_IO, "%s: not a safetensors file: the header does not start with '{'", path);
    size_t bad = utf8_check((const unsigned char *)h->text, n);
    if (bad != n)
        return cs_error_set(err, CS_ERR_IO, "%s: bad header: not UTF-8 at header byte %zu", path, bad);
    if (cs_json_read_object(&h->r, top_field, h) == 0 && cs_json_peek(&h->r) != -1)
        cs_json_fail(&h->r, "text after the header's object");
    if (h->r.why[0])
        return cs_error_set(err, CS_ERR_IO, "%s: bad JSON header %s", path, h->r.why);
    return CS_OK;
}

/* Step 2: no name twice, and the tensors tile the data region exactly, in offset order. */
static int check_layout(load *L, cs_error *err)
{
    const char *path = L->path;
    int nt = L->h.n_ts;
    L->order = malloc((nt ? (size_t)nt : 1) * sizeof *L->order);
    L->names = malloc((nt ? (size_t)nt : 1) * sizeof *L->names);
    if (!L->order || !L->names)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < nt; i++)
        L->order[i] = L->names[i] = &L->h.ts[i];
    qsort(L->names, (size_t)nt, sizeof *L->names, by_name);
    for (int i = 1; i < nt; i++)
        if (strcmp(L->names[i - 1]->name, L->names[i]->name) == 0)
            return cs_error_set(err, CS_ERR_IO, "%s: bad header: tensor %s appears twice", path, L->names[i]->name);
    qsort(L->order, (size_t)nt, sizeof *L->order, by_offset);
    uint64_t at = 0;
    for (int i = 0; i < nt; i++) {
        const in_tensor *t = L->order[i];
        char sh[160];
        if (t->begin != at || t->end < t->begin)
            return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: data_offsets [%llu,%llu] %s", path, t->name,
                                (unsigned long long)t->begin, (unsigned long long)t->end,
                                t->end < t->begin ? "run backwards" : t->begin < at ? "overlap another tensor's"
                                                                                     : "leave a gap before them");
        int whole = t->nelem <= UINT64_MAX / (uint64_t)t->bits && (t->nelem * (uint64_t)t->bits) % 8 == 0;
        if (!whole || t->end - t->begin != t->nelem * (uint64_t)t->bits / 8) {
            shape_str(t->shape, t->ndim, sh, sizeof sh);
            if (!whole)
                return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: %s %s is not a whole number of bytes", path,
                                    t->name, t->dtype, sh);
            return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: data_offsets [%llu,%llu] span %llu bytes, %s %s "
                                "needs %llu", path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                (unsigned long long)(t->end - t->begin), t->dtype, sh,
                                (unsigned long long)(t->nelem * (uint64_t)t->bits / 8));
        }
        at = t->end;
    }
    uint64_t data_len = L->size - 8 - L->h.n;
    if (at > data_len)
        return cs_error_set(err, CS_ERR_IO, "%s: truncated: the tensors need %llu bytes of data, %llu are there",
                            path, (unsigned long long)at, (unsigned long long)data_len);
    if (at < data_len)
        return cs_error_set(err, CS_ERR_IO, "%s: %llu bytes after the last tensor's data (the header accounts for "
                            "%llu)", path, (unsigned long long)(data_len - at), (unsigned long long)at);
    return CS_OK;
}

/* Step 3: a plan for each graph tensor, all checked before anything is written. */
static int match_graph(load *L, float *params, float *buffers, cs_checkpoint_info *info, cs_error *err)
{
    const char *path = L->path;
    const cs_graph *g = L->g;
    unsigned flags = L->flags;
    int nt = L->h.n_ts;
    L->pl = calloc(cs_graph_n_tensors(g) ? (size_t)cs_graph_n_tensors(g) : 1, sizeof *L->pl);
    if (!L->pl)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        const cs_tensor *gt = cs_graph_tensor(g, i);
        if (gt->kind != CS_TENSOR_PARAM && gt->kind != CS_TENSOR_BUFFER)
            continue;
        in_tensor key = {.name = gt->name}, *kp = &key;
        in_tensor **hit = nt ? bsearch(&kp, L->names, (size_t)nt, sizeof *L->names, by_name) : NULL;
        in_tensor *ft = hit ? *hit : NULL;
        int64_t gs[4];
        graph_shape(gt, gs);
        char a[160], b[160];
        if (!ft) {
            if (!(flags & CS_CKPT_ALLOW_MISSING)) {
                shape_str(gs, gt->ndim, a, sizeof a);
                return cs_error_set(err, CS_ERR_IO, "%s: tensor %s (a %s %s of the graph) is missing from the file",
                                    path, gt->name, a, gt->kind == CS_TENSOR_PARAM ? "parameter" : "buffer");
            }
        } else {
            ft->used = 1;
            if (strcmp(ft->dtype, "F32") != 0)
                return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: dtype %s, expected F32", path, gt->name,
                                    ft->dtype);
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
            return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: shape %s in the file, %s in the graph%s", path,
                                gt->name, a, b,
                                (flags & CS_CKPT_GROW_ROWS) ? " (CS_CKPT_GROW_ROWS only adds rows to a classifier)"
                                                            : "");
        }
        if (ft && (same || rows)) {
            L->pl[i].src = ft;
            L->pl[i].dst = (gt->kind == CS_TENSOR_PARAM ? params : buffers) + gt->offset;
            L->pl[i].n = (int64_t)ft->nelem;
            L->loaded++;
            L->grown += rows;
        } else {
            if (!L->missing && info)
                snprintf(info->first_missing, sizeof info->first_missing, "%s", gt->name);
            L->missing++;
        }
    }
    return CS_OK;
}

/* Step 4: the planned tensors' bytes into the arenas. */
static int copy_data(load *L, cs_error *err)
{
    uint64_t data0 = 8 + L->h.n;
    for (int i = 0; i < cs_graph_n_tensors(L->g); i++) {
        const plan *pl = &L->pl[i];
        if (!pl->src)
            continue;
        if (read_at(L->fd, pl->dst, (size_t)pl->n * sizeof(float), data0 + pl->src->begin))
            return cs_error_set(err, CS_ERR_IO, "%s: tensor %s: cannot read (%s)", L->path,
                                cs_graph_tensor(L->g, i)->name, strerror(errno));
        if (!HOST_LE)
            for (int64_t k = 0; k < pl->n; k++) {
                unsigned char *q = (unsigned char *)&pl->dst[k], t0 = q[0], t1 = q[1];
                q[0] = q[3];
                q[1] = q[2];
                q[2] = t1;
                q[3] = t0;
            }
    }
    return CS_OK;
}

static void fill_info(const load *L, cs_checkpoint_info *info)
{
    const header *h = &L->h;
    info->n_file = h->n_ts;
    info->n_loaded = L->loaded;
    info->n_grown = L->grown;
    info->n_missing = L->missing;
    for (int i = 0; i < h->n_ts; i++)
        info->n_ignored += !h->ts[i].used && !is_graph_bn_counter(L->g, h->ts[i].name);
    info->n_meta = h->n_meta;
    for (int i = 0; i < h->n_meta && i < CS_CKPT_META_MAX; i++) {
        snprintf(info->meta_key[i], sizeof info->meta_key[i], "%s", h->meta[2 * i]);
        snprintf(info->meta_value[i], sizeof info->meta_value[i], "%s", h->meta[2 * i + 1]);
    }
}

int cs_checkpoint_load_ex(const char *path, const cs_graph *g, float *params, float *buffers, unsigned flags,
                          cs_checkpoint_info *info, cs_error *err)
{
    if (info)
        memset(info, 0, sizeof *info);
    int rc = check_args(path, g, params, buffers, "load into", err);
    if (rc)
        return rc;
    if (flags & ~(unsigned)(CS_CKPT_ALLOW_MISSING | CS_CKPT_GROW_ROWS))
        return cs_error_set(err, CS_ERR_ARG, "%s: unknown load flags 0x%x", path, flags);

    load L = {.path = path, .g = g, .flags = flags};
    L.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (L.fd < 0)
        return cs_error_set(err, CS_ERR_IO, errno == ENOENT ? "%s: missing file" : "%s: cannot open (%s)", path,
                            strerror(errno));
    rc = read_header(&L, err);
    if (rc == CS_OK)
        rc = check_layout(&L, err);
    if (rc == CS_OK)
        rc = match_graph(&L, params, buffers, info, err);
    if (rc == CS_OK)
        rc = copy_data(&L, err);
    if (rc == CS_OK && info)
        fill_info(&L, info);
    load_free(&L);
    return rc;
}
