/* kernels_shape.c: output sizes and saved-buffer sizes the reference and fast kernels share. */
#include "kernels.h"

conv_geom *conv_geom_finish(conv_geom *g)
{
    g->oh = (g->h + 2 * g->pad - g->k) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - g->k) / g->stride + 1;
    return g;
}

int64_t batchnorm_save_size(int c) { return 2 * (int64_t)c; }
int64_t cosine_linear_save_size(int n, int f, int k) { return ((int64_t)n + k) * f + n + k + (int64_t)n * k; }
int64_t l2norm_save_size(int n) { return n; }
int64_t softmax_xent_save_size(int n, int k) { return (int64_t)n * k; }
int64_t cosine_embed_save_size(int n) { return 3 * (int64_t)n; }
