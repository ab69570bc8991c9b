/* image.h (internal to libcilscale): PNG / JPEG decoding and the bilinear resize that the data layer shares. */
#ifndef CILSCALE_IMAGE_H
#define CILSCALE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "cilscale/error.h"

/* Not part of the library's ABI. */
#define CS_INTERNAL __attribute__((visibility("hidden")))

/* Decodes a PNG or JPEG held in memory (the format is told by its first
 * bytes, not by the file name) into 8-bit RGB, row-major HWC, *rgb malloc'ed.
 * Gray images are replicated to three channels; an alpha channel is dropped.
 * path only names the file in the one-line error. */
/* The default pixel limit of one decoded image (8192 x 8192; RGB 192 MiB):
 * above every image of the data sets cilscale reads (ImageNet's largest are
 * under 20 megapixels). */
#define CS_IMAGE_MAX_PIXELS ((size_t)1 << 26)
/* Sets the limit for the images decoded after it (0: the default). */
CS_INTERNAL void cs_image_set_max_pixels(size_t n);

CS_INTERNAL int cs_image_decode(const char *path, const uint8_t *data, size_t size, uint8_t **rgb, int *w, int *h,
                                cs_error *err);

/* Bilinear resize: a triangle filter with half-pixel centres (as PIL and
 * torchvision do it). Growing, it is plain bilinear interpolation with the
 * edge pixel repeated; shrinking, the filter widens by the scale so it also
 * averages (antialiases). Tap tables are computed once per geometry; the
 * scratch row buffer makes a resizer single-threaded. */
typedef struct cs_resize_axis {
    int n_out, max_taps;
    int *start;    /* first input index per output */
    int *count;    /* taps per output */
    float *weight; /* n_out * max_taps, normalised to sum 1 */
} cs_resize_axis;

typedef struct cs_resizer {
    int ih, iw, oh, ow;
    cs_resize_axis y, x;
    float *tmp; /* ih * ow */
} cs_resizer;

CS_INTERNAL int cs_resizer_init(cs_resizer *r, int ih, int iw, int oh, int ow);
CS_INTERNAL void cs_resizer_free(cs_resizer *r);
/* Resizes one 8-bit plane whose pixel (y, x) is src[y * row_stride + x * pix_stride]
 * into dst (oh * ow floats, same 0..255 scale). */
CS_INTERNAL void cs_resize_plane_u8(cs_resizer *r, const uint8_t *src, size_t row_stride, size_t pix_stride,
                                    float *dst);

/* Reads a whole file into memory (+1 NUL byte past the end). A missing file is
 * "PATH: missing file"; other failures name errno's reason. */
CS_INTERNAL int cs_read_file(const char *path, uint8_t **data, size_t *size, cs_error *err);

#endif
