/* image.c: PNG (libpng's simplified API) and JPEG (libjpeg-turbo) decoding to RGB, bilinear resize, whole-file reads. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "runtime/image.h"

/* Larger images are refused rather than allocated (data.max_pixels sets the
 * pixel limit: cs_image_set_max_pixels). */
#define MAX_SIDE 65535
static size_t max_pixels = CS_IMAGE_MAX_PIXELS;

void cs_image_set_max_pixels(size_t n) { max_pixels = n ? n : CS_IMAGE_MAX_PIXELS; }

/* The fewest bytes a real file of w x h pixels can have: a JPEG spends at
 * least a few bits on each 8x8 block and deflate inflates at most ~1032:1
 * (so a 1-bit PNG holds at most ~8,000 pixels a byte); 1 byte per 16,384
 * pixels is far below both, so only a file that claims far more pixels than
 * it could hold (a ~160-byte JPEG declaring 16k x 16k) is refused. */
#define MIN_BYTES_PER_PIXELS 16384

int cs_read_file(const char *path, uint8_t **data, size_t *size, cs_error *err)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT)
            return cs_error_set(err, CS_ERR_IO, "%s: missing file", path);
        return cs_error_set(err, CS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        if (S_ISDIR(st.st_mode))
            return cs_error_set(err, CS_ERR_IO, "%s: is a folder, expected a file", path);
        return cs_error_set(err, CS_ERR_IO, "%s: not a regular file (%s)", path, strerror(e));
    }
    size_t want = (size_t)st.st_size;
    uint8_t *buf = malloc(want + 1);
    if (!buf) {
        close(fd);
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, want);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = read(fd, buf + got, want - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return cs_error_set(err, CS_ERR_IO, "%s: read failed (%s)", path, strerror(e));
        }
        if (k == 0)
            break; /* shrank under us: report what is there */
        got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    *data = buf;
    *size = got;
    return CS_OK;
}

static int check_dims(const char *path, const char *what, long w, long h, size_t size, cs_error *err)
{
    if (w <= 0 || h <= 0)
        return cs_error_set(err, CS_ERR_IO, "%s: %s image has no pixels (%ldx%ld)", path, what, w, h);
    size_t px = (size_t)w * (size_t)h;
    if (w > MAX_SIDE || h > MAX_SIDE || px > max_pixels)
        return cs_error_set(err, CS_ERR_IO, "%s: %s image is %ldx%ld, %zu pixels, more than the %zu allowed "
                            "(data.max_pixels)", path, what, w, h, px, max_pixels);
    if (px / MIN_BYTES_PER_PIXELS > size)
        return cs_error_set(err, CS_ERR_IO, "%s: %s image claims %ldx%ld pixels in a %zu-byte file: damaged or "
                            "hostile", path, what, w, h, size);
    return CS_OK;
}

static int decode_png(const char *path, const uint8_t *data, size_t size, uint8_t **rgb, int *w, int *h,
                      cs_error *err)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size)) {
        cs_error_set(err, CS_ERR_IO, "%s: PNG does not decode (libpng: %s)", path, img.message);
        png_image_free(&img);
        return CS_ERR_IO;
    }
    if (check_dims(path, "PNG", (long)img.width, (long)img.height, size, err) != CS_OK) {
        png_image_free(&img);
        return err ? err->status : CS_ERR_IO;
    }
    /* RGBA then drop alpha: what PIL's convert("RGB") does, so folder data
     * sets read the same here as in torchvision. */
    img.format = PNG_FORMAT_RGBA;
    size_t n = (size_t)img.width * img.height;
    uint8_t *buf = malloc(n * 4);
    if (!buf) {
        png_image_free(&img);
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory decoding %ux%u PNG", path, img.width, img.height);
    }
    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        cs_error_set(err, CS_ERR_IO, "%s: PNG does not decode (libpng: %s)", path, img.message);
        png_image_free(&img);
        free(buf);
        return CS_ERR_IO;
    }
    for (size_t i = 0; i < n; i++) {
        buf[3 * i] = buf[4 * i];
        buf[3 * i + 1] = buf[4 * i + 1];
        buf[3 * i + 2] = buf[4 * i + 2];
    }
    *w = (int)img.width;
    *h = (int)img.height;
    png_image_free(&img);
    *rgb = buf;
    return CS_OK;
}

struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char msg[JMSG_LENGTH_MAX], eof_msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr c)
{
    struct jpeg_err *e = (struct jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings are not printed. Those that mean damaged data are errors: a
 * premature end of data (libjpeg would pad the image with gray), a marker in
 * the middle of the scan (the rest of it is lost) and a lost restart
 * sequence. Extraneous bytes between segments, common in real data sets,
 * are not. */
static void jpeg_emit(j_common_ptr c, int level)
{
    struct jpeg_err *e = (struct jpeg_err *)c->err;
    if (level < 0) {
        int code = c->err->msg_code;
        if ((code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) && !e->truncated) {
            e->truncated = 1;
            c->err->format_message(c, e->eof_msg);
        }
        c->err->num_warnings++;
    }
}

static void jpeg_quiet(j_common_ptr c) { (void)c; }

static int decode_jpeg(const char *path, const uint8_t *data, size_t size, uint8_t **rgb, int *w, int *h,
                       cs_error *err)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_err je;
    uint8_t *volatile out = NULL;
    uint8_t *volatile row4 = NULL;
    volatile int status = CS_ERR_IO, ours = 0; /* ours: err already says why */

    memset(&je, 0, sizeof je);
    cinfo.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_fail;
    je.pub.emit_message = jpeg_emit;
    je.pub.output_message = jpeg_quiet;
    if (setjmp(je.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row4);
        if (ours)
            return status;
        if (status == CS_ERR_IO && je.truncated) /* ran out of data, then failed on the fake end */
            cs_error_set(err, CS_ERR_IO, "%s: JPEG is truncated (libjpeg: %s; %s)", path, je.eof_msg, je.msg);
        else if (status == CS_ERR_IO)
            cs_error_set(err, CS_ERR_IO, "%s: JPEG does not decode (libjpeg: %s)", path, je.msg);
        return status;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    /* before any allocation for the image: the header's size against the limits */
    if (check_dims(path, "JPEG", (long)cinfo.image_width, (long)cinfo.image_height, size, err) != CS_OK) {
        status = err ? err->status : CS_ERR_IO;
        ours = 1;
        longjmp(je.jump, 1);
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int ow = (int)cinfo.output_width, oh = (int)cinfo.output_height;
    if (check_dims(path, "JPEG", ow, oh, size, err) != CS_OK) {
        status = err ? err->status : CS_ERR_IO;
        ours = 1;
        longjmp(je.jump, 1);
    }
    out = malloc((size_t)ow * (size_t)oh * 3);
    if (cmyk)
        row4 = malloc((size_t)ow * 4);
    if (!out || (cmyk && !row4)) {
        status = cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory decoding %dx%d JPEG", path, ow, oh);
        longjmp(je.jump, 1);
    }
    int inverted = cinfo.saw_Adobe_marker; /* Adobe writes CMYK inverted */
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW row = cmyk ? row4 : out + y * (size_t)ow * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (cmyk) {
            uint8_t *o = out + y * (size_t)ow * 3;
            for (int x = 0; x < ow; x++) {
                unsigned c4[4];
                for (int k = 0; k < 4; k++)
                    c4[k] = inverted ? row4[4 * x + k] : 255u - row4[4 * x + k];
                for (int k = 0; k < 3; k++)
                    o[3 * x + k] = (uint8_t)((c4[k] * c4[3] + 127) / 255);
            }
        }
        if (je.truncated)
            break;
    }
    /* Cut short before the last row is an error; a missing end marker after
     * it (finish_decompress warns then) is not. */
    int cut = je.truncated;
    if (!cut)
        jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row4);
    if (cut) {
        free(out);
        return cs_error_set(err, CS_ERR_IO, "%s: JPEG is truncated (libjpeg: %s)", path, je.eof_msg);
    }
    *rgb = out;
    *w = ow;
    *h = oh;
    return CS_OK;
}

int cs_image_decode(const char *path, const uint8_t *data, size_t size, uint8_t **rgb, int *w, int *h,
                    cs_error *err)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *rgb = NULL;
    if (size >= 8 && memcmp(data, png_sig, 8) == 0)
        return decode_png(path, data, size, rgb, w, h, err);
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(path, data, size, rgb, w, h, err);
    if (size == 0)
        return cs_error_set(err, CS_ERR_IO, "%s: image does not decode: the file is empty", path);
    return cs_error_set(err, CS_ERR_IO,
                        "%s: image does not decode: neither PNG nor JPEG (starts with bytes %02x %02x %02x)", path,
                        data[0], size > 1 ? data[1] : 0, size > 2 ? data[2] : 0);
}

/* ---- bilinear resize ---- */

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int axis_init(cs_resize_axis *a, int in, int out)
{
    memset(a, 0, sizeof *a);
    double scale = (double)in / out;
    double fscale = scale > 1.0 ? scale : 1.0;
    double support = fscale; /* the triangle's support (1) widened when shrinking */
    a->n_out = out;
    a->max_taps = (int)ceil(support) * 2 + 1;
    a->start = malloc(sizeof(int) * (size_t)out);
    a->count = malloc(sizeof(int) * (size_t)out);
    a->weight = malloc(sizeof(float) * (size_t)out * (size_t)a->max_taps);
    if (!a->start || !a->count || !a->weight)
        return CS_ERR_NOMEM;
    for (int o = 0; o < out; o++) {
        double centre = (o + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        if (hi - lo > a->max_taps)
            hi = lo + a->max_taps;
        double w[64 + 1], *wp = w, total = 0;
        double *heap = NULL;
        if (hi - lo > 64)
            wp = heap = malloc(sizeof(double) * (size_t)(hi - lo));
        if (!wp)
            return CS_ERR_NOMEM;
        for (int i = lo; i < hi; i++)
            total += wp[i - lo] = triangle((i - centre + 0.5) / fscale);
        float *dst = a->weight + (size_t)o * a->max_taps;
        if (total <= 0) { /* cannot happen for a centre inside the image; nearest pixel then */
            int nearest = (int)centre < in ? (int)centre : in - 1;
            lo = nearest;
            hi = nearest + 1;
            wp[0] = total = 1.0;
        }
        for (int i = lo; i < hi; i++)
            dst[i - lo] = (float)(wp[i - lo] / total);
        free(heap);
        a->start[o] = lo;
        a->count[o] = hi - lo;
    }
    return CS_OK;
}

static void axis_free(cs_resize_axis *a)
{
    free(a->start);
    free(a->count);
    free(a->weight);
    memset(a, 0, sizeof *a);
}

int cs_resizer_init(cs_resizer *r, int ih, int iw, int oh, int ow)
{
    memset(r, 0, sizeof *r);
    r->ih = ih;
    r->iw = iw;
    r->oh = oh;
    r->ow = ow;
    r->tmp = malloc(sizeof(float) * (size_t)ih * (size_t)ow);
    if (!r->tmp || axis_init(&r->y, ih, oh) != CS_OK || axis_init(&r->x, iw, ow) != CS_OK) {
        cs_resizer_free(r);
        return CS_ERR_NOMEM;
    }
    return CS_OK;
}

void cs_resizer_free(cs_resizer *r)
{
    axis_free(&r->y);
    axis_free(&r->x);
    free(r->tmp);
    r->tmp = NULL;
}

void cs_resize_plane_u8(cs_resizer *r, const uint8_t *src, size_t row_stride, size_t pix_stride, float *dst)
{
    const cs_resize_axis *ax = &r->x, *ay = &r->y;
    for (int y = 0; y < r->ih; y++) {
        const uint8_t *row = src + (size_t)y * row_stride;
        float *t = r->tmp + (size_t)y * r->ow;
        for (int o = 0; o < r->ow; o++) {
            const float *w = ax->weight + (size_t)o * ax->max_taps;
            const uint8_t *p = row + (size_t)ax->start[o] * pix_stride;
            float s = 0;
            for (int k = 0; k < ax->count[o]; k++)
                s += w[k] * p[(size_t)k * pix_stride];
            t[o] = s;
        }
    }
    for (int o = 0; o < r->oh; o++) {
        const float *w = ay->weight + (size_t)o * ay->max_taps;
        float *d = dst + (size_t)o * r->ow;
        for (int x = 0; x < r->ow; x++)
            d[x] = 0;
        for (int k = 0; k < ay->count[o]; k++) {
            const float *t = r->tmp + (size_t)(ay->start[o] + k) * r->ow;
            for (int x = 0; x < r->ow; x++)
                d[x] += w[k] * t[x];
        }
    }
}
