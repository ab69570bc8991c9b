/* data.c: loading IDX (gzipped or not), CIFAR-10/100 binary and image-folder data sets into a cs_dataset. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "runtime/data.h"
#include "runtime/image.h"

#define IDX_CLASSES 10
#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dimension */
#define CIFAR_PIXELS 3072
#define MAX_FOLDER_SIZE 4096
#define IDX_MAX_SIDE 16384

static const char *format_names[] = {"idx", "cifar10", "cifar100", "folder", "list"};

int cs_data_format_parse(const char *s, cs_data_format *out)
{
    for (int i = 0; s && i < (int)(sizeof format_names / sizeof format_names[0]); i++)
        if (strcmp(s, format_names[i]) == 0) {
            *out = (cs_data_format)i;
            return CS_OK;
        }
    return CS_ERR_ARG;
}

const char *cs_data_format_name(cs_data_format f)
{
    if ((int)f < 0 || (int)f >= (int)(sizeof format_names / sizeof format_names[0]))
        return NULL;
    return format_names[f];
}

/* ---- small helpers ---- */

__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int nomem(cs_error *err, const char *what) { return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", what); }

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void cs_dataset_free(cs_dataset *d)
{
    if (!d)
        return;
    free(d->pixels);
    free(d->labels);
    if (d->class_names)
        for (int i = 0; i < d->n_classes; i++)
            free(d->class_names[i]);
    free(d->class_names);
    free(d);
}

/* Names "0", "1", ... for n classes. */
static int number_names(cs_dataset *d, int n, cs_error *err)
{
    d->class_names = calloc((size_t)n, sizeof(char *));
    if (!d->class_names)
        return nomem(err, "class names");
    d->n_classes = n;
    for (int i = 0; i < n; i++) {
        d->class_names[i] = str_printf("%d", i);
        if (!d->class_names[i])
            return nomem(err, "class names");
    }
    return CS_OK;
}

/* The CIFAR binary distributions ship the class names, one a line
 * (batches.meta.txt, fine_label_names.txt). Used when the file is there and
 * has exactly n non-empty lines; numbers otherwise. */
static int meta_names(cs_dataset *d, const char *dir, const char *file, int n, cs_error *err)
{
    int rc = number_names(d, n, err);
    if (rc != CS_OK)
        return rc;
    char *path = str_printf("%s/%s", dir, file);
    if (!path)
        return nomem(err, file);
    uint8_t *text;
    size_t size;
    if (!file_exists(path) || cs_read_file(path, &text, &size, NULL) != CS_OK) {
        free(path);
        return CS_OK;
    }
    free(path);
    char **names = calloc((size_t)n, sizeof(char *));
    int count = 0;
    for (char *line = (char *)text; names && line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *end = line + strlen(line);
        while (*line == ' ' || *line == '\t' || *line == '\r')
            line++;
        while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            *--end = '\0';
        if (*line) {
            if (count < n)
                names[count] = strdup(line);
            count++;
        }
        line = next;
    }
    int ok = names && count == n;
    for (int i = 0; ok && i < n; i++)
        ok = names[i] != NULL;
    for (int i = 0; names && i < n; i++) {
        if (ok) {
            free(d->class_names[i]);
            d->class_names[i] = names[i];
        } else {
            free(names[i]);
        }
    }
    free(names);
    free(text);
    return CS_OK;
}

static cs_dataset *dataset_new(cs_error *err)
{
    cs_dataset *d = calloc(1, sizeof *d);
    if (!d)
        nomem(err, "data set");
    return d;
}

/* ---- IDX (MNIST, Fashion-MNIST) ---- */

/* The size an IDX file's header announces (hdr: the 16-byte images or 8-byte
 * labels header), or 0 when the header is not there or implausible (the
 * caller's checks then name what is wrong). */
static uint64_t idx_announced(const uint8_t *hdr, size_t have, size_t hdr_len)
{
    if (have < hdr_len)
        return 0;
    uint64_t n = be32(hdr + 4);
    if (hdr_len == 8)
        return 8 + n;
    uint64_t rows = be32(hdr + 8), cols = be32(hdr + 12);
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE || n > INT_MAX / 2)
        return 0;
    return 16 + n * rows * cols;
}

/* Reads DIR/BASE, or DIR/BASE.gz (through zlib, which also reads a plain file
 * that happens to be named .gz). *path gets the name read. Bounded by the
 * header: it reads the hdr_len-byte header, then at most what the header
 * announces plus one byte (so a file longer than announced is seen as such),
 * never inflating a stream past that: a small gzip bomb costs nothing. */
static int read_idx_file(const char *dir, const char *base, size_t hdr_len, char **path, uint8_t **data,
                         size_t *size, int *gz_short, cs_error *err)
{
    *data = NULL;
    *size = 0;
    *gz_short = 0;
    *path = str_printf("%s/%s", dir, base);
    if (!*path)
        return nomem(err, base);
    if (!file_exists(*path)) {
        free(*path);
        *path = str_printf("%s/%s.gz", dir, base);
        if (!*path)
            return nomem(err, base);
        if (!file_exists(*path))
            return cs_error_set(err, CS_ERR_IO, "%s/%s[.gz]: missing file", dir, base);
    }
    if (is_dir(*path))
        return cs_error_set(err, CS_ERR_IO, "%s: is a folder, expected a file", *path);
    gzFile gz = gzopen(*path, "rb");
    if (!gz)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot open (%s)", *path, errno ? strerror(errno) : "zlib");
    /* the buffer grows with the data (doubling, up to what the header
     * announces and one byte more): a header that announces gigabytes costs
     * only what the file really holds */
    size_t used = 0, limit = hdr_len, cap = hdr_len + 1;
    uint8_t *buf = malloc(cap);
    int k = 1;
    for (int pass = 0; buf && pass < 2; pass++) {
        while (used < limit) { /* pass 0: the header; pass 1: what it announces, and one byte more */
            if (used == cap) {
                size_t next = cap < ((size_t)1 << 20) ? ((size_t)1 << 20) : 2 * cap;
                next = next < limit ? next : limit;
                uint8_t *bigger = realloc(buf, next);
                if (!bigger) {
                    free(buf);
                    buf = NULL;
                    break;
                }
                buf = bigger;
                cap = next;
            }
            size_t room = cap - used < ((size_t)1 << 30) ? cap - used : ((size_t)1 << 30);
            room = room < limit - used ? room : limit - used;
            k = gzread(gz, buf + used, (unsigned)room);
            if (k <= 0)
                break;
            used += (size_t)k;
        }
        uint64_t want = pass == 0 && k > 0 && buf ? idx_announced(buf, used, hdr_len) : 0;
        if (!want || want > SIZE_MAX - 1)
            break;
        limit = (size_t)want + 1;
    }
    if (!buf) {
        gzclose(gz);
        return nomem(err, *path);
    }
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (k < 0 || (errnum != Z_OK && errnum != Z_BUF_ERROR)) {
        size_t plen = strlen(*path); /* zlib's message starts "PATH: " */
        if (msg && strncmp(msg, *path, plen) == 0 && msg[plen] == ':')
            msg += plen + 2;
        cs_error_set(err, CS_ERR_IO, "%s: corrupt gzip data (zlib: %s)", *path, msg && *msg ? msg : "read error");
        gzclose(gz);
        free(buf);
        return CS_ERR_IO;
    }
    *gz_short = errnum == Z_BUF_ERROR;
    gzclose(gz);
    *data = buf;
    *size = used;
    return CS_OK;
}

static const char *gz_note(int gz_short)
{
    return gz_short ? " (the gzip stream ends early)" : "";
}

static int load_idx(cs_dataset *d, const char *dir, int train, cs_error *err)
{
    const char *split = train ? "train" : "t10k";
    char img_base[64], lab_base[64];
    snprintf(img_base, sizeof img_base, "%s-images-idx3-ubyte", split);
    snprintf(lab_base, sizeof lab_base, "%s-labels-idx1-ubyte", split);
    char *ipath = NULL, *lpath = NULL;
    uint8_t *img = NULL, *lab = NULL;
    size_t isize = 0, lsize = 0;
    int ishort = 0, lshort = 0;
    int rc = read_idx_file(dir, img_base, 16, &ipath, &img, &isize, &ishort, err);
    if (rc != CS_OK)
        goto done;
    rc = CS_ERR_IO;
    if (isize >= 4 && be32(img) != IDX_MAGIC_IMAGES) {
        cs_error_set(err, rc, "%s: bad magic number: expected 0x%08x (IDX images: unsigned bytes, 3 dimensions), "
                     "found 0x%08x", ipath, IDX_MAGIC_IMAGES, be32(img));
        goto done;
    }
    if (isize < 16) {
        cs_error_set(err, rc, "%s: truncated: %zu bytes, shorter than the 16-byte IDX header%s", ipath, isize,
                     gz_note(ishort));
        goto done;
    }
    uint32_t n = be32(img + 4), rows = be32(img + 8), cols = be32(img + 12);
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE || n > INT_MAX / 2) {
        cs_error_set(err, rc, "%s: implausible IDX header: %u images of %ux%u", ipath, n, rows, cols);
        goto done;
    }
    uint64_t want = 16 + (uint64_t)n * rows * cols;
    if (isize < want) {
        cs_error_set(err, rc, "%s: truncated: the header announces %u images of %ux%u, %llu bytes in all, the file has "
                     "%zu%s", ipath, n, rows, cols, (unsigned long long)want, isize, gz_note(ishort));
        goto done;
    }
    if (isize > want) {
        cs_error_set(err, rc, "%s: wrong size: the header announces %u images of %ux%u, %llu bytes in all, the file "
                     "has more", ipath, n, rows, cols, (unsigned long long)want);
        goto done;
    }
    if (ishort) { /* all the data, but the gzip trailer (length, CRC) is cut off */
        cs_error_set(err, rc, "%s: truncated: the gzip stream ends early", ipath);
        goto done;
    }
    rc = read_idx_file(dir, lab_base, 8, &lpath, &lab, &lsize, &lshort, err);
    if (rc != CS_OK)
        goto done;
    rc = CS_ERR_IO;
    if (lsize >= 4 && be32(lab) != IDX_MAGIC_LABELS) {
        cs_error_set(err, rc, "%s: bad magic number: expected 0x%08x (IDX labels: unsigned bytes, 1 dimension), "
                     "found 0x%08x", lpath, IDX_MAGIC_LABELS, be32(lab));
        goto done;
    }
    if (lsize < 8) {
        cs_error_set(err, rc, "%s: truncated: %zu bytes, shorter than the 8-byte IDX header%s", lpath, lsize,
                     gz_note(lshort));
        goto done;
    }
    uint32_t ln = be32(lab + 4);
    if (lsize < 8 + (uint64_t)ln) {
        cs_error_set(err, rc, "%s: truncated: the header announces %u labels, %llu bytes in all, the file has %zu%s",
                     lpath, ln, (unsigned long long)(8 + (uint64_t)ln), lsize, gz_note(lshort));
        goto done;
    }
    if (lsize > 8 + (uint64_t)ln) {
        cs_error_set(err, rc, "%s: wrong size: the header announces %u labels, %llu bytes in all, the file has more",
                     lpath, ln, (unsigned long long)(8 + (uint64_t)ln));
        goto done;
    }
    if (lshort) {
        cs_error_set(err, rc, "%s: truncated: the gzip stream ends early", lpath);
        goto done;
    }
    if (ln != n) {
        cs_error_set(err, rc, "%s: %u labels, but %s has %u images", lpath, ln, ipath, n);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++)
        if (lab[8 + i] >= IDX_CLASSES) {
            cs_error_set(err, rc, "%s: label %u of image %u is out of range (expected 0..%d)", lpath, lab[8 + i], i,
                         IDX_CLASSES - 1);
            goto done;
        }
    d->n = (int)n;
    d->c = 1;
    d->h = (int)rows;
    d->w = (int)cols;
    d->pixels = malloc((size_t)want - 16 + 1);
    d->labels = malloc(sizeof(int) * ((size_t)n + 1));
    if (!d->pixels || !d->labels) {
        rc = nomem(err, ipath);
        goto done;
    }
    memcpy(d->pixels, img + 16, (size_t)want - 16);
    for (uint32_t i = 0; i < n; i++)
        d->labels[i] = lab[8 + i];
    rc = number_names(d, IDX_CLASSES, err);
done:
    free(img);
    free(lab);
    free(ipath);
    free(lpath);
    return rc;
}

/* ---- CIFAR-10 / CIFAR-100 binary ---- */

/* Appends the records of one CIFAR file: label_bytes (1 or 2) label bytes, the
 * last of which is the label used, then 3072 pixel bytes (R, G, B planes). */
static int load_cifar_file(cs_dataset *d, const char *path, int cifar100, cs_error *err)
{
    int label_bytes = cifar100 ? 2 : 1;
    size_t rec = (size_t)label_bytes + CIFAR_PIXELS;
    const char *layout = cifar100 ? "coarse label + fine label + 3072 pixels" : "label + 3072 pixels";
    uint8_t *buf;
    size_t size;
    int rc = cs_read_file(path, &buf, &size, err);
    if (rc != CS_OK)
        return rc;
    rc = CS_ERR_IO;
    if (size == 0) {
        cs_error_set(err, rc, "%s: empty file, expected %zu-byte records (%s)", path, rec, layout);
        goto done;
    }
    if (size % rec != 0) {
        cs_error_set(err, rc, "%s: truncated: %zu bytes is not a whole number of %zu-byte records (%s): "
                     "expected %zu bytes for %zu record%s, or %zu for %zu",
                     path, size, rec, layout, size / rec * rec, size / rec, size / rec == 1 ? "" : "s",
                     (size / rec + 1) * rec, size / rec + 1);
        goto done;
    }
    size_t count = size / rec;
    if (count > (size_t)(INT_MAX / 2 - d->n)) {
        cs_error_set(err, rc, "%s: too many records (%zu)", path, count);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *r = buf + i * rec;
        if (cifar100 && r[0] >= 20) {
            cs_error_set(err, rc, "%s: coarse label %u of record %zu is out of range (expected 0..19)", path, r[0], i);
            goto done;
        }
        int max = cifar100 ? 100 : 10;
        if (r[label_bytes - 1] >= max) {
            cs_error_set(err, rc, "%s: %slabel %u of record %zu is out of range (expected 0..%d)", path,
                         cifar100 ? "fine " : "", r[label_bytes - 1], i, max - 1);
            goto done;
        }
    }
    size_t total = (size_t)d->n + count;
    uint8_t *px = realloc(d->pixels, total * CIFAR_PIXELS);
    if (px)
        d->pixels = px;
    int *lb = px ? realloc(d->labels, total * sizeof(int)) : NULL;
    if (lb)
        d->labels = lb;
    if (!px || !lb) {
        rc = nomem(err, path);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *r = buf + i * rec;
        d->labels[(size_t)d->n + i] = r[label_bytes - 1];
        memcpy(d->pixels + ((size_t)d->n + i) * CIFAR_PIXELS, r + label_bytes, CIFAR_PIXELS);
    }
    d->n = (int)total;
    rc = CS_OK;
done:
    free(buf);
    return rc;
}

static int load_cifar(cs_dataset *d, const char *dir, int train, int cifar100, cs_error *err)
{
    d->c = 3;
    d->h = d->w = 32;
    int rc = CS_OK;
    if (cifar100) {
        char *path = str_printf("%s/%s", dir, train ? "train.bin" : "test.bin");
        if (!path)
            return nomem(err, dir);
        rc = load_cifar_file(d, path, 1, err);
        free(path);
    } else {
        for (int i = 1; rc == CS_OK && i <= (train ? 5 : 1); i++) {
            char *path = train ? str_printf("%s/data_batch_%d.bin", dir, i) : str_printf("%s/test_batch.bin", dir);
            if (!path)
                return nomem(err, dir);
            rc = load_cifar_file(d, path, 0, err);
            free(path);
        }
    }
    if (rc != CS_OK)
        return rc;
    return meta_names(d, dir, cifar100 ? "fine_label_names.txt" : "batches.meta.txt", cifar100 ? 100 : 10, err);
}

/* ---- image folders ---- */

typedef struct name_list {
    char **v;
    int n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_push(name_list *l, char *s)
{
    if (!s)
        return CS_ERR_NOMEM;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
        if (!v) {
            free(s);
            return CS_ERR_NOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return CS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

/* Lists dir's entries, sorted: its folders (dirs = 1) or its image files
 * (dirs = 0). Names starting with '.' are skipped. */
static int list_dir(const char *dir, int dirs, name_list *out, cs_error *err)
{
    memset(out, 0, sizeof *out);
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT)
            return cs_error_set(err, CS_ERR_IO, "%s: missing folder", dir);
        return cs_error_set(err, CS_ERR_IO, "%s: cannot list (%s)", dir, strerror(errno));
    }
    struct dirent *e;
    int rc = CS_OK;
    while (rc == CS_OK && (e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (!dirs && !has_image_ext(e->d_name))
            continue;
        char *full = str_printf("%s/%s", dir, e->d_name);
        if (!full) {
            rc = nomem(err, dir);
            break;
        }
        struct stat st;
        int keep = stat(full, &st) == 0 && (dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        free(full);
        if (keep && names_push(out, strdup(e->d_name)) != CS_OK)
            rc = nomem(err, dir);
    }
    closedir(dp);
    if (rc != CS_OK) {
        names_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return CS_OK;
}

/* Decodes path and writes it as c x size x size into dst. */
static int load_image(const char *path, int size, int channels, uint8_t *dst, cs_error *err)
{
    uint8_t *file, *rgb = NULL;
    size_t fsize;
    int w, h;
    int rc = cs_read_file(path, &file, &fsize, err);
    if (rc != CS_OK)
        return rc;
    rc = cs_image_decode(path, file, fsize, &rgb, &w, &h, err);
    free(file);
    if (rc != CS_OK)
        return rc;
    size_t npx = (size_t)w * (size_t)h;
    const uint8_t *src = rgb; /* HWC with pix_stride channels */
    size_t pix = 3;
    if (channels == 1) { /* ITU-R 601 luma in 16-bit fixed point, as PIL's convert("L") */
        for (size_t i = 0; i < npx; i++) {
            const uint8_t *p = rgb + 3 * i;
            rgb[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
        }
        pix = 1;
    }
    size_t plane = (size_t)size * (size_t)size;
    if (w == size && h == size) {
        for (int ch = 0; ch < channels; ch++)
            for (size_t i = 0; i < plane; i++)
                dst[(size_t)ch * plane + i] = src[i * pix + (size_t)ch];
        free(rgb);
        return CS_OK;
    }
    cs_resizer r;
    float *out = malloc(sizeof(float) * plane);
    if (!out || cs_resizer_init(&r, h, w, size, size) != CS_OK) {
        free(out);
        free(rgb);
        return nomem(err, path);
    }
    for (int ch = 0; ch < channels; ch++) {
        cs_resize_plane_u8(&r, src + ch, (size_t)w * pix, pix, out);
        for (size_t i = 0; i < plane; i++) {
            float v = floorf(out[i] + 0.5f);
            dst[(size_t)ch * plane + i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    cs_resizer_free(&r);
    free(out);
    free(rgb);
    return CS_OK;
}

static int load_folder(cs_dataset *d, const char *dir, int train, int size, int channels, cs_error *err)
{
    const char *split = train ? "train" : "test";
    char *split_dir = str_printf("%s/%s", dir, split);
    char *class_dir = str_printf("%s/train", dir);
    name_list classes = {0}, here = {0}, files = {0};
    int *labels = NULL, nlab = 0, cap = 0;
    int rc = CS_OK;
    if (!split_dir || !class_dir) {
        rc = nomem(err, dir);
        goto done;
    }
    /* Labels come from the train split's class folders, so a test split that
     * lacks a class still numbers the others as training did. */
    if (train || !is_dir(class_dir)) {
        free(class_dir);
        class_dir = strdup(split_dir);
        if (!class_dir) {
            rc = nomem(err, dir);
            goto done;
        }
    }
    if ((rc = list_dir(split_dir, 1, &here, err)) != CS_OK)
        goto done;
    if ((rc = list_dir(class_dir, 1, &classes, err)) != CS_OK)
        goto done;
    if (classes.n == 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: no class folders (expected %s/CLASS/*.png|jpg|jpeg)", class_dir,
                          class_dir);
        goto done;
    }
    if (here.n == 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: no class folders (expected %s/CLASS/*.png|jpg|jpeg)", split_dir,
                          split_dir);
        goto done;
    }
    for (int i = 0; i < here.n; i++) {
        char **found = bsearch(&here.v[i], classes.v, (size_t)classes.n, sizeof(char *), cmp_str);
        if (!found) {
            rc = cs_error_set(err, CS_ERR_IO, "%s/%s: class folder not in %s (the classes are the train split's)",
                              split_dir, here.v[i], class_dir);
            goto done;
        }
        int label = (int)(found - classes.v);
        char *cdir = str_printf("%s/%s", split_dir, here.v[i]);
        if (!cdir) {
            rc = nomem(err, split_dir);
            goto done;
        }
        name_list imgs;
        rc = list_dir(cdir, 0, &imgs, err);
        if (rc == CS_OK && imgs.n == 0)
            rc = cs_error_set(err, CS_ERR_IO, "%s: empty class folder (no .png, .jpg or .jpeg files)", cdir);
        for (int k = 0; rc == CS_OK && k < imgs.n; k++) {
            if (nlab == cap) {
                cap = cap ? cap * 2 : 256;
                int *more = realloc(labels, sizeof(int) * (size_t)cap);
                if (!more) {
                    rc = nomem(err, cdir);
                    break;
                }
                labels = more;
            }
            labels[nlab++] = label;
            if (names_push(&files, str_printf("%s/%s", cdir, imgs.v[k])) != CS_OK)
                rc = nomem(err, cdir);
        }
        names_free(&imgs);
        free(cdir);
        if (rc != CS_OK)
            goto done;
    }
    size_t img_bytes = (size_t)channels * (size_t)size * (size_t)size;
    d->c = channels;
    d->h = d->w = size;
    d->pixels = malloc(img_bytes * (size_t)files.n);
    if (!d->pixels) {
        rc = nomem(err, split_dir);
        goto done;
    }
    for (int i = 0; i < files.n; i++)
        if ((rc = load_image(files.v[i], size, channels, d->pixels + img_bytes * (size_t)i, err)) != CS_OK)
            goto done;
    d->n = files.n;
    d->labels = labels;
    labels = NULL;
    d->n_classes = classes.n;
    d->class_names = classes.v; /* taken over */
    memset(&classes, 0, sizeof classes);
done:
    names_free(&classes);
    names_free(&here);
    names_free(&files);
    free(labels);
    free(split_dir);
    free(class_dir);
    return rc;
}

/* The lines of an image list: path (relative to dir unless absolute) and label. */
typedef struct list_entries {
    name_list paths;
    int *labels;
    int n, cap, max_label;
} list_entries;

#define MAX_LIST_LABEL 1000000
#define MAX_LIST_LINE 8192

static void entries_free(list_entries *l)
{
    names_free(&l->paths);
    free(l->labels);
    memset(l, 0, sizeof *l);
}

/* Reads DIR/NAME.lst: one "path label" a line (space or tab between, the label
 * last), blank lines and lines starting with '#' skipped. As in the authors'
 * lists, a first line "ROOT -1" names the folder the other paths are relative
 * to (itself relative to DIR unless absolute); without one, DIR is. */
static int read_list(const char *dir, const char *name, list_entries *l, cs_error *err)
{
    memset(l, 0, sizeof *l);
    l->max_label = -1;
    char *path = str_printf("%s/%s.lst", dir, name);
    if (!path)
        return nomem(err, dir);
    FILE *f = fopen(path, "r");
    int rc = CS_OK;
    if (!f) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: %s (expected lines 'relative/path label')",
                          path, errno == ENOENT ? "missing file" : strerror(errno));
        free(path);
        return rc;
    }
    char *line = malloc(MAX_LIST_LINE + 2), *root = NULL;
    int first = 1;
    if (!line)
        rc = nomem(err, path);
    for (int ln = 1; rc == CS_OK && fgets(line, MAX_LIST_LINE + 2, f); ln++) {
        size_t len = strlen(line);
        if (len > MAX_LIST_LINE && line[len - 1] != '\n') {
            rc = cs_error_set(err, CS_ERR_IO, "%s:%d: line longer than %d bytes", path, ln, MAX_LIST_LINE);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
            line[--len] = '\0';
        if (!len || line[0] == '#')
            continue;
        char *sep = line + len;
        while (sep > line && sep[-1] != ' ' && sep[-1] != '\t')
            sep--;
        char *end = NULL;
        errno = 0;
        long label = sep > line ? strtol(sep, &end, 10) : -2;
        char *pend = sep;
        while (pend > line && (pend[-1] == ' ' || pend[-1] == '\t'))
            pend--;
        if (first && label == -1 && !strcmp(sep, "-1") && pend > line) { /* the root line */
            first = 0;
            *pend = '\0';
            root = line[0] == '/' ? strdup(line) : str_printf("%s/%s", dir, line);
            if (!root)
                rc = nomem(err, path);
            continue;
        }
        first = 0;
        if (sep == line || pend == line || !end || *end || errno || label < 0 || label > MAX_LIST_LABEL ||
            !(*sep >= '0' && *sep <= '9')) {
            rc = cs_error_set(err, CS_ERR_IO, "%s:%d: expected 'relative/path label' with a label from 0 to %d",
                              path, ln, MAX_LIST_LABEL);
            break;
        }
        *pend = '\0';
        char *img = line[0] == '/' ? strdup(line) : str_printf("%s/%s", root ? root : dir, line);
        if (!img || names_push(&l->paths, img) != CS_OK) {
            rc = nomem(err, path);
            break;
        }
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 256;
            int *more = realloc(l->labels, sizeof(int) * (size_t)l->cap);
            if (!more) {
                rc = nomem(err, path);
                break;
            }
            l->labels = more;
        }
        l->labels[l->n++] = (int)label;
        l->max_label = (int)label > l->max_label ? (int)label : l->max_label;
    }
    if (rc == CS_OK && ferror(f))
        rc = cs_error_set(err, CS_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (rc == CS_OK && l->n == 0)
        rc = cs_error_set(err, CS_ERR_IO, "%s: no images listed (expected lines 'relative/path label')", path);
    fclose(f);
    free(line);
    free(root);
    free(path);
    if (rc != CS_OK)
        entries_free(l);
    return rc;
}

static int load_list(cs_dataset *d, const char *dir, int train, int size, int channels, cs_error *err)
{
    /* the classes are the train list's labels 0 .. K-1, each with an image */
    list_entries tr, te;
    int rc = read_list(dir, "train", &tr, err);
    if (rc != CS_OK)
        return rc;
    const int k = tr.max_label + 1;
    unsigned char *seen = calloc((size_t)k, 1);
    if (!seen) {
        entries_free(&tr);
        return nomem(err, dir);
    }
    for (int i = 0; i < tr.n; i++)
        seen[tr.labels[i]] = 1;
    for (int c = 0; c < k && rc == CS_OK; c++)
        if (!seen[c])
            rc = cs_error_set(err, CS_ERR_IO, "%s/train.lst: class %d has no image (labels must be 0 .. %d, each used)",
                              dir, c, k - 1);
    free(seen);
    list_entries *l = &tr;
    if (rc == CS_OK && !train) {
        if ((rc = read_list(dir, "test", &te, err)) == CS_OK) {
            l = &te;
            if (te.max_label >= k)
                rc = cs_error_set(err, CS_ERR_IO, "%s/test.lst: label %d, but train.lst has classes 0 .. %d", dir,
                                  te.max_label, k - 1);
        }
    }
    if (rc != CS_OK) {
        if (l != &tr)
            entries_free(l);
        entries_free(&tr);
        return rc;
    }
    size_t img_bytes = (size_t)channels * (size_t)size * (size_t)size;
    d->c = channels;
    d->h = d->w = size;
    d->pixels = malloc(img_bytes * (size_t)l->n);
    if (!d->pixels)
        rc = nomem(err, dir);
    for (int i = 0; rc == CS_OK && i < l->n; i++)
        rc = load_image(l->paths.v[i], size, channels, d->pixels + img_bytes * (size_t)i, err);
    if (rc == CS_OK)
        rc = number_names(d, k, err);
    if (rc == CS_OK) {
        d->n = l->n;
        d->labels = l->labels;
        l->labels = NULL;
        d->n_classes = k;
    }
    if (l != &tr)
        entries_free(l);
    entries_free(&tr);
    return rc;
}

int cs_dataset_load(cs_data_format fmt, const char *dir, int train, int size, int channels, cs_dataset **out,
                    cs_error *err)
{
    if (!out)
        return cs_error_set(err, CS_ERR_ARG, "cs_dataset_load: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return cs_error_set(err, CS_ERR_ARG, "data set folder: empty path");
    if (fmt == CS_DATA_FOLDER || fmt == CS_DATA_LIST) {
        if (size == 0)
            size = 32;
        if (channels == 0)
            channels = 3;
        if (size < 1 || size > MAX_FOLDER_SIZE)
            return cs_error_set(err, CS_ERR_ARG, "%s: image size %d: expected 1 .. %d", dir, size, MAX_FOLDER_SIZE);
        if (channels != 1 && channels != 3)
            return cs_error_set(err, CS_ERR_ARG, "%s: channels %d: expected 1 or 3", dir, channels);
    }
    cs_dataset *d = dataset_new(err);
    if (!d)
        return CS_ERR_NOMEM;
    int rc;
    switch (fmt) {
    case CS_DATA_IDX: rc = load_idx(d, dir, train, err); break;
    case CS_DATA_CIFAR10: rc = load_cifar(d, dir, train, 0, err); break;
    case CS_DATA_CIFAR100: rc = load_cifar(d, dir, train, 1, err); break;
    case CS_DATA_FOLDER: rc = load_folder(d, dir, train, size, channels, err); break;
    case CS_DATA_LIST: rc = load_list(d, dir, train, size, channels, err); break;
    default: rc = cs_error_set(err, CS_ERR_ARG, "%s: unknown data set format %d", dir, (int)fmt); break;
    }
    if (rc != CS_OK) {
        cs_dataset_free(d);
        return rc;
    }
    *out = d;
    return CS_OK;
}
