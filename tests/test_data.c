/* test_data.c: IDX / CIFAR / image-folder loading and their error lines; the background batcher and its augmentation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "runtime/data.h"
#include "testutil.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- writing fixtures ---- */

/* tmpdir/name (static buffer per call slot). */
static const char *tpath(const char *name)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    return p;
}

static void mkdirs(const char *name)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tu_tmpdir(), name);
    for (char *s = buf + strlen(tu_tmpdir()) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(buf, 0755);
            *s = '/';
        }
    mkdir(buf, 0755);
}

static void write_bytes(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(tpath(name), "wb");
    ck_assert_msg(f != NULL, "cannot write %s", name);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void write_gz(const char *name, const void *data, size_t n)
{
    gzFile g = gzopen(tpath(name), "wb");
    ck_assert_msg(g != NULL, "cannot write %s", name);
    ck_assert(gzwrite(g, data, (unsigned)n) == (int)n);
    gzclose(g);
}

static uint8_t *read_back(const char *name, size_t *n)
{
    FILE *f = fopen(tpath(name), "rb");
    ck_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*n + 1);
    ck_assert(fread(buf, 1, *n, f) == *n);
    fclose(f);
    return buf;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A 2-pixel row 0, 200 resized bilinearly to 4 pixels. */
static const int up_row[4] = {0, 50, 150, 200};

/* Pixel k of image i in the IDX fixtures. */
static uint8_t idx_pixel(int i, int k) { return (uint8_t)(i * 37 + k * 5 + 1); }

/* An IDX image file: n images of h x w, magic given; *size gets the byte count. */
static uint8_t *idx_images(uint32_t magic, int n, int h, int w, size_t *size)
{
    *size = 16 + (size_t)n * h * w;
    uint8_t *b = malloc(*size);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < h * w; k++)
            b[16 + (size_t)i * h * w + k] = idx_pixel(i, k);
    return b;
}

static uint8_t *idx_labels(uint32_t magic, int n, const uint8_t *labels, size_t *size)
{
    *size = 8 + (size_t)n;
    uint8_t *b = malloc(*size);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    memcpy(b + 8, labels, (size_t)n);
    return b;
}

static const uint8_t idx_lab[3] = {0, 9, 4};

/* A valid IDX pair (3 images of 2x3) for split prefix ("train" / "t10k"), plain or gzipped. */
static void write_idx_pair(const char *prefix, int gz)
{
    char name[128];
    size_t n;
    uint8_t *img = idx_images(0x803, 3, 2, 3, &n);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(name, img, n);
    free(img);
    uint8_t *lab = idx_labels(0x801, 3, idx_lab, &n);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(name, lab, n);
    free(lab);
}

static void check_idx_pair(const cs_dataset *d)
{
    ck_assert_int_eq(d->n, 3);
    ck_assert_int_eq(d->c, 1);
    ck_assert_int_eq(d->h, 2);
    ck_assert_int_eq(d->w, 3);
    ck_assert_int_eq(d->n_classes, 10);
    ck_assert_str_eq(d->class_names[0], "0");
    ck_assert_str_eq(d->class_names[9], "9");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(d->labels[i], idx_lab[i]);
        for (int k = 0; k < 6; k++)
            ck_assert_int_eq(d->pixels[i * 6 + k], idx_pixel(i, k));
    }
}

static void write_png(const char *name, int w, int h, int format, const uint8_t *px)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = (png_uint_32)format;
    ck_assert_msg(png_image_write_to_file(&img, tpath(name), 0, px, 0, NULL), "png write %s: %s", name,
                  img.message);
}

static void write_jpeg(const char *name, int w, int h, int comps, const uint8_t *px)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    FILE *f = fopen(tpath(name), "wb");
    ck_assert(f != NULL);
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* A failed load: an error status, *out NULL, one line naming the file and the cause. */
static void expect_load_error(cs_data_format fmt, const char *dir, int train, const char *file, const char *cause,
                              const char *cause2)
{
    static cs_dataset sentinel;
    cs_dataset *d = &sentinel; /* must be reset to NULL */
    cs_error err;
    cs_error_clear(&err);
    int rc = cs_dataset_load(fmt, dir, train, 0, 0, &d, &err);
    ck_assert_msg(rc < 0, "load of %s succeeded, expected an error about %s", dir, file);
    ck_assert_int_eq(err.status, rc);
    ck_assert_ptr_null(d);
    ck_assert_msg(strchr(err.msg, '\n') == NULL, "more than one line: %s", err.msg);
    ck_assert_msg(strstr(err.msg, file) != NULL, "'%s' does not name %s", err.msg, file);
    ck_assert_msg(strstr(err.msg, cause) != NULL, "'%s' does not say '%s'", err.msg, cause);
    if (cause2)
        ck_assert_msg(strstr(err.msg, cause2) != NULL, "'%s' does not say '%s'", err.msg, cause2);
}

static cs_dataset *load_ok(cs_data_format fmt, const char *dir, int train, int size, int channels)
{
    cs_dataset *d = NULL;
    cs_error err;
    cs_error_clear(&err);
    int rc = cs_dataset_load(fmt, dir, train, size, channels, &d, &err);
    ck_assert_msg(rc == 0, "load %s: %s", dir, err.msg);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* ---- formats ---- */

START_TEST(test_format_names)
{
    static const char *names[] = {"idx", "cifar10", "cifar100", "folder", "list"};
    for (int i = 0; i < 5; i++) {
        cs_data_format f;
        ck_assert_int_eq(cs_data_format_parse(names[i], &f), 0);
        ck_assert_int_eq(f, i);
        ck_assert_str_eq(cs_data_format_name(f), names[i]);
    }
    cs_data_format f = CS_DATA_IDX;
    ck_assert_int_eq(cs_data_format_parse("mnist", &f), CS_ERR_ARG);
    ck_assert_int_eq(cs_data_format_parse(NULL, &f), CS_ERR_ARG);
    ck_assert_ptr_null(cs_data_format_name((cs_data_format)7));
}
END_TEST

START_TEST(test_idx_plain)
{
    write_idx_pair("train", 0);
    write_idx_pair("t10k", 0);
    cs_dataset *d = load_ok(CS_DATA_IDX, tu_tmpdir(), 1, 0, 0);
    check_idx_pair(d);
    cs_dataset_free(d);
    d = load_ok(CS_DATA_IDX, tu_tmpdir(), 0, 0, 0);
    check_idx_pair(d);
    cs_dataset_free(d);
    cs_dataset_free(NULL);
}
END_TEST

START_TEST(test_idx_gzip)
{
    write_idx_pair("train", 1);
    write_idx_pair("t10k", 1);
    cs_dataset *d = load_ok(CS_DATA_IDX, tu_tmpdir(), 1, 0, 0);
    check_idx_pair(d);
    cs_dataset_free(d);
    d = load_ok(CS_DATA_IDX, tu_tmpdir(), 0, 0, 0);
    check_idx_pair(d);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_idx_missing)
{
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte", "missing file", NULL);
    write_idx_pair("train", 1);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 0, "t10k-images-idx3-ubyte", "missing file", NULL);
    unlink(tpath("train-labels-idx1-ubyte.gz"));
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-labels-idx1-ubyte", "missing file", NULL);
    expect_load_error(CS_DATA_IDX, tpath("no-such-dir"), 1, "no-such-dir/train-images-idx3-ubyte", "missing file",
                      NULL);
}
END_TEST

START_TEST(test_idx_truncated)
{
    write_idx_pair("train", 0);
    size_t n;
    uint8_t *img = idx_images(0x803, 3, 2, 3, &n); /* 16 + 18 = 34 bytes */
    write_bytes("train-images-idx3-ubyte", img, n - 4);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte", "truncated", "34 bytes in all, the file has 30");
    write_bytes("train-images-idx3-ubyte", img, 10);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte", "truncated",
                      "10 bytes, shorter than the 16-byte IDX header");
    free(img);
    img = idx_images(0x803, 3, 2, 3, &n);
    write_bytes("train-images-idx3-ubyte", img, n);
    uint8_t *lab = idx_labels(0x801, 3, idx_lab, &n);
    write_bytes("train-labels-idx1-ubyte", lab, n - 1);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-labels-idx1-ubyte", "truncated",
                      "3 labels, 11 bytes in all, the file has 10");
    free(lab);
    free(img);
}
END_TEST

/* A gzip bomb: a 3 MB-class stream that inflates far past what its header
 * announces is refused after reading the announced bytes and one more, never
 * inflated whole (issue 13 item 5: 3 GiB was inflated before the size check). */
START_TEST(test_idx_gzip_bomb)
{
    write_idx_pair("train", 1);
    size_t n;
    uint8_t *img = idx_images(0x803, 3, 2, 3, &n);
    gzFile g = gzopen(tpath("train-images-idx3-ubyte.gz"), "wb9");
    ck_assert_ptr_nonnull(g);
    ck_assert(gzwrite(g, img, (unsigned)n) == (int)n);
    static uint8_t zeros[1 << 20];
    for (int i = 0; i < 64; i++) /* 64 MiB of zeros after the images: a 64 kB file */
        ck_assert(gzwrite(g, zeros, sizeof zeros) == (int)sizeof zeros);
    gzclose(g);
    free(img);
    /* "has more", not "has 67108898": it read the 34 announced bytes and one more, and stopped */
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte.gz", "wrong size",
                      "34 bytes in all, the file has more");
}
END_TEST

START_TEST(test_idx_truncated_gzip)
{
    write_idx_pair("train", 1);
    size_t n;
    uint8_t *img = idx_images(0x803, 300, 28, 28, &n);
    write_gz("train-images-idx3-ubyte.gz", img, n);
    free(img);
    uint8_t *gz = read_back("train-images-idx3-ubyte.gz", &n);
    write_bytes("train-images-idx3-ubyte.gz", gz, n / 2);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte.gz", "truncated",
                      "the gzip stream ends early");
    /* Only the 8-byte trailer (CRC, length) cut off: the data is all there, the file is not. */
    write_bytes("train-images-idx3-ubyte.gz", gz, n - 4);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte.gz", "truncated",
                      "the gzip stream ends early");
    /* Flipped bytes in the middle: zlib's check fails. */
    gz[n / 2] ^= 0x55;
    gz[n / 2 + 1] ^= 0xaa;
    gz[n / 2 + 2] ^= 0x55;
    write_bytes("train-images-idx3-ubyte.gz", gz, n);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte.gz", "corrupt gzip data", NULL);
    free(gz);
}
END_TEST

START_TEST(test_idx_bad_magic)
{
    write_idx_pair("train", 0);
    size_t n;
    /* The labels file where the images should be: magic 0x801. */
    uint8_t *lab = idx_labels(0x801, 3, idx_lab, &n);
    write_bytes("train-images-idx3-ubyte", lab, n);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-images-idx3-ubyte", "bad magic number",
                      "expected 0x00000803 (IDX images: unsigned bytes, 3 dimensions), found 0x00000801");
    uint8_t *img = idx_images(0x803, 3, 2, 3, &n);
    write_bytes("train-images-idx3-ubyte", img, n);
    free(img);
    img = idx_images(0x00000c03, 3, 2, 3, &n); /* int32 elements */
    write_bytes("train-labels-idx1-ubyte", img, n);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-labels-idx1-ubyte", "bad magic number",
                      "expected 0x00000801 (IDX labels: unsigned bytes, 1 dimension), found 0x00000c03");
    free(img);
    free(lab);
}
END_TEST

START_TEST(test_idx_count_mismatch)
{
    write_idx_pair("train", 0);
    size_t n;
    uint8_t *lab = idx_labels(0x801, 2, idx_lab, &n);
    write_bytes("train-labels-idx1-ubyte", lab, n);
    free(lab);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-labels-idx1-ubyte", "2 labels, but ",
                      "train-images-idx3-ubyte has 3 images");
}
END_TEST

START_TEST(test_idx_label_range)
{
    write_idx_pair("train", 1);
    static const uint8_t bad[3] = {1, 10, 2};
    size_t n;
    uint8_t *lab = idx_labels(0x801, 3, bad, &n);
    write_gz("train-labels-idx1-ubyte.gz", lab, n);
    free(lab);
    expect_load_error(CS_DATA_IDX, tu_tmpdir(), 1, "train-labels-idx1-ubyte.gz", "label 10 of image 1 is out of range",
                      "expected 0..9");
}
END_TEST

/* CIFAR fixtures: record r of file f has label (f + r) % classes and pixels from (f, r, k). */
static uint8_t cifar_pixel(int f, int r, int k) { return (uint8_t)(f * 101 + r * 13 + k * 7); }

static void write_cifar(const char *name, int f, int records, int cifar100, size_t cut)
{
    size_t rec = (size_t)(cifar100 ? 2 : 1) + 3072;
    uint8_t *b = malloc(rec * (size_t)records + 1);
    for (int r = 0; r < records; r++) {
        uint8_t *p = b + rec * (size_t)r;
        if (cifar100) {
            *p++ = (uint8_t)((f + r) % 20);
            *p++ = (uint8_t)((f * 7 + r * 31) % 100);
        } else {
            *p++ = (uint8_t)((f + r) % 10);
        }
        for (int k = 0; k < 3072; k++)
            p[k] = cifar_pixel(f, r, k);
    }
    write_bytes(name, b, rec * (size_t)records - cut);
    free(b);
}

static void write_cifar10_all(void)
{
    char name[64];
    for (int f = 1; f <= 5; f++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", f);
        write_cifar(name, f, f % 2 + 1, 0, 0); /* 2, 1, 2, 1, 2 records */
    }
    write_cifar("test_batch.bin", 0, 3, 0, 0);
}

START_TEST(test_cifar10)
{
    write_cifar10_all();
    cs_dataset *d = load_ok(CS_DATA_CIFAR10, tu_tmpdir(), 1, 0, 0);
    ck_assert_int_eq(d->n, 8);
    ck_assert_int_eq(d->c, 3);
    ck_assert_int_eq(d->h, 32);
    ck_assert_int_eq(d->w, 32);
    ck_assert_int_eq(d->n_classes, 10);
    ck_assert_str_eq(d->class_names[3], "3");
    int i = 0;
    for (int f = 1; f <= 5; f++)
        for (int r = 0; r < f % 2 + 1; r++, i++) {
            ck_assert_int_eq(d->labels[i], (f + r) % 10);
            for (int k = 0; k < 3072; k += 97)
                ck_assert_int_eq(d->pixels[(size_t)i * 3072 + k], cifar_pixel(f, r, k));
            ck_assert_int_eq(d->pixels[(size_t)i * 3072 + 3071], cifar_pixel(f, r, 3071));
        }
    cs_dataset_free(d);

    /* The test split, with the class names of batches.meta.txt. */
    tu_write("batches.meta.txt", "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
    d = load_ok(CS_DATA_CIFAR10, tu_tmpdir(), 0, 0, 0);
    ck_assert_int_eq(d->n, 3);
    for (int r = 0; r < 3; r++) {
        ck_assert_int_eq(d->labels[r], r);
        ck_assert_int_eq(d->pixels[(size_t)r * 3072 + 1024], cifar_pixel(0, r, 1024)); /* first green byte */
    }
    ck_assert_str_eq(d->class_names[0], "airplane");
    ck_assert_str_eq(d->class_names[9], "truck");
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_cifar10_errors)
{
    write_cifar10_all();
    unlink(tpath("data_batch_3.bin"));
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 1, "data_batch_3.bin", "missing file", NULL);
    write_cifar("data_batch_3.bin", 3, 2, 0, 5);
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 1, "data_batch_3.bin", "truncated",
                      "6141 bytes is not a whole number of 3073-byte records");
    write_cifar("data_batch_3.bin", 3, 2, 0, 0);
    write_bytes("data_batch_4.bin", "", 0);
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 1, "data_batch_4.bin", "empty file", NULL);
    write_cifar("data_batch_4.bin", 6, 2, 0, 0);
    uint8_t recs[3 * 3073] = {0};
    recs[0] = 8;
    recs[3073] = 9;
    recs[2 * 3073] = 10;
    write_bytes("test_batch.bin", recs, sizeof recs);
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 0, "test_batch.bin", "label 10 of record 2 is out of range",
                      "expected 0..9");
    unlink(tpath("test_batch.bin"));
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 0, "test_batch.bin", "missing file", NULL);
    /* A CIFAR-100 file (3074-byte records) read as CIFAR-10. */
    write_cifar("test_batch.bin", 0, 3073, 1, 0);
    expect_load_error(CS_DATA_CIFAR10, tu_tmpdir(), 0, "test_batch.bin", "label", "out of range");
}
END_TEST

START_TEST(test_cifar100)
{
    write_cifar("train.bin", 1, 4, 1, 0);
    write_cifar("test.bin", 2, 2, 1, 0);
    cs_dataset *d = load_ok(CS_DATA_CIFAR100, tu_tmpdir(), 1, 0, 0);
    ck_assert_int_eq(d->n, 4);
    ck_assert_int_eq(d->c, 3);
    ck_assert_int_eq(d->n_classes, 100);
    for (int r = 0; r < 4; r++) {
        ck_assert_int_eq(d->labels[r], (7 + r * 31) % 100); /* fine labels */
        for (int k = 0; k < 3072; k += 61)
            ck_assert_int_eq(d->pixels[(size_t)r * 3072 + k], cifar_pixel(1, r, k));
    }
    cs_dataset_free(d);
    d = load_ok(CS_DATA_CIFAR100, tu_tmpdir(), 0, 0, 0);
    ck_assert_int_eq(d->n, 2);
    ck_assert_int_eq(d->labels[1], (14 + 31) % 100);
    ck_assert_str_eq(d->class_names[99], "99");
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_cifar100_errors)
{
    expect_load_error(CS_DATA_CIFAR100, tu_tmpdir(), 1, "train.bin", "missing file", NULL);
    write_cifar("train.bin", 1, 3, 1, 1);
    expect_load_error(CS_DATA_CIFAR100, tu_tmpdir(), 1, "train.bin", "truncated",
                      "9221 bytes is not a whole number of 3074-byte records");
    uint8_t rec[3074] = {3, 100};
    write_bytes("test.bin", rec, sizeof rec);
    expect_load_error(CS_DATA_CIFAR100, tu_tmpdir(), 0, "test.bin", "fine label 100 of record 0 is out of range",
                      "expected 0..99");
    rec[0] = 20;
    rec[1] = 5;
    write_bytes("test.bin", rec, sizeof rec);
    expect_load_error(CS_DATA_CIFAR100, tu_tmpdir(), 0, "test.bin", "coarse label 20 of record 0 is out of range",
                      NULL);
}
END_TEST

/* ---- image folders ---- */

/* 4x4 RGB: channel ch of pixel (y, x) = rgb_value(ch, y, x). */
static uint8_t rgb_value(int ch, int y, int x) { return (uint8_t)(ch * 80 + y * 16 + x * 3 + 1); }

static void write_folder_fixture(void)
{
    mkdirs("ds/train/cat");
    mkdirs("ds/train/dog");
    mkdirs("ds/train/.hidden");
    mkdirs("ds/test/dog");
    uint8_t rgb[4 * 4 * 3], rgba[4 * 4 * 4];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int ch = 0; ch < 3; ch++) {
                rgb[(y * 4 + x) * 3 + ch] = rgb_value(ch, y, x);
                rgba[(y * 4 + x) * 4 + ch] = rgb_value(ch, y, x);
                rgba[(y * 4 + x) * 4 + 3] = (uint8_t)(x * 60); /* alpha is dropped */
            }
    write_png("ds/train/cat/a.png", 4, 4, PNG_FORMAT_RGB, rgb);
    write_png("ds/train/cat/b.PNG", 4, 4, PNG_FORMAT_RGBA, rgba);
    tu_write("ds/train/cat/notes.txt", "not an image; ignored\n");
    /* 2x2 gray, columns 0 and 200: resized to 4x4 it is 0, 50, 150, 200 on every row. */
    static const uint8_t g2[4] = {0, 200, 0, 200};
    write_png("ds/train/dog/c.png", 2, 2, PNG_FORMAT_GRAY, g2);
    /* 8x8 gray JPEG of one value (quality 100): decodes exactly; 8 -> 4 averages to the same. */
    uint8_t g8[64];
    memset(g8, 77, sizeof g8);
    write_jpeg("ds/train/dog/d.jpg", 8, 8, 1, g8);
    /* 4x4 RGB JPEG of one colour. */
    uint8_t c16[48];
    for (int i = 0; i < 16; i++) {
        c16[3 * i] = 200;
        c16[3 * i + 1] = 100;
        c16[3 * i + 2] = 50;
    }
    write_jpeg("ds/test/dog/e.jpeg", 4, 4, 3, c16);
}

START_TEST(test_folder_rgb)
{
    write_folder_fixture();
    cs_dataset *d = load_ok(CS_DATA_FOLDER, tpath("ds"), 1, 4, 3);
    ck_assert_int_eq(d->n, 4);
    ck_assert_int_eq(d->c, 3);
    ck_assert_int_eq(d->h, 4);
    ck_assert_int_eq(d->w, 4);
    ck_assert_int_eq(d->n_classes, 2);
    ck_assert_str_eq(d->class_names[0], "cat");
    ck_assert_str_eq(d->class_names[1], "dog");
    /* Sorted by name: a.png, b.PNG (cat), c.png, d.jpg (dog). */
    static const int want_labels[4] = {0, 0, 1, 1};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(d->labels[i], want_labels[i]);
    for (int img = 0; img < 2; img++)
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++)
                    ck_assert_int_eq(d->pixels[img * 48 + ch * 16 + y * 4 + x], rgb_value(ch, y, x));
    static const int up[4] = {0, 50, 150, 200};
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                ck_assert_int_eq(d->pixels[2 * 48 + ch * 16 + y * 4 + x], up[x]);
                ck_assert_int_eq(d->pixels[3 * 48 + ch * 16 + y * 4 + x], 77);
            }
    cs_dataset_free(d);

    /* The test split numbers its one class as the train split does. */
    d = load_ok(CS_DATA_FOLDER, tpath("ds"), 0, 4, 3);
    ck_assert_int_eq(d->n, 1);
    ck_assert_int_eq(d->n_classes, 2);
    ck_assert_int_eq(d->labels[0], 1);
    static const int colour[3] = {200, 100, 50};
    for (int ch = 0; ch < 3; ch++)
        for (int k = 0; k < 16; k++)
            ck_assert_msg(abs(d->pixels[ch * 16 + k] - colour[ch]) <= 2, "JPEG channel %d: %d, expected %d", ch,
                          d->pixels[ch * 16 + k], colour[ch]);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_folder_gray_and_resize)
{
    write_folder_fixture();
    /* Default size 32: every image is 32x32. */
    cs_dataset *d = load_ok(CS_DATA_FOLDER, tpath("ds"), 1, 0, 0);
    ck_assert_int_eq(d->c, 3);
    ck_assert_int_eq(d->h, 32);
    ck_assert_int_eq(d->w, 32);
    for (int k = 0; k < 3 * 32 * 32; k++)
        ck_assert_int_eq(d->pixels[3 * 3 * 1024 + k], 77);
    cs_dataset_free(d);

    /* One channel: PIL's luma of the RGB PNG. */
    d = load_ok(CS_DATA_FOLDER, tpath("ds"), 1, 4, 1);
    ck_assert_int_eq(d->c, 1);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            unsigned want = (rgb_value(0, y, x) * 19595u + rgb_value(1, y, x) * 38470u + rgb_value(2, y, x) * 7471u +
                             0x8000u) >> 16;
            ck_assert_int_eq(d->pixels[y * 4 + x], want);
            ck_assert_int_eq(d->pixels[32 + y * 4 + x], up_row[x]); /* gray stays exact */
        }
    cs_dataset_free(d);

    /* Shrinking 4 -> 2 widens the triangle to 3 taps (0.75, 0.75, 0.25) / 1.75. */
    mkdirs("shrink/train/only");
    uint8_t g[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            g[y * 4 + x] = (uint8_t)(70 * x);
    write_png("shrink/train/only/x.png", 4, 4, PNG_FORMAT_GRAY, g);
    d = load_ok(CS_DATA_FOLDER, tpath("shrink"), 1, 2, 1);
    ck_assert_int_eq(d->n, 1);
    static const int want[4] = {50, 160, 50, 160};
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(d->pixels[k], want[k]);
    cs_dataset_free(d);
}
END_TEST

/* The AdvisIL authors' image lists: DIR/{train,test}.lst, "relative/path label". */
START_TEST(test_list)
{
    write_folder_fixture(); /* ds/train/cat/a.png, b.PNG, dog/c.png, d.jpg; ds/test/dog/e.jpeg */
    char abs_line[PATH_MAX + 16];
    snprintf(abs_line, sizeof abs_line, "%s 1\n", tpath("ds/train/dog/d.jpg"));
    char text[PATH_MAX + 256];
    /* a comment, a blank line, tabs, CRLF, an absolute path; order as listed */
    snprintf(text, sizeof text, "# cats then dogs\n\ntrain/dog/c.png\t1\r\ntrain/cat/a.png 0\ntrain/cat/b.PNG   0\n%s",
             abs_line);
    tu_write("ds/train.lst", text);
    tu_write("ds/test.lst", "test/dog/e.jpeg 1\n");
    cs_dataset *d = load_ok(CS_DATA_LIST, tpath("ds"), 1, 4, 3);
    ck_assert_int_eq(d->n, 4);
    ck_assert_int_eq(d->n_classes, 2);
    ck_assert_str_eq(d->class_names[1], "1");
    static const int want[4] = {1, 0, 0, 1};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(d->labels[i], want[i]);
    /* the second listed image is a.png: the fixture's gradient, exactly */
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                ck_assert_int_eq(d->pixels[48 + ch * 16 + y * 4 + x], rgb_value(ch, y, x));
    ck_assert_int_eq(d->pixels[3 * 48], 77); /* d.jpg, gray 77, by its absolute path */
    cs_dataset_free(d);
    d = load_ok(CS_DATA_LIST, tpath("ds"), 0, 4, 3);
    ck_assert_int_eq(d->n, 1);
    ck_assert_int_eq(d->n_classes, 2); /* the train list's classes */
    ck_assert_int_eq(d->labels[0], 1);
    cs_dataset_free(d);
    /* the authors' form: a first line "ROOT -1", paths relative to ROOT */
    tu_write("ds/test.lst", "test -1\ndog/e.jpeg 1\n");
    d = load_ok(CS_DATA_LIST, tpath("ds"), 0, 4, 3);
    ck_assert_int_eq(d->n, 1);
    ck_assert_int_eq(d->pixels[0], 200); /* e.jpeg: red 200 */
    cs_dataset_free(d);
    snprintf(text, sizeof text, "%s -1\ncat/a.png 0\ndog/c.png 1\n", tpath("ds/train"));
    tu_write("ds/train.lst", text);
    d = load_ok(CS_DATA_LIST, tpath("ds"), 1, 4, 3);
    ck_assert_int_eq(d->n, 2);
    ck_assert_int_eq(d->labels[1], 1);
    cs_dataset_free(d);
    cs_data_format f;
    ck_assert_int_eq(cs_data_format_parse("list", &f), 0);
    ck_assert_int_eq(f, CS_DATA_LIST);
}
END_TEST

START_TEST(test_list_errors)
{
    write_folder_fixture();
    unlink(tpath("ds/train.lst"));
    expect_load_error(CS_DATA_LIST, tpath("ds"), 1, "ds/train.lst", "missing file", "relative/path label");
    static const char *bad[] = {"train/cat/a.png\n", "train/cat/a.png x\n", "train/cat/a.png -1\n",
                                "train/cat/a.png 1.5\n", "train/cat/a.png 2000000\n", "7\n",
                                "train -1\n"}; /* a root line only comes first */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "train/cat/b.PNG 0\n%s", bad[i]);
        tu_write("ds/train.lst", text);
        expect_load_error(CS_DATA_LIST, tpath("ds"), 1, "ds/train.lst:2", "expected 'relative/path label'", NULL);
    }
    tu_write("ds/train.lst", "# nothing\n\n");
    expect_load_error(CS_DATA_LIST, tpath("ds"), 1, "ds/train.lst", "no images listed", NULL);
    tu_write("ds/train.lst", "train/cat/a.png 0\ntrain/dog/c.png 2\n");
    expect_load_error(CS_DATA_LIST, tpath("ds"), 1, "ds/train.lst", "class 1 has no image", "0 .. 2");
    tu_write("ds/train.lst", "train/cat/a.png 0\ntrain/cat/missing.png 0\n");
    expect_load_error(CS_DATA_LIST, tpath("ds"), 1, "ds/train/cat/missing.png", "", NULL);
    tu_write("ds/train.lst", "train/cat/a.png 0\ntrain/dog/c.png 1\n");
    tu_write("ds/test.lst", "test/dog/e.jpeg 2\n");
    expect_load_error(CS_DATA_LIST, tpath("ds"), 0, "ds/test.lst", "label 2, but train.lst has classes 0 .. 1", NULL);
    unlink(tpath("ds/test.lst"));
    expect_load_error(CS_DATA_LIST, tpath("ds"), 0, "ds/test.lst", "missing file", NULL);
}
END_TEST

START_TEST(test_folder_errors)
{
    expect_load_error(CS_DATA_FOLDER, tpath("nothing"), 1, "nothing/train", "missing folder", NULL);
    mkdirs("e1/train");
    expect_load_error(CS_DATA_FOLDER, tpath("e1"), 1, "e1/train", "no class folders", NULL);
    tu_write("e1/train/stray.png", "x");
    expect_load_error(CS_DATA_FOLDER, tpath("e1"), 1, "e1/train", "no class folders", NULL);

    write_folder_fixture();
    mkdirs("ds/train/emu");
    tu_write("ds/train/emu/readme.txt", "no images here");
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/emu", "empty class folder", NULL);
    rmdir(tpath("ds/train/emu")); /* fails: not empty */
    unlink(tpath("ds/train/emu/readme.txt"));
    rmdir(tpath("ds/train/emu"));

    tu_write("ds/train/dog/z.png", "hello, not a PNG");
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/z.png", "does not decode",
                      "neither PNG nor JPEG");
    write_bytes("ds/train/dog/z.png", "", 0);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/z.png", "does not decode", "empty");
    unlink(tpath("ds/train/dog/z.png"));

    /* A PNG cut short, a PNG with a broken chunk, a JPEG cut short. */
    size_t n;
    uint8_t *png = read_back("ds/train/cat/a.png", &n);
    write_bytes("ds/train/cat/a.png", png, n - 20);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/cat/a.png", "PNG does not decode", "libpng");
    write_bytes("ds/train/cat/a.png", png, 20);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/cat/a.png", "PNG does not decode", "libpng");
    write_bytes("ds/train/cat/a.png", png, n);
    free(png);
    uint8_t *jpg = read_back("ds/train/dog/d.jpg", &n);
    write_bytes("ds/train/dog/d.jpg", jpg, n / 2);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/d.jpg", "JPEG", "truncated");
    /* Whole, but with a precision of 7 bits in its frame header. */
    size_t sof = 0;
    for (size_t i = 2; i + 4 < n && !sof; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0)
            sof = i;
    ck_assert(sof > 0);
    jpg[sof + 4] = 7;
    write_bytes("ds/train/dog/d.jpg", jpg, n);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/d.jpg", "JPEG does not decode", "libjpeg");
    jpg[sof + 4] = 8;
    uint8_t *whole = malloc(n);
    memcpy(whole, jpg, n);
    /* issue 13 item 5: a small file declaring 16000 x 16000 pixels is refused before any allocation */
    jpg[sof + 5] = 16000 >> 8, jpg[sof + 6] = 16000 & 255, jpg[sof + 7] = 16000 >> 8, jpg[sof + 8] = 16000 & 255;
    write_bytes("ds/train/dog/d.jpg", jpg, n);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/d.jpg", "JPEG image is 16000x16000",
                      "more than the 67108864 allowed (data.max_pixels)");
    jpg[sof + 5] = 8000 >> 8, jpg[sof + 6] = 8000 & 255, jpg[sof + 7] = 8000 >> 8, jpg[sof + 8] = 8000 & 255;
    write_bytes("ds/train/dog/d.jpg", jpg, n); /* within the limit, but not in so few bytes */
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/d.jpg", "claims 8000x8000 pixels in a",
                      "damaged or hostile");
    /* the scan cut in the middle by a marker (EOI): damaged data, not a gray image */
    whole[n / 2] = 0xff, whole[n / 2 + 1] = 0xd9;
    write_bytes("ds/train/dog/d.jpg", whole, n / 2 + 2);
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 1, "ds/train/dog/d.jpg", "JPEG", "truncated");
    free(whole);
    free(jpg);
    unlink(tpath("ds/train/dog/d.jpg"));

    /* A test class the train split does not have. */
    mkdirs("ds/test/zebra");
    expect_load_error(CS_DATA_FOLDER, tpath("ds"), 0, "ds/test/zebra", "class folder not in", "ds/train");
    rmdir(tpath("ds/test/zebra"));
    expect_load_error(CS_DATA_FOLDER, tpath("e1"), 0, "e1/test", "missing folder", NULL);

    cs_dataset *d = NULL;
    cs_error err;
    ck_assert_int_eq(cs_dataset_load(CS_DATA_FOLDER, tpath("ds"), 1, 4, 2, &d, &err), CS_ERR_ARG);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err.msg, "channels 2: expected 1 or 3"), "%s", err.msg);
    ck_assert_int_eq(cs_dataset_load(CS_DATA_FOLDER, tpath("ds"), 1, -3, 3, &d, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "image size -3"), "%s", err.msg);
    ck_assert_int_eq(cs_dataset_load((cs_data_format)9, tpath("ds"), 1, 0, 0, &d, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_dataset_load(CS_DATA_IDX, NULL, 1, 0, 0, &d, &err), CS_ERR_ARG);
    /* The fixture itself still loads after all that. */
    d = load_ok(CS_DATA_FOLDER, tpath("ds"), 1, 4, 3);
    ck_assert_int_eq(d->n, 3);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_fashion_mnist)
{
    /* tools/deps.sh installs it (dataset-fashion-mnist): absent is a failure. */
    cs_dataset *d = load_ok(CS_DATA_IDX, FASHION_DIR, 0, 0, 0);
    ck_assert_int_eq(d->n, 10000);
    ck_assert_int_eq(d->c, 1);
    ck_assert_int_eq(d->h, 28);
    ck_assert_int_eq(d->w, 28);
    ck_assert_int_eq(d->n_classes, 10);
    int hist[10] = {0};
    for (int i = 0; i < d->n; i++) {
        ck_assert(d->labels[i] >= 0 && d->labels[i] < 10);
        hist[d->labels[i]]++;
    }
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(hist[c], 1000);
    long sum = 0;
    for (size_t k = 0; k < (size_t)d->n * 784; k++)
        sum += d->pixels[k];
    ck_assert(sum > 0); /* real pixels, not zeros */
    cs_dataset_free(d);
}
END_TEST

/* ---- batcher ---- */

/* n images of c x h x w; every pixel of image i is pixel(i, ch, k); label i % classes. */
static cs_dataset *synthetic(int n, int c, int h, int w, int classes, uint8_t (*pixel)(int, int, int))
{
    cs_dataset *d = calloc(1, sizeof *d);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->n_classes = classes;
    d->pixels = malloc((size_t)n * c * h * w);
    d->labels = malloc(sizeof(int) * (size_t)n);
    d->class_names = calloc((size_t)classes, sizeof(char *));
    for (int k = 0; k < classes; k++) {
        d->class_names[k] = malloc(16);
        snprintf(d->class_names[k], 16, "c%d", k);
    }
    for (int i = 0; i < n; i++) {
        d->labels[i] = i % classes;
        for (int ch = 0; ch < c; ch++)
            for (int k = 0; k < h * w; k++)
                d->pixels[((size_t)i * c + ch) * h * w + k] = pixel(i, ch, k);
    }
    return d;
}

static uint8_t pix_index(int i, int ch, int k) { (void)ch; (void)k; return (uint8_t)i; }
static uint8_t pix_ramp(int i, int ch, int k) { return (uint8_t)(i * 3 + ch * 50 + k + 1); }

static cs_batcher *batcher_ok(const cs_dataset *d, const int *idx, int n, int batch, const cs_augment *aug,
                              int train, const int *map, uint64_t seed)
{
    cs_error err;
    cs_error_clear(&err);
    cs_batcher *b = cs_batcher_new(d, idx, n, batch, aug, train, map, seed, &err);
    ck_assert_msg(b != NULL, "cs_batcher_new: %s", err.msg);
    return b;
}

/* Reads one epoch of 1-channel batches whose pixel value is the image index
 * into order[]; checks the batch sizes. Returns the count. */
static int read_epoch(cs_batcher *b, int batch, int n, int *order)
{
    int c, h, w;
    cs_batcher_shape(b, &c, &h, &w);
    size_t img = (size_t)c * h * w;
    float *images = malloc(sizeof(float) * img * (size_t)batch);
    float *labels = malloc(sizeof(float) * (size_t)batch);
    int got = 0, rows, calls = 0;
    while ((rows = cs_batcher_next(b, images, labels)) > 0) {
        calls++;
        ck_assert_int_eq(rows, got + batch <= n ? batch : n - got);
        for (int r = 0; r < rows; r++)
            order[got++] = (int)lrintf(images[(size_t)r * img] * 255.0f);
    }
    ck_assert_int_eq(calls, cs_batcher_batches_per_epoch(b));
    free(images);
    free(labels);
    return got;
}

START_TEST(test_batcher_epoch_covers_indices)
{
    cs_dataset *d = synthetic(12, 1, 3, 3, 4, pix_index);
    static const int idx[7] = {0, 2, 3, 5, 7, 8, 11};
    cs_augment aug = {.std = {1, 1, 1}};
    cs_batcher *b = batcher_ok(d, idx, 7, 3, &aug, 1, NULL, 42);
    ck_assert_int_eq(cs_batcher_batches_per_epoch(b), 3);
    int c, h, w;
    cs_batcher_shape(b, &c, &h, &w);
    ck_assert(c == 1 && h == 3 && w == 3);
    for (int e = 0; e < 4; e++) {
        int order[7], seen[12] = {0};
        ck_assert_int_eq(read_epoch(b, 3, 7, order), 7); /* batches of 3, 3, 1 and then 0 */
        for (int i = 0; i < 7; i++)
            seen[order[i]]++;
        for (int i = 0; i < 7; i++)
            ck_assert_int_eq(seen[idx[i]], 1);
    }
    cs_batcher_free(b);
    cs_dataset_free(d);
}
END_TEST

/* The first epochs of a batcher as one stream of floats. */
static float *run_epochs(const cs_dataset *d, const int *idx, int n, int batch, const cs_augment *aug, int train,
                         uint64_t seed, int epochs, int jitter, size_t *len)
{
    cs_batcher *b = batcher_ok(d, idx, n, batch, aug, train, NULL, seed);
    int c, h, w;
    cs_batcher_shape(b, &c, &h, &w);
    size_t img = (size_t)c * h * w;
    *len = (size_t)epochs * n * (img + 1);
    float *all = malloc(sizeof(float) * *len), *p = all;
    float *images = malloc(sizeof(float) * img * (size_t)batch), *labels = malloc(sizeof(float) * (size_t)batch);
    for (int e = 0; e < epochs; e++) {
        int rows, k = 0;
        while ((rows = cs_batcher_next(b, images, labels)) > 0) {
            if (jitter)
                nanosleep(&(struct timespec){0, ((k++ * 7919) % 5) * 300000L}, NULL); /* the worker runs ahead or not */
            memcpy(p, images, sizeof(float) * img * (size_t)rows);
            p += img * (size_t)rows;
            memcpy(p, labels, sizeof(float) * (size_t)rows);
            p += rows;
        }
    }
    ck_assert(p == all + *len);
    free(images);
    free(labels);
    cs_batcher_free(b);
    return all;
}

START_TEST(test_batcher_deterministic)
{
    cs_dataset *d = synthetic(40, 3, 6, 5, 5, pix_ramp);
    int idx[40];
    for (int i = 0; i < 40; i++)
        idx[i] = i;
    cs_augment aug = {.out_h = 8, .out_w = 7, .crop_pad = 2, .flip = 1, .mean = {0.5f, 0.4f, 0.3f},
                      .std = {0.2f, 0.25f, 0.3f}};
    size_t n1, n2, n3;
    float *a = run_epochs(d, idx, 40, 6, &aug, 1, 7, 3, 0, &n1);
    float *b = run_epochs(d, idx, 40, 6, &aug, 1, 7, 3, 1, &n2);
    float *c = run_epochs(d, idx, 40, 6, &aug, 1, 8, 3, 0, &n3);
    ck_assert(n1 == n2 && n1 == n3);
    ck_assert_msg(memcmp(a, b, sizeof(float) * n1) == 0, "same seed, different batches");
    ck_assert_msg(memcmp(a, c, sizeof(float) * n1) != 0, "different seeds, same batches");
    free(a);
    free(b);
    free(c);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_batcher_shuffle)
{
    cs_dataset *d = synthetic(30, 1, 2, 2, 3, pix_index);
    int idx[30];
    for (int i = 0; i < 30; i++)
        idx[i] = 29 - i;
    int o1[30], o2[30], o3[30], o4[30];
    cs_batcher *b = batcher_ok(d, idx, 30, 4, NULL, 1, NULL, 1);
    read_epoch(b, 4, 30, o1);
    read_epoch(b, 4, 30, o2);
    cs_batcher_free(b);
    b = batcher_ok(d, idx, 30, 4, NULL, 1, NULL, 2);
    read_epoch(b, 4, 30, o3);
    cs_batcher_free(b);
    ck_assert_msg(memcmp(o1, o2, sizeof o1) != 0, "two epochs in the same order");
    ck_assert_msg(memcmp(o1, o3, sizeof o1) != 0, "seeds 1 and 2 give the same order");
    ck_assert_msg(memcmp(o1, idx, sizeof o1) != 0, "training order not shuffled");
    /* Evaluation: the indices' own order, every epoch. */
    b = batcher_ok(d, idx, 30, 7, NULL, 0, NULL, 1);
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(read_epoch(b, 7, 30, o4), 30);
        ck_assert_msg(memcmp(o4, idx, sizeof o4) == 0, "evaluation order changed");
    }
    cs_batcher_free(b);
    cs_dataset_free(d);
}
END_TEST

/* One 1x4x4 image with values 1..16, batched alone over many epochs. */
static uint8_t pix_grid(int i, int ch, int k) { (void)i; (void)ch; return (uint8_t)(k + 1); }

START_TEST(test_batcher_crop)
{
    cs_dataset *d = synthetic(1, 1, 4, 4, 1, pix_grid);
    static const int idx[1] = {0};
    cs_augment aug = {.crop_pad = 1, .std = {1, 1, 1}};
    cs_batcher *b = batcher_ok(d, idx, 1, 1, &aug, 1, NULL, 3);
    int seen[3][3] = {{0}};
    float out[16], label;
    for (int t = 0; t < 300; t++) {
        ck_assert_int_eq(cs_batcher_next(b, out, &label), 1);
        ck_assert_int_eq(cs_batcher_next(b, out + 0, NULL), 0);
        /* Find the shift: out(y, x) = in(y + dy - 1, x + dx - 1), zero outside. */
        int match = 0;
        for (int dy = 0; dy < 3 && !match; dy++)
            for (int dx = 0; dx < 3 && !match; dx++) {
                int ok = 1;
                for (int y = 0; y < 4 && ok; y++)
                    for (int x = 0; x < 4 && ok; x++) {
                        int sy = y + dy - 1, sx = x + dx - 1;
                        float want = (sy >= 0 && sy < 4 && sx >= 0 && sx < 4) ? (float)(sy * 4 + sx + 1) : 0.0f;
                        ok = fabsf(out[y * 4 + x] * 255.0f - want) < 1e-3f;
                    }
                if (ok) {
                    seen[dy][dx]++;
                    match = 1;
                }
            }
        ck_assert_msg(match, "crop %d is not a shifted copy with zero padding", t);
    }
    for (int dy = 0; dy < 3; dy++)
        for (int dx = 0; dx < 3; dx++)
            ck_assert_msg(seen[dy][dx] > 0, "shift (%d, %d) never drawn", dy - 1, dx - 1);
    cs_batcher_free(b);

    /* Evaluation does not crop. */
    b = batcher_ok(d, idx, 1, 1, &aug, 0, NULL, 3);
    for (int t = 0; t < 5; t++) {
        ck_assert_int_eq(cs_batcher_next(b, out, NULL), 1);
        for (int k = 0; k < 16; k++)
            ck_assert_float_eq_tol(out[k] * 255.0f, k + 1, 1e-3);
        ck_assert_int_eq(cs_batcher_next(b, out, NULL), 0);
    }
    cs_batcher_free(b);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_batcher_flip)
{
    cs_dataset *d = synthetic(1, 1, 4, 4, 1, pix_grid);
    static const int idx[1] = {0};
    cs_augment aug = {.flip = 1, .std = {1, 1, 1}};
    cs_batcher *b = batcher_ok(d, idx, 1, 1, &aug, 1, NULL, 11);
    int plain = 0, mirrored = 0;
    float out[16];
    for (int t = 0; t < 100; t++) {
        ck_assert_int_eq(cs_batcher_next(b, out, NULL), 1);
        ck_assert_int_eq(cs_batcher_next(b, NULL, NULL), 0);
        int is_plain = 1, is_mirror = 1;
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                float v = out[y * 4 + x] * 255.0f;
                is_plain &= fabsf(v - (float)(y * 4 + x + 1)) < 1e-3f;
                is_mirror &= fabsf(v - (float)(y * 4 + (3 - x) + 1)) < 1e-3f;
            }
        ck_assert_msg(is_plain || is_mirror, "flip %d is neither the image nor its mirror", t);
        plain += is_plain;
        mirrored += is_mirror;
    }
    ck_assert(plain > 10 && mirrored > 10);
    cs_batcher_free(b);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_batcher_normalise_and_resize)
{
    cs_dataset *d = synthetic(3, 3, 4, 4, 3, pix_ramp);
    static const int idx[3] = {2, 0, 1};
    cs_augment aug = {.mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    cs_batcher *b = batcher_ok(d, idx, 3, 3, &aug, 0, NULL, 5);
    float out[3 * 48], labels[3];
    ck_assert_int_eq(cs_batcher_next(b, out, labels), 3);
    for (int r = 0; r < 3; r++) {
        ck_assert_float_eq(labels[r], (float)(idx[r] % 3));
        for (int ch = 0; ch < 3; ch++)
            for (int k = 0; k < 16; k++) {
                double p = pix_ramp(idx[r], ch, k);
                double want = (p / 255.0 - (double)aug.mean[ch]) / (double)aug.std[ch];
                ck_assert_double_eq_tol(out[r * 48 + ch * 16 + k], want, 1e-6);
            }
    }
    cs_batcher_free(b);

    /* A zeroed cs_augment (std 0 counts as 1): p / 255. */
    cs_augment zero = {0};
    b = batcher_ok(d, idx, 3, 2, &zero, 0, NULL, 5);
    ck_assert_int_eq(cs_batcher_next(b, out, NULL), 2);
    ck_assert_double_eq_tol(out[0], pix_ramp(2, 0, 0) / 255.0, 1e-7);
    ck_assert_int_eq(cs_batcher_next(b, out, NULL), 1); /* the short last batch */
    ck_assert_int_eq(cs_batcher_next(b, out, NULL), 0);
    cs_batcher_free(b);
    cs_dataset_free(d);

    /* Bilinear resize 2x2 -> 4x4 (columns 0 and 200 -> 0, 50, 150, 200), to 1 x 4 x 4. */
    cs_dataset *g = synthetic(1, 1, 2, 2, 1, pix_index);
    g->pixels[0] = g->pixels[2] = 0;
    g->pixels[1] = g->pixels[3] = 200;
    cs_augment up = {.out_h = 4, .out_w = 4, .std = {1}};
    static const int one[1] = {0};
    b = batcher_ok(g, one, 1, 1, &up, 1, NULL, 1);
    int c, h, w;
    cs_batcher_shape(b, &c, &h, &w);
    ck_assert(c == 1 && h == 4 && w == 4);
    ck_assert_int_eq(cs_batcher_next(b, out, NULL), 1);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            ck_assert_double_eq_tol(out[y * 4 + x], up_row[x] / 255.0, 1e-6);
    cs_batcher_free(b);
    cs_dataset_free(g);
}
END_TEST

START_TEST(test_batcher_label_map)
{
    cs_dataset *d = synthetic(10, 1, 2, 2, 5, pix_index); /* labels i % 5 */
    static const int map[5] = {-1, 1, -1, 0, 2};
    static const int idx[6] = {1, 3, 4, 6, 8, 9}; /* labels 1, 3, 4, 1, 3, 4 */
    cs_batcher *b = batcher_ok(d, idx, 6, 4, NULL, 1, map, 9);
    float images[4 * 4], labels[4];
    int rows, total = 0;
    while ((rows = cs_batcher_next(b, images, labels)) > 0)
        for (int r = 0; r < rows; r++, total++) {
            int i = (int)lrintf(images[r * 4] * 255.0f);
            ck_assert_float_eq(labels[r], (float)map[i % 5]);
        }
    ck_assert_int_eq(total, 6);
    cs_batcher_free(b);

    /* Image 5 has label 0, which the map drops: refused up front. */
    static const int with_unmapped[3] = {1, 5, 3};
    cs_error err;
    cs_error_clear(&err);
    ck_assert_ptr_null(cs_batcher_new(d, with_unmapped, 3, 2, NULL, 1, map, 9, &err));
    ck_assert_int_eq(err.status, CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "indices[1] = 5") && strstr(err.msg, "class 0 (c0)") &&
                      strstr(err.msg, "label_map maps to -1"),
                  "%s", err.msg);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_batcher_bad_arguments)
{
    cs_dataset *d = synthetic(4, 1, 2, 2, 2, pix_index);
    static const int idx[2] = {0, 3}, bad_idx[2] = {0, 4};
    cs_error err;
    struct { const int *idx; int n, batch; cs_augment aug; const char *want; } cases[] = {
        {idx, 0, 2, {.std = {1}}, "no images to batch"},
        {NULL, 2, 2, {.std = {1}}, "no images to batch"},
        {idx, 2, 0, {.std = {1}}, "batch size 0"},
        {bad_idx, 2, 2, {.std = {1}}, "indices[1] = 4 is outside the data set (0 .. 3)"},
        {idx, 2, 2, {.out_h = -1, .std = {1}}, "output size -1x0"},
        {idx, 2, 2, {.crop_pad = -2, .std = {1}}, "crop_pad -2"},
        {idx, 2, 2, {.std = {-1}}, "std -1"},
        {idx, 2, 2, {.mean = {NAN}, .std = {1}}, "mean nan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_error_clear(&err);
        ck_assert_ptr_null(cs_batcher_new(d, cases[i].idx, cases[i].n, cases[i].batch, &cases[i].aug, 1, NULL, 1, &err));
        ck_assert_msg(strstr(err.msg, cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        ck_assert(strchr(err.msg, '\n') == NULL);
    }
    ck_assert_ptr_null(cs_batcher_new(NULL, idx, 2, 2, NULL, 1, NULL, 1, &err));
    ck_assert_msg(strstr(err.msg, "data set is empty"), "%s", err.msg);
    ck_assert_int_eq(cs_batcher_next(NULL, NULL, NULL), 0);
    ck_assert_int_eq(cs_batcher_batches_per_epoch(NULL), 0);
    cs_batcher_free(NULL);
    cs_dataset_free(d);
}
END_TEST

START_TEST(test_batcher_free_mid_epoch)
{
    cs_dataset *d = synthetic(64, 3, 16, 16, 4, pix_ramp);
    int idx[64];
    for (int i = 0; i < 64; i++)
        idx[i] = i;
    cs_augment aug = {.out_h = 24, .out_w = 24, .crop_pad = 3, .flip = 1, .std = {1, 1, 1}};
    float *images = malloc(sizeof(float) * 8 * 3 * 24 * 24);
    for (int t = 0; t < 20; t++) {
        cs_batcher *b = batcher_ok(d, idx, 64, 8, &aug, 1, NULL, (uint64_t)t);
        for (int k = 0; k < t % 4; k++) /* free after 0 .. 3 batches, the worker busy or waiting */
            ck_assert_int_eq(cs_batcher_next(b, images, NULL), 8);
        cs_batcher_free(b);
    }
    free(images);
    cs_dataset_free(d);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("idx");
    tcase_add_test(tc, test_format_names);
    tcase_add_test(tc, test_idx_plain);
    tcase_add_test(tc, test_idx_gzip);
    tcase_add_test(tc, test_idx_missing);
    tcase_add_test(tc, test_idx_truncated);
    tcase_add_test(tc, test_idx_truncated_gzip);
    tcase_add_test(tc, test_idx_gzip_bomb);
    tcase_add_test(tc, test_idx_bad_magic);
    tcase_add_test(tc, test_idx_count_mismatch);
    tcase_add_test(tc, test_idx_label_range);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("cifar");
    tcase_add_test(tc, test_cifar10);
    tcase_add_test(tc, test_cifar10_errors);
    tcase_add_test(tc, test_cifar100);
    tcase_add_test(tc, test_cifar100_errors);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("folder");
    tcase_add_test(tc, test_folder_rgb);
    tcase_add_test(tc, test_folder_gray_and_resize);
    tcase_add_test(tc, test_folder_errors);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_list_errors);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("real");
    tcase_add_test(tc, test_fashion_mnist);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("batcher");
    tcase_add_test(tc, test_batcher_epoch_covers_indices);
    tcase_add_test(tc, test_batcher_deterministic);
    tcase_add_test(tc, test_batcher_shuffle);
    tcase_add_test(tc, test_batcher_crop);
    tcase_add_test(tc, test_batcher_flip);
    tcase_add_test(tc, test_batcher_normalise_and_resize);
    tcase_add_test(tc, test_batcher_label_map);
    tcase_add_test(tc, test_batcher_bad_arguments);
    tcase_add_test(tc, test_batcher_free_mid_epoch);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(data_suite()) ? 1 : 0; }
