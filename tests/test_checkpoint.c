/* test_checkpoint.c: safetensors checkpoints: bit-exact round trips, the file's layout read
 * independently, every load error on a damaged file, partial loads, and saves that fail cleanly. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "testutil.h"

/* ---- helpers ---- */

/* conv+bn+relu, a strided conv (with bias) + bn in scope layer1.0, global
 * average pool, and a linear classifier fc of `classes` outputs. */
static cs_graph *tiny_graph(int classes, int fc_bias, int mid_channels)
{
    cs_graph *g = cs_graph_new(2);
    ck_assert(g != NULL);
    int x = cs_input(g, "input", 3, 8, 8);
    x = cs_conv2d(g, "conv1", x, 4, 3, 1, 1, 1, 0);
    x = cs_relu(g, cs_batchnorm(g, "bn1", x));
    cs_graph_scope(g, "layer1.0");
    x = cs_conv2d(g, "conv1", x, mid_channels, 3, 2, 1, 1, 1);
    x = cs_relu(g, cs_batchnorm(g, "bn1", x));
    cs_graph_scope(g, NULL);
    x = cs_avgpool(g, x);
    cs_linear(g, "fc", x, classes, fc_bias, CS_INIT_UNIFORM_FAN_IN);
    cs_error err;
    ck_assert_msg(cs_graph_status(g, &err) == CS_OK, "%s", err.msg);
    return g;
}

typedef struct arenas {
    float *p, *b;
} arenas;

/* Arenas initialised from seed, with running statistics that are not 0 and 1,
 * and a few floats whose bits a careless copy would change. */
static arenas make_arenas(const cs_graph *g, uint64_t seed)
{
    arenas a = {malloc((size_t)cs_graph_n_params(g) * sizeof(float)), malloc((size_t)cs_graph_n_buffers(g) * sizeof(float))};
    ck_assert(a.p && a.b);
    cs_graph_init(g, seed, a.p, a.b);
    for (int64_t i = 0; i < cs_graph_n_buffers(g); i++)
        a.b[i] += 0.25f * (float)(i % 7) - 0.5f;
    static const uint32_t odd[] = {0x80000000u /* -0 */, 0x7fc12345u /* NaN with a payload */,
                                   0x00000001u /* smallest denormal */, 0xff800000u /* -inf */,
                                   0xffbfffffu /* signalling-NaN bits */};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        memcpy(&a.p[i * 3], &odd[i], 4);
    return a;
}

/* Arenas full of a byte pattern, to see what a load wrote (or did not). */
static arenas garbage_arenas(const cs_graph *g)
{
    arenas a = {malloc((size_t)cs_graph_n_params(g) * sizeof(float)), malloc((size_t)cs_graph_n_buffers(g) * sizeof(float))};
    ck_assert(a.p && a.b);
    memset(a.p, 0xab, (size_t)cs_graph_n_params(g) * sizeof(float));
    memset(a.b, 0xab, (size_t)cs_graph_n_buffers(g) * sizeof(float));
    return a;
}

static int untouched(const cs_graph *g, const arenas *a)
{
    const unsigned char *p = (const unsigned char *)a->p, *b = (const unsigned char *)a->b;
    for (size_t i = 0; i < (size_t)cs_graph_n_params(g) * sizeof(float); i++)
        if (p[i] != 0xab)
            return 0;
    for (size_t i = 0; i < (size_t)cs_graph_n_buffers(g) * sizeof(float); i++)
        if (b[i] != 0xab)
            return 0;
    return 1;
}

static void free_arenas(arenas *a)
{
    free(a->p);
    free(a->b);
}

/* dir/name; each call has its own buffer (up to 128 per test) */
static const char *tmp_path(const char *name)
{
    static char paths[128][512];
    static int slot;
    ck_assert(slot < 128);
    char *p = paths[slot++];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_int_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void put_le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* A safetensors file from a header (padded here) and data bytes. */
static const char *craft(const char *name, const char *json, const void *data, size_t data_len)
{
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    unsigned char *buf = calloc(1, 8 + padded + data_len + 1);
    ck_assert(buf != NULL);
    put_le64(buf, padded);
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', padded - n);
    if (data_len)
        memcpy(buf + 8 + padded, data, data_len);
    const char *path = tmp_path(name);
    spit(path, buf, 8 + padded + data_len);
    free(buf);
    return path;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *const META[] = {"arch", "tiny", "task", "3", "note", "quote \" backslash \\ newline \n tab \t", NULL};

static const char *save_tiny(const char *name, const cs_graph *g, const arenas *a)
{
    const char *path = tmp_path(name);
    cs_error err;
    ck_assert_msg(cs_checkpoint_save(path, g, a->p, a->b, META, &err) == CS_OK, "%s", err.msg);
    return path;
}

/* Loads path into g expecting failure; the message is one line naming the
 * file and containing each of the NULL-terminated fragments; the arenas are untouched. */
static void expect_load_error(const char *path, const cs_graph *g, unsigned flags, const char *frag, ...)
{
    arenas a = garbage_arenas(g);
    cs_error err;
    cs_error_clear(&err);
    int rc = cs_checkpoint_load_ex(path, g, a.p, a.b, flags, NULL, &err);
    ck_assert_msg(rc < 0, "loading %s succeeded, expected an error with '%s'", path, frag);
    ck_assert_msg(strstr(err.msg, path) != NULL, "error does not name the file: %s", err.msg);
    ck_assert_msg(strchr(err.msg, '\n') == NULL, "error is not one line: %s", err.msg);
    va_list ap;
    va_start(ap, frag);
    for (const char *f = frag; f; f = va_arg(ap, const char *))
        ck_assert_msg(strstr(err.msg, f) != NULL, "error lacks '%s': %s", f, err.msg);
    va_end(ap);
    ck_assert_msg(untouched(g, &a), "a failed load of %s wrote to the arenas (%s)", path, err.msg);
    free_arenas(&a);
}

static int n_stored(const cs_graph *g)
{
    int n = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++)
        n += cs_graph_tensor(g, i)->kind == CS_TENSOR_PARAM || cs_graph_tensor(g, i)->kind == CS_TENSOR_BUFFER;
    return n;
}

/* ---- round trips ---- */

START_TEST(roundtrip_bit_exact)
{
    cs_graph *g = tiny_graph(5, 1, 6);
    arenas a = make_arenas(g, 42);
    const char *path = save_tiny("a.safetensors", g, &a);
    ck_assert(!file_exists(tmp_path("a.safetensors.tmp")));

    arenas b = garbage_arenas(g);
    cs_checkpoint_info info;
    cs_error err;
    ck_assert_msg(cs_checkpoint_load(path, g, b.p, b.b, &info, &err) == CS_OK, "%s", err.msg);
    ck_assert(memcmp(a.p, b.p, (size_t)cs_graph_n_params(g) * sizeof(float)) == 0);
    ck_assert(memcmp(a.b, b.b, (size_t)cs_graph_n_buffers(g) * sizeof(float)) == 0);
    ck_assert_int_eq(info.n_file, n_stored(g) + 2); /* + two num_batches_tracked */
    ck_assert_int_eq(info.n_loaded, n_stored(g));
    ck_assert_int_eq(info.n_ignored, 0);
    ck_assert_int_eq(info.n_missing, 0);
    ck_assert_int_eq(info.n_grown, 0);
    ck_assert_str_eq(info.first_missing, "");
    ck_assert_int_eq(info.n_meta, 3);
    ck_assert_str_eq(cs_checkpoint_meta(&info, "arch"), "tiny");
    ck_assert_str_eq(cs_checkpoint_meta(&info, "task"), "3");
    ck_assert_str_eq(cs_checkpoint_meta(&info, "note"), META[5]);
    ck_assert(cs_checkpoint_meta(&info, "nope") == NULL);

    /* info may be NULL; a second save is byte-for-byte the same file */
    ck_assert_int_eq(cs_checkpoint_load(path, g, b.p, b.b, NULL, NULL), CS_OK);
    size_t n1, n2;
    unsigned char *f1 = slurp(path, &n1);
    save_tiny("b.safetensors", g, &a);
    unsigned char *f2 = slurp(tmp_path("b.safetensors"), &n2);
    ck_assert(n1 == n2 && memcmp(f1, f2, n1) == 0);

    /* saving over an existing checkpoint replaces it */
    arenas c = make_arenas(g, 7);
    save_tiny("a.safetensors", g, &c);
    ck_assert_int_eq(cs_checkpoint_load(path, g, b.p, b.b, NULL, &err), CS_OK);
    ck_assert(memcmp(c.p, b.p, (size_t)cs_graph_n_params(g) * sizeof(float)) == 0);
    ck_assert(memcmp(c.b, b.b, (size_t)cs_graph_n_buffers(g) * sizeof(float)) == 0);
    ck_assert(!file_exists(tmp_path("a.safetensors.tmp")));
    free(f1);
    free(f2);
    free_arenas(&a);
    free_arenas(&b);
    free_arenas(&c);
    cs_graph_free(g);
}
END_TEST

START_TEST(no_metadata_no_buffers)
{
    /* a graph without batch norm: no buffers at all, and no metadata */
    cs_graph *g = cs_graph_new(1);
    int x = cs_input_vec(g, "x", 3);
    cs_linear(g, "fc", x, 2, 1, CS_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(cs_graph_n_buffers(g), 0);
    float p[8] = {1, 2, 3, 4, 5, 6, 7, 8}, q[8] = {0};
    const char *path = tmp_path("nometa.safetensors");
    cs_error err;
    ck_assert_msg(cs_checkpoint_save(path, g, p, NULL, NULL, &err) == CS_OK, "%s", err.msg);
    size_t n;
    unsigned char *f = slurp(path, &n);
    ck_assert(strstr((char *)f + 8, "__metadata__") == NULL);
    cs_checkpoint_info info;
    ck_assert_msg(cs_checkpoint_load(path, g, q, NULL, &info, &err) == CS_OK, "%s", err.msg);
    ck_assert(memcmp(p, q, 8 * sizeof(float)) == 0);
    ck_assert_int_eq(info.n_meta, 0);
    ck_assert_int_eq(info.n_file, 2);
    free(f);
    cs_graph_free(g);
}
END_TEST

/* ---- the layout, read independently ---- */

typedef struct span {
    uint64_t b, e;
    const char *name;
} span;

static int span_cmp(const void *x, const void *y)
{
    const span *a = x, *b = y;
    return a->b < b->b ? -1 : a->b > b->b;
}

/* Finds "name":{...} in the header and reads dtype, shape and data_offsets from its object. */
static int header_entry(const char *hdr, const char *name, char *dtype, int64_t *shape, int *ndim, uint64_t *b,
                        uint64_t *e)
{
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *s = strstr(hdr, key);
    if (!s)
        return 0;
    s += strlen(key);
    const char *end = strchr(s, '}');
    char obj[512];
    snprintf(obj, sizeof obj, "%.*s", (int)(end - s), s);
    const char *d = strstr(obj, "\"dtype\":\""), *sh = strstr(obj, "\"shape\":["), *o = strstr(obj, "\"data_offsets\":[");
    ck_assert_msg(d && sh && o, "entry %s: %s", name, obj);
    ck_assert_int_eq(sscanf(d + 9, "%7[A-Z0-9]", dtype), 1);
    *ndim = 0;
    const char *q = sh + 9;
    while (*q != ']') {
        char *next;
        shape[(*ndim)++] = strtoll(q, &next, 10);
        q = *next == ',' ? next + 1 : next;
    }
    unsigned long long bb, ee;
    ck_assert_int_eq(sscanf(o + 16, "%llu,%llu]", &bb, &ee), 2);
    *b = bb;
    *e = ee;
    return 1;
}

START_TEST(file_layout)
{
    cs_graph *g = tiny_graph(5, 1, 6);
    arenas a = make_arenas(g, 1);
    const char *path = save_tiny("layout.safetensors", g, &a);
    size_t len;
    unsigned char *f = slurp(path, &len);
    ck_assert_uint_ge(len, 8);
    uint64_t n = le64(f);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_le(8 + n, len);
    char *hdr = malloc(n + 1);
    memcpy(hdr, f + 8, n);
    hdr[n] = '\0';
    ck_assert_int_eq(hdr[0], '{');
    /* the object ends at the last '}', followed only by space padding (< 8 of it) */
    char *close = strrchr(hdr, '}');
    ck_assert(close != NULL);
    ck_assert_uint_lt(n - (size_t)(close + 1 - hdr), 8);
    for (char *c = close + 1; *c; c++)
        ck_assert_int_eq(*c, ' ');
    ck_assert(strstr(hdr, "\"__metadata__\":{\"arch\":\"tiny\",\"task\":\"3\",\"note\":\"quote \\\" backslash \\\\ "
                          "newline \\n tab \\t\"}") != NULL);

    const unsigned char *data = f + 8 + n;
    uint64_t data_len = len - 8 - n;
    span spans[64];
    int ns = 0;
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        const cs_tensor *t = cs_graph_tensor(g, i);
        if (t->kind != CS_TENSOR_PARAM && t->kind != CS_TENSOR_BUFFER)
            continue;
        char dtype[8];
        int64_t shape[8];
        int ndim;
        uint64_t b, e;
        ck_assert_msg(header_entry(hdr, t->name, dtype, shape, &ndim, &b, &e), "%s not in the header", t->name);
        ck_assert_str_eq(dtype, "F32");
        ck_assert_int_eq(ndim, t->ndim);
        for (int d = 0; d < ndim; d++)
            ck_assert_int_eq(shape[d], t->shape[d]);
        ck_assert_uint_eq(e - b, (uint64_t)t->size * 4);
        ck_assert_uint_le(e, data_len);
        ck_assert_uint_eq(b % 4, 0);
        const float *src = (t->kind == CS_TENSOR_PARAM ? a.p : a.b) + t->offset;
        ck_assert_msg(memcmp(data + b, src, (size_t)(e - b)) == 0, "%s: bytes differ", t->name);
        spans[ns++] = (span){b, e, t->name};
    }
    static const char *const counters[] = {"bn1.num_batches_tracked", "layer1.0.bn1.num_batches_tracked"};
    for (int i = 0; i < 2; i++) {
        char dtype[8];
        int64_t shape[8];
        int ndim;
        uint64_t b, e;
        ck_assert_msg(header_entry(hdr, counters[i], dtype, shape, &ndim, &b, &e), "%s not in the header", counters[i]);
        ck_assert_str_eq(dtype, "I64");
        ck_assert_int_eq(ndim, 0);
        ck_assert_uint_eq(e - b, 8);
        ck_assert_uint_eq(b % 8, 0);
        ck_assert_uint_eq(le64(data + b), 0);
        spans[ns++] = (span){b, e, counters[i]};
    }
    /* exactly these entries, and their offsets tile the data region */
    int entries = 0;
    for (const char *s = hdr; (s = strstr(s, "\"data_offsets\"")); s++)
        entries++;
    ck_assert_int_eq(entries, ns);
    qsort(spans, (size_t)ns, sizeof spans[0], span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < ns; i++) {
        ck_assert_msg(spans[i].b == at, "%s starts at %llu, expected %llu", spans[i].name,
                      (unsigned long long)spans[i].b, (unsigned long long)at);
        at = spans[i].e;
    }
    ck_assert_uint_eq(at, data_len);
    /* the reference writer's order: I64 first, then by name */
    ck_assert_str_eq(spans[0].name, "bn1.num_batches_tracked");
    ck_assert_str_eq(spans[1].name, "layer1.0.bn1.num_batches_tracked");
    for (int i = 3; i < ns; i++)
        ck_assert_msg(strcmp(spans[i - 1].name, spans[i].name) < 0, "%s before %s", spans[i - 1].name, spans[i].name);
    free(hdr);
    free(f);
    free_arenas(&a);
    cs_graph_free(g);
}
END_TEST

/* A file written another way: pretty-printed, another order, escapes in a
 * name, fields and tensors we do not use, a scalar, metadata first or last. */
START_TEST(foreign_writer)
{
    cs_graph *g = cs_graph_new(1);
    int x = cs_input_vec(g, "x", 3);
    cs_linear(g, "fc", x, 2, 1, CS_INIT_UNIFORM_FAN_IN);
    float data[2 + 6 + 1 + 2];
    /* [0,2): fc.bias, [2,8): fc.weight, then an unknown F32 scalar, then 8 bytes of an unknown I64 */
    for (int i = 0; i < 9; i++)
        data[i] = (float)i * 1.5f - 2.f;
    memset(&data[9], 0, 8);
    const char *json =
        "{\n  \"fc.weight\" : {\"data_offsets\": [8, 32], \"shape\": [2, 3], \"dtype\": \"F32\", \"x\": [1, {\"y\": "
        "null, \"z\": -1.5e3}, true, \"s\"]},\n"
        "  \"\\u0066c.bi\\u0061s\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},\n"
        "  \"other.scale\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [32, 36]},\n"
        "  \"other.count\": {\"dtype\": \"I16\", \"shape\": [2, 2], \"data_offsets\": [36, 44]},\n"
        "  \"__metadata__\": {\"format\": \"pt\", \"caf\\u00e9\": \"\\ud83d\\ude00\"}\n}";
    const char *path = craft("foreign.safetensors", json, data, sizeof data);
    float p[8];
    memset(p, 0, sizeof p);
    cs_checkpoint_info info;
    cs_error err;
    ck_assert_msg(cs_checkpoint_load(path, g, p, NULL, &info, &err) == CS_OK, "%s", err.msg);
    const cs_tensor *w = cs_graph_tensor(g, cs_graph_find(g, "fc.weight")), *b = cs_graph_tensor(g, cs_graph_find(g, "fc.bias"));
    ck_assert(memcmp(p + w->offset, &data[2], 6 * sizeof(float)) == 0);
    ck_assert(memcmp(p + b->offset, &data[0], 2 * sizeof(float)) == 0);
    ck_assert_int_eq(info.n_file, 4);
    ck_assert_int_eq(info.n_loaded, 2);
    ck_assert_int_eq(info.n_ignored, 2);
    ck_assert_int_eq(info.n_meta, 2);
    ck_assert_str_eq(cs_checkpoint_meta(&info, "format"), "pt");
    ck_assert_str_eq(cs_checkpoint_meta(&info, "caf\xc3\xa9"), "\xf0\x9f\x98\x80");
    cs_graph_free(g);
}
END_TEST

/* ---- load errors ---- */

START_TEST(damaged_files)
{
    cs_graph *g = tiny_graph(5, 1, 6);
    arenas a = make_arenas(g, 3);
    const char *good = save_tiny("good.safetensors", g, &a);
    size_t len;
    unsigned char *f = slurp(good, &len);
    uint64_t n = le64(f);
    unsigned char *buf = malloc(len + 64);
    const char *p;

    /* missing file, a folder */
    expect_load_error(tmp_path("none.safetensors"), g, 0, "missing file", NULL);
    expect_load_error(tu_tmpdir(), g, 0, "folder", NULL);

    /* too short for the length; empty */
    p = tmp_path("short.safetensors");
    spit(p, f, 5);
    expect_load_error(p, g, 0, "not a safetensors file", NULL);
    spit(p, f, 0);
    expect_load_error(p, g, 0, "not a safetensors file", NULL);

    /* truncated in the header, and in the data */
    p = tmp_path("trunc-header.safetensors");
    spit(p, f, 8 + n / 2);
    expect_load_error(p, g, 0, "truncated", NULL);
    p = tmp_path("trunc-data.safetensors");
    spit(p, f, len - 4);
    expect_load_error(p, g, 0, "truncated", NULL);
    /* and too long */
    memcpy(buf, f, len + 1);
    memset(buf + len, 0, 16);
    p = tmp_path("long.safetensors");
    spit(p, buf, len + 16);
    expect_load_error(p, g, 0, "16 bytes after the last tensor", NULL);

    /* absurd header lengths */
    static const uint64_t absurd[] = {0, 1, 100000001ULL, 1ULL << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        memcpy(buf, f, len + 1);
        put_le64(buf, absurd[i]);
        p = tmp_path("absurd.safetensors");
        spit(p, buf, len);
        expect_load_error(p, g, 0, "not a safetensors file", "absurd", NULL);
    }
    /* a plausible length that points past the end */
    memcpy(buf, f, len + 1);
    put_le64(buf, len);
    p = tmp_path("past-end.safetensors");
    spit(p, buf, len);
    expect_load_error(p, g, 0, "truncated", NULL);

    /* some other file: text, and a JSON that is not an object */
    p = tu_write("text.safetensors", "hello, this is not a checkpoint at all\n");
    expect_load_error(p, g, 0, "not a safetensors file", NULL);
    p = craft("array.safetensors", "[1, 2, 3]", NULL, 0);
    expect_load_error(p, g, 0, "not a safetensors file", "'{'", NULL);

    /* bad JSON: a member without its colon, an unclosed object, trailing text, not UTF-8 */
    memcpy(buf, f, len + 1);
    char *hdr = (char *)buf + 8;
    char *colon = strstr(hdr, "\"fc.weight\":") + strlen("\"fc.weight\"");
    *colon = ';';
    p = tmp_path("json.safetensors");
    spit(p, buf, len);
    expect_load_error(p, g, 0, "bad JSON header", "expected ':'", NULL);
    expect_load_error(craft("open.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}",
                            "abcd", 4),
                      g, 0, "bad JSON header", NULL);
    expect_load_error(craft("trailing.safetensors", "{} {}", NULL, 0), g, 0, "bad JSON header", "after", NULL);
    expect_load_error(craft("utf8.safetensors", "{\"\xff\": 1}", NULL, 0), g, 0, "not UTF-8", NULL);
    expect_load_error(craft("number.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
                            "abcd", 4),
                      g, 0, "bad JSON header", "integer", NULL);
    expect_load_error(craft("negative.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
                            "abcd", 4),
                      g, 0, "bad JSON header", NULL);
    expect_load_error(craft("nofield.safetensors", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "abcd", 4), g,
                      0, "tensor a: no shape", NULL);
    expect_load_error(craft("badtype.safetensors", "{\"a\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                            "abcd", 4),
                      g, 0, "unknown dtype 'F33'", NULL);
    expect_load_error(craft("metaval.safetensors", "{\"__metadata__\": {\"epoch\": 3}}", NULL, 0), g, 0, "__metadata__",
                      "epoch", "string", NULL);
    expect_load_error(craft("twice.safetensors", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
                                                 " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
                            "ab", 2),
                      g, 0, "tensor a appears twice", NULL);
    char deep[300];
    memset(deep, '[', sizeof deep);
    static const char deep_start[] = "{\"a\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1], \"x\": ";
    memcpy(deep, deep_start, strlen(deep_start));
    deep[sizeof deep - 1] = '\0';
    expect_load_error(craft("deep.safetensors", deep, "a", 1), g, 0, "nested deeper", NULL);

    /* offsets that do not tile the data: a gap, an overlap, a size that is not the shape's */
    expect_load_error(craft("gap.safetensors", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
                            "ab", 2),
                      g, 0, "tensor a", "gap", NULL);
    expect_load_error(craft("overlap.safetensors", "{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]},"
                                                   " \"b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
                            "ab", 2),
                      g, 0, "tensor b", "overlap", NULL);
    expect_load_error(craft("size.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                            "abcd", 4),
                      g, 0, "tensor a", "span 4 bytes, F32 [2] needs 8", NULL);

    /* flip a dtype (I32 has F32's size, so the layout stays valid) */
    memcpy(buf, f, len + 1);
    char *dt = strstr((char *)buf + 8, "\"fc.weight\":{\"dtype\":\"F32\"");
    ck_assert(dt != NULL);
    memcpy(dt + strlen("\"fc.weight\":{\"dtype\":\""), "I32", 3);
    p = tmp_path("dtype.safetensors");
    spit(p, buf, len);
    expect_load_error(p, g, 0, "tensor fc.weight", "dtype I32, expected F32", NULL);

    /* change a shape in the header: [5,6] to [6,5] (same size), and a graph of another shape */
    memcpy(buf, f, len + 1);
    char *sh = strstr((char *)buf + 8, "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[5,6]");
    ck_assert(sh != NULL);
    memcpy(sh + strlen("\"fc.weight\":{\"dtype\":\"F32\",\"shape\":["), "6,5", 3);
    p = tmp_path("shape.safetensors");
    spit(p, buf, len);
    expect_load_error(p, g, 0, "tensor fc.weight", "shape [6,5] in the file, [5,6] in the graph", NULL);
    cs_graph *g7 = tiny_graph(7, 1, 6);
    expect_load_error(good, g7, 0, "tensor fc.weight", "shape [5,6] in the file, [7,6] in the graph", NULL);
    cs_graph *g8 = tiny_graph(5, 1, 8);
    expect_load_error(good, g8, 0, "tensor layer1.0.conv1.weight", "shape [6,4,3,3] in the file, [8,4,3,3] in the graph",
                      NULL);

    /* a tensor of the graph missing from the file: a checkpoint of the graph without fc.bias */
    cs_graph *gnb = tiny_graph(5, 0, 6);
    arenas anb = make_arenas(gnb, 3);
    const char *nobias = save_tiny("nobias.safetensors", gnb, &anb);
    expect_load_error(nobias, g, 0, "tensor fc.bias", "missing from the file", NULL);

    /* the reverse: a tensor of the file the graph lacks is ignored, and counted */
    arenas b = garbage_arenas(gnb);
    cs_checkpoint_info info;
    cs_error err;
    ck_assert_msg(cs_checkpoint_load(good, gnb, b.p, b.b, &info, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(info.n_ignored, 1);
    ck_assert_int_eq(info.n_loaded, n_stored(gnb));
    ck_assert(memcmp(b.b, a.b, (size_t)cs_graph_n_buffers(g) * sizeof(float)) == 0);

    /* bad arguments */
    ck_assert_int_eq(cs_checkpoint_load_ex(good, g, a.p, a.b, 0x80, NULL, &err), CS_ERR_ARG);
    ck_assert(strstr(err.msg, "flags") != NULL);
    ck_assert_int_eq(cs_checkpoint_load(good, g, NULL, a.b, NULL, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_checkpoint_load(NULL, g, a.p, a.b, NULL, &err), CS_ERR_ARG);

    free_arenas(&b);
    free_arenas(&anb);
    cs_graph_free(gnb);
    cs_graph_free(g8);
    cs_graph_free(g7);
    free(buf);
    free(f);
    free_arenas(&a);
    cs_graph_free(g);
}
END_TEST

/* ---- partial loads: a backbone into a graph whose classifier grew ---- */

START_TEST(grow_classifier)
{
    cs_graph *g5 = tiny_graph(5, 1, 6), *g7 = tiny_graph(7, 1, 6);
    arenas a = make_arenas(g5, 11);
    const char *path = save_tiny("five.safetensors", g5, &a);

    /* a fresh 7-class model, initialised as the trainer would */
    arenas b = {malloc((size_t)cs_graph_n_params(g7) * sizeof(float)), malloc((size_t)cs_graph_n_buffers(g7) * sizeof(float))};
    cs_graph_init(g7, 99, b.p, b.b);
    arenas init = {malloc((size_t)cs_graph_n_params(g7) * sizeof(float)), malloc((size_t)cs_graph_n_buffers(g7) * sizeof(float))};
    memcpy(init.p, b.p, (size_t)cs_graph_n_params(g7) * sizeof(float));
    cs_checkpoint_info info;
    cs_error err;
    ck_assert_msg(cs_checkpoint_load_ex(path, g7, b.p, b.b, CS_CKPT_GROW_ROWS, &info, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(info.n_loaded, n_stored(g7));
    ck_assert_int_eq(info.n_grown, 2);
    ck_assert_int_eq(info.n_missing, 0);
    for (int i = 0; i < cs_graph_n_tensors(g7); i++) {
        const cs_tensor *t = cs_graph_tensor(g7, i);
        if (t->kind != CS_TENSOR_PARAM && t->kind != CS_TENSOR_BUFFER)
            continue;
        const cs_tensor *s = cs_graph_tensor(g5, cs_graph_find(g5, t->name));
        const float *src = (s->kind == CS_TENSOR_PARAM ? a.p : a.b) + s->offset;
        const float *dst = (t->kind == CS_TENSOR_PARAM ? b.p : b.b) + t->offset;
        ck_assert_msg(memcmp(src, dst, (size_t)s->size * sizeof(float)) == 0, "%s: the file's rows", t->name);
        if (t->size > s->size) { /* the new rows keep their initial values */
            ck_assert(t->kind == CS_TENSOR_PARAM);
            ck_assert_msg(memcmp(dst + s->size, init.p + t->offset + s->size,
                                 (size_t)(t->size - s->size) * sizeof(float)) == 0, "%s: new rows changed", t->name);
        }
    }

    /* GROW_ROWS does not shrink, nor cover other dims */
    expect_load_error(tmp_path("five.safetensors"), g7, 0, "tensor fc.weight", "[5,6] in the file, [7,6] in the graph",
                      NULL);
    arenas c = make_arenas(g7, 5);
    const char *seven = save_tiny("seven.safetensors", g7, &c);
    expect_load_error(seven, g5, CS_CKPT_GROW_ROWS, "tensor fc.weight", "[7,6] in the file, [5,6] in the graph",
                      "only adds rows to a classifier", NULL);
    cs_graph *g8 = tiny_graph(5, 1, 8);
    expect_load_error(path, g8, CS_CKPT_GROW_ROWS, "tensor layer1.0.conv1.weight", "only adds rows to a classifier",
                      NULL);

    /* ALLOW_MISSING: what does not fit keeps its values */
    arenas d = garbage_arenas(g5);
    ck_assert_msg(cs_checkpoint_load_ex(seven, g5, d.p, d.b, CS_CKPT_ALLOW_MISSING, &info, &err) == CS_OK, "%s",
                  err.msg);
    ck_assert_int_eq(info.n_missing, 2);
    ck_assert_str_eq(info.first_missing, "fc.weight");
    ck_assert_int_eq(info.n_loaded, n_stored(g5) - 2);
    const cs_tensor *fw = cs_graph_tensor(g5, cs_graph_find(g5, "fc.weight"));
    const unsigned char *wb = (const unsigned char *)(d.p + fw->offset);
    for (size_t k = 0; k < (size_t)fw->size * sizeof(float); k++)
        ck_assert_int_eq(wb[k], 0xab);
    const cs_tensor *cw = cs_graph_tensor(g5, cs_graph_find(g5, "conv1.weight"));
    ck_assert(memcmp(d.p + cw->offset, c.p + cs_graph_tensor(g7, cs_graph_find(g7, "conv1.weight"))->offset,
                     (size_t)cw->size * sizeof(float)) == 0);

    /* ALLOW_MISSING with a tensor absent from the file */
    cs_graph *gnb = tiny_graph(5, 0, 6);
    arenas e = make_arenas(gnb, 3);
    const char *nobias = save_tiny("nobias.safetensors", gnb, &e);
    arenas h = garbage_arenas(g5);
    ck_assert_msg(cs_checkpoint_load_ex(nobias, g5, h.p, h.b, CS_CKPT_ALLOW_MISSING, &info, &err) == CS_OK, "%s",
                  err.msg);
    ck_assert_int_eq(info.n_missing, 1);
    ck_assert_str_eq(info.first_missing, "fc.bias");
    /* but a wrong dtype is still an error */
    size_t len;
    unsigned char *f = slurp(path, &len);
    char *dt = strstr((char *)f + 8, "\"fc.bias\":{\"dtype\":\"F32\"");
    ck_assert(dt != NULL);
    memcpy(dt + strlen("\"fc.bias\":{\"dtype\":\""), "U32", 3);
    const char *p = tmp_path("u32.safetensors");
    spit(p, f, len);
    expect_load_error(p, g5, CS_CKPT_ALLOW_MISSING | CS_CKPT_GROW_ROWS, "tensor fc.bias", "dtype U32", NULL);

    free(f);
    free_arenas(&h);
    free_arenas(&e);
    cs_graph_free(gnb);
    free_arenas(&d);
    cs_graph_free(g8);
    free_arenas(&c);
    free_arenas(&init);
    free_arenas(&b);
    free_arenas(&a);
    cs_graph_free(g7);
    cs_graph_free(g5);
}
END_TEST

/* ---- saves that fail ---- */

START_TEST(save_failures)
{
    cs_graph *g = tiny_graph(5, 1, 6);
    arenas a = make_arenas(g, 4);
    cs_error err;

    /* a folder that does not exist; a "folder" that is a file */
    const char *p = tmp_path("no/such/dir/x.safetensors");
    ck_assert_int_eq(cs_checkpoint_save(p, g, a.p, a.b, NULL, &err), CS_ERR_IO);
    ck_assert_msg(strstr(err.msg, p) && strchr(err.msg, '\n') == NULL, "%s", err.msg);
    const char *file = tu_write("plain", "x");
    char under[600];
    snprintf(under, sizeof under, "%s/x.safetensors", file);
    ck_assert_int_eq(cs_checkpoint_save(under, g, a.p, a.b, NULL, &err), CS_ERR_IO);
    ck_assert_msg(strstr(err.msg, under) != NULL, "%s", err.msg);

    /* the target is a folder: the rename fails, and the temporary file goes */
    const char *dir = tmp_path("adir");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(cs_checkpoint_save(dir, g, a.p, a.b, NULL, &err), CS_ERR_IO);
    ck_assert_msg(strstr(err.msg, dir) && strstr(err.msg, "rename"), "%s", err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    ck_assert_msg(!file_exists(tmp), "%s left behind", tmp);

    /* bad metadata fails before any file is touched */
    const char *m = tmp_path("meta.safetensors");
    static const char *const odd[] = {"key", NULL, NULL};
    static const char *const empty[] = {"", "v", NULL};
    static const char *const twice[] = {"k", "1", "k", "2", NULL};
    static const char *const notutf8[] = {"k", "\xc3(", NULL};
    ck_assert_int_eq(cs_checkpoint_save(m, g, a.p, a.b, odd, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "'key' has no value"), "%s", err.msg);
    ck_assert_int_eq(cs_checkpoint_save(m, g, a.p, a.b, empty, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_checkpoint_save(m, g, a.p, a.b, twice, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "twice"), "%s", err.msg);
    ck_assert_int_eq(cs_checkpoint_save(m, g, a.p, a.b, notutf8, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_checkpoint_save(m, g, NULL, a.b, NULL, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_checkpoint_save("", g, a.p, a.b, NULL, &err), CS_ERR_ARG);
    ck_assert(!file_exists(m));
    snprintf(tmp, sizeof tmp, "%s.tmp", m);
    ck_assert(!file_exists(tmp));

    /* a graph that failed to build is not saved */
    cs_graph *bad = cs_graph_new(1);
    cs_linear(bad, "fc", cs_input(bad, "x", 3, 4, 4), 2, 1, CS_INIT_ZERO); /* linear on [N,C,H,W] */
    ck_assert_int_eq(cs_checkpoint_save(m, bad, a.p, a.b, NULL, &err), CS_ERR_ARG);
    ck_assert(!file_exists(m));
    cs_graph_free(bad);
    free_arenas(&a);
    cs_graph_free(g);
}
END_TEST

/* A write that fails half-way (the file size limit) leaves the old checkpoint as it was. */
START_TEST(failed_save_keeps_old)
{
    cs_graph *g = tiny_graph(5, 1, 6);
    arenas a = make_arenas(g, 4), b = make_arenas(g, 5);
    const char *path = save_tiny("keep.safetensors", g, &a);
    size_t len0;
    unsigned char *before = slurp(path, &len0);

    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 200; /* past the length, inside the header */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cs_error err;
    int rc = cs_checkpoint_save(path, g, b.p, b.b, META, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    ck_assert_int_eq(rc, CS_ERR_IO);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "cannot write") && !strchr(err.msg, '\n'), "%s", err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_msg(!file_exists(tmp), "%s left behind", tmp);

    size_t len1;
    unsigned char *after = slurp(path, &len1);
    ck_assert(len0 == len1 && memcmp(before, after, len0) == 0);
    arenas c = garbage_arenas(g);
    ck_assert_msg(cs_checkpoint_load(path, g, c.p, c.b, NULL, &err) == CS_OK, "%s", err.msg);
    ck_assert(memcmp(a.p, c.p, (size_t)cs_graph_n_params(g) * sizeof(float)) == 0);

    /* a stale temporary file from a crash does not get in the way */
    spit(tmp, "junk", 4);
    save_tiny("keep.safetensors", g, &b);
    ck_assert(!file_exists(tmp));
    ck_assert_int_eq(cs_checkpoint_load(path, g, c.p, c.b, NULL, &err), CS_OK);
    ck_assert(memcmp(b.p, c.p, (size_t)cs_graph_n_params(g) * sizeof(float)) == 0);
    free(before);
    free(after);
    free_arenas(&a);
    free_arenas(&b);
    free_arenas(&c);
    cs_graph_free(g);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, roundtrip_bit_exact);
    tcase_add_test(tc, no_metadata_no_buffers);
    tcase_add_test(tc, file_layout);
    tcase_add_test(tc, foreign_writer);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, damaged_files);
    tcase_add_test(tc, grow_classifier);
    tcase_add_test(tc, save_failures);
    tcase_add_test(tc, failed_save_keeps_old);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(checkpoint_suite()) ? 1 : 0; }
