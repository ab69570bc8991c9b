/* test_ops.c: the cpu backend: every op's backward against finite differences, the fast kernels against
 * the reference ones, and plans end to end (SGD, training, determinism, frozen arenas, batch norm). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cilscale/backend.h"
#include "cilscale/graph.h"
#include "dnnl_conv.h"
#include "kernels.h"
#include "sdk/graph_impl.h" /* white-box: the tests break a built graph on purpose */
#include "testutil.h"

/* Tolerances, all stated here:
 * - finite differences (double, central, step FD_STEP): |numeric - analytic| <= FD_TOL * max(1, |analytic|);
 * - fast vs reference kernels (float): NMSE = sum (a-b)^2 / sum a^2 <= NMSE_TOL;
 * - SGD and batch-norm running statistics vs a hand computation in double: within HAND_TOL;
 * - a whole plan's gradient vs float finite differences (wiring, not arithmetic):
 *   |numeric - analytic| <= PLAN_FD_ABS + PLAN_FD_REL * |analytic|. */
#define FD_STEP 1e-5
#define FD_TOL 1e-6
#define NMSE_TOL 1e-10
#define HAND_TOL 1e-6
#define PLAN_FD_STEP 2e-3f
#define PLAN_FD_ABS 5e-4
#define PLAN_FD_REL 1e-2

/* ---- data ---- */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL; }
static double uni(void) /* [0, 1), xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}
static double sym(void) { return 2 * uni() - 1; }

static void *xcalloc(int64_t n, size_t elem)
{
    void *p = calloc(n > 0 ? (size_t)n : 1, elem);
    ck_assert_ptr_nonnull(p);
    return p;
}

static double nmse(const float *ref, const float *got, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)ref[i] - got[i]) * ((double)ref[i] - got[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

/* ---- ops under test: one description drives both the double finite-difference
 * check (ref64 kernels) and the float fast-vs-reference comparison ---- */

/* How an input's values are drawn. */
typedef enum gen {
    GEN_SYM,      /* uniform in (-1, 1) */
    GEN_AWAY0,    /* |x| in (0.1, 1.1): no relu kink within the step */
    GEN_RELU6,    /* in (-2, 8), at least 0.1 from 0 and 6 */
    GEN_DISTINCT, /* a shuffled grid 0.01 apart: no max-pool ties within the step */
    GEN_LABELS,   /* class ids in [0, k) */
    GEN_GAMMA,    /* in (0.5, 1.5) */
    GEN_SIGMA,    /* the cosine scale, in (2, 4) */
} gen;

typedef struct op_ctx op_ctx;
typedef void (*fwd64_fn)(op_ctx *c, double *const *in, double *out);
typedef void (*bwd64_fn)(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din);
typedef void (*fwd32_fn)(op_ctx *c, float *const *in, float *out);
typedef void (*bwd32_fn)(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din);

struct op_ctx {
    char name[96];
    fwd64_fn fwd64;
    bwd64_fn bwd64;
    fwd32_fn fwd32;
    bwd32_fn bwd32;
    int n_in;
    int64_t size[4]; /* elements of each input */
    int diff[4];     /* 1: its gradient is checked; 0: it gets none (NULL) */
    gen gen[4];
    int64_t out_size;
    /* shapes */
    conv_geom g;
    int n, c, hw, f, k, start, count, groups, ca, cb;
    float eps, momentum;
    /* state a forward keeps, in both precisions */
    int64_t save_size, ws_size;
    double *save64, *run64; /* run: batch-norm running mean, var */
    float *save32, *run32;
    int32_t *argmax;
    /* float runs */
    int fast; /* 0 reference, 1 fast, 2 oneDNN (conv2d only) */
    cpu_par par;
    dconv *dc; /* fast == 2 */
};

/* Calls the fast kernel when c->fast, else the reference one, with the same arguments. */
#define KERNEL_PAIR(ref_fn, fast_fn, ...) \
    do { \
        if (c->fast) \
            fast_fn(&c->par, __VA_ARGS__); \
        else \
            ref_fn(__VA_ARGS__); \
    } while (0)

/* conv2d: in x, w[, b] */
static void conv_f64(op_ctx *c, double *const *in, double *out) { ref64_conv2d_forward(out, in[0], in[1], in[2], &c->g); }
static void conv_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_conv2d_backward(din[0], din[1], din[2], dout, in[0], in[1], &c->g);
}
/* oneDNN on channel-blocked source and output (fast == 3): the plain arrays
 * converted in and out around the call. */
static void conv_f32_blocked(op_ctx *c, float *const *in, float *out)
{
    const conv_geom *g = &c->g;
    const int b = dconv_block();
    float *x = xcalloc(blk_size(g->n, g->c, g->h * g->w, b), 4), *y = xcalloc(blk_size(g->n, g->oc, g->oh * g->ow, b), 4);
    char why[256] = "";
    blk_from_plain(&c->par, x, in[0], g->n, g->c, g->h * g->w, b);
    ck_assert_msg(dconv_forward(c->dc, &c->par, y, x, in[1], in[2], g->n, why, sizeof why) == 0, "%s: %s", c->name,
                  why);
    blk_to_plain(&c->par, out, y, g->n, g->oc, g->oh * g->ow, b);
    free(x);
    free(y);
}

static void conv_b32_blocked(op_ctx *c, float *const *in, const float *dout, float *const *din)
{
    const conv_geom *g = &c->g;
    const int b = dconv_block();
    const int64_t nx = blk_size(g->n, g->c, g->h * g->w, b), ny = blk_size(g->n, g->oc, g->oh * g->ow, b);
    float *x = xcalloc(nx, 4), *dy = xcalloc(ny, 4), *dx = xcalloc(nx, 4);
    char why[256] = "";
    blk_from_plain(&c->par, x, in[0], g->n, g->c, g->h * g->w, b);
    blk_from_plain(&c->par, dy, dout, g->n, g->oc, g->oh * g->ow, b);
    blk_from_plain(&c->par, dx, din[0], g->n, g->c, g->h * g->w, b); /* accumulated onto */
    ck_assert_msg(dconv_backward(c->dc, &c->par, dx, din[1], din[2], dy, x, in[1], g->n, why, sizeof why) == 0,
                  "%s: %s", c->name, why);
    blk_to_plain(&c->par, din[0], dx, g->n, g->c, g->h * g->w, b);
    free(x);
    free(dy);
    free(dx);
}

static void conv_f32(op_ctx *c, float *const *in, float *out)
{
    char why[256] = "";
    if (c->fast == 3) {
        conv_f32_blocked(c, in, out);
        return;
    }
    if (c->fast == 2) {
        ck_assert_msg(dconv_forward(c->dc, &c->par, out, in[0], in[1], in[2], c->g.n, why, sizeof why) == 0, "%s: %s",
                      c->name, why);
        return;
    }
    KERNEL_PAIR(ref_conv2d_forward, fast_conv2d_forward, out, in[0], in[1], in[2], &c->g);
}
static void conv_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    char why[256] = "";
    if (c->fast == 3) {
        conv_b32_blocked(c, in, dout, din);
        return;
    }
    if (c->fast == 2) {
        ck_assert_msg(dconv_backward(c->dc, &c->par, din[0], din[1], din[2], dout, in[0], in[1], c->g.n, why,
                                     sizeof why) == 0,
                      "%s: %s", c->name, why);
        return;
    }
    KERNEL_PAIR(ref_conv2d_backward, fast_conv2d_backward, din[0], din[1], din[2], dout, in[0], in[1], &c->g);
}

static op_ctx op_conv(conv_geom g, int bias)
{
    conv_geom_finish(&g);
    op_ctx c = {.fwd64 = conv_f64, .bwd64 = conv_b64, .fwd32 = conv_f32, .bwd32 = conv_b32, .g = g};
    snprintf(c.name, sizeof c.name, "conv2d n%d c%d %dx%d oc%d k%d s%d p%d g%d%s", g.n, g.c, g.h, g.w, g.oc, g.k,
             g.stride, g.pad, g.groups, bias ? " bias" : "");
    c.n_in = bias ? 3 : 2;
    c.size[0] = (int64_t)g.n * g.c * g.h * g.w;
    c.size[1] = (int64_t)g.oc * (g.c / g.groups) * g.k * g.k;
    c.size[2] = g.oc;
    c.diff[0] = c.diff[1] = c.diff[2] = 1;
    c.out_size = (int64_t)g.n * g.oc * g.oh * g.ow;
    c.ws_size = fast_conv2d_workspace(&g, 2);
    return c;
}

/* batchnorm (train): in x, gamma, beta */
static void bn_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_batchnorm_forward_train(out, c->save64, c->run64, c->run64 + c->c, in[0], in[1], in[2], c->n, c->c, c->hw,
                                  c->eps, c->momentum);
}
static void bn_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_batchnorm_backward(din[0], din[1], din[2], dout, in[0], c->save64, in[1], c->n, c->c, c->hw);
}
static void bn_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_batchnorm_forward_train, fast_batchnorm_forward_train, out, c->save32, c->run32, c->run32 + c->c,
                in[0], in[1], in[2], c->n, c->c, c->hw, c->eps, c->momentum);
}
static void bn_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_batchnorm_backward, fast_batchnorm_backward, din[0], din[1], din[2], dout, in[0], c->save32,
                in[1], c->n, c->c, c->hw);
}

static op_ctx op_bn(int n, int ch, int hw)
{
    op_ctx c = {.fwd64 = bn_f64, .bwd64 = bn_b64, .fwd32 = bn_f32, .bwd32 = bn_b32, .n = n, .c = ch, .hw = hw,
                .eps = 1e-5f, .momentum = 0.1f, .n_in = 3};
    snprintf(c.name, sizeof c.name, "batchnorm n%d c%d hw%d", n, ch, hw);
    c.size[0] = c.out_size = (int64_t)n * ch * hw;
    c.size[1] = c.size[2] = ch;
    c.diff[0] = c.diff[1] = c.diff[2] = 1;
    c.gen[1] = GEN_GAMMA;
    c.save_size = batchnorm_save_size(ch);
    return c;
}

/* relu, relu6, add */
static void relu_f64(op_ctx *c, double *const *in, double *out) { ref64_relu_forward(out, in[0], c->size[0]); }
static void relu_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_relu_backward(din[0], dout, in[0], c->size[0]);
}
static void relu_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_relu_forward, fast_relu_forward, out, in[0], c->size[0]);
}
static void relu_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_relu_backward, fast_relu_backward, din[0], dout, in[0], c->size[0]);
}
static void relu6_f64(op_ctx *c, double *const *in, double *out) { ref64_relu6_forward(out, in[0], c->size[0]); }
static void relu6_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_relu6_backward(din[0], dout, in[0], c->size[0]);
}
static void relu6_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_relu6_forward, fast_relu6_forward, out, in[0], c->size[0]);
}
static void relu6_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_relu6_backward, fast_relu6_backward, din[0], dout, in[0], c->size[0]);
}
static void add_f64(op_ctx *c, double *const *in, double *out) { ref64_add_forward(out, in[0], in[1], c->size[0]); }
static void add_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_add_backward(din[0], din[1], dout, c->size[0]);
}
static void add_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_add_forward, fast_add_forward, out, in[0], in[1], c->size[0]);
}
static void add_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_add_backward, fast_add_backward, din[0], din[1], dout, c->size[0]);
}

static op_ctx op_elementwise(const char *name, int64_t count)
{
    op_ctx c = {.n_in = 1};
    snprintf(c.name, sizeof c.name, "%s %lld", name, (long long)count);
    c.size[0] = c.size[1] = c.out_size = count;
    c.diff[0] = c.diff[1] = 1;
    if (strcmp(name, "relu") == 0) {
        c.fwd64 = relu_f64, c.bwd64 = relu_b64, c.fwd32 = relu_f32, c.bwd32 = relu_b32;
        c.gen[0] = GEN_AWAY0;
    } else if (strcmp(name, "relu6") == 0) {
        c.fwd64 = relu6_f64, c.bwd64 = relu6_b64, c.fwd32 = relu6_f32, c.bwd32 = relu6_b32;
        c.gen[0] = GEN_RELU6;
    } else {
        c.fwd64 = add_f64, c.bwd64 = add_b64, c.fwd32 = add_f32, c.bwd32 = add_b32;
        c.n_in = 2;
    }
    return c;
}

/* maxpool, avgpool */
static void maxpool_f64(op_ctx *c, double *const *in, double *out) { ref64_maxpool_forward(out, c->argmax, in[0], &c->g); }
static void maxpool_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_maxpool_backward(din[0], dout, c->argmax, &c->g);
}
static void maxpool_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_maxpool_forward, fast_maxpool_forward, out, c->argmax, in[0], &c->g);
}
static void maxpool_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_maxpool_backward, fast_maxpool_backward, din[0], dout, c->argmax, &c->g);
}

static op_ctx op_maxpool(int n, int ch, int h, int w, int k, int stride, int pad)
{
    conv_geom g = {.n = n, .c = ch, .h = h, .w = w, .oc = ch, .k = k, .stride = stride, .pad = pad, .groups = 1};
    conv_geom_finish(&g);
    op_ctx c = {.fwd64 = maxpool_f64, .bwd64 = maxpool_b64, .fwd32 = maxpool_f32, .bwd32 = maxpool_b32, .g = g,
                .n_in = 1};
    snprintf(c.name, sizeof c.name, "maxpool n%d c%d %dx%d k%d s%d p%d", n, ch, h, w, k, stride, pad);
    c.size[0] = (int64_t)n * ch * h * w;
    c.diff[0] = 1;
    c.gen[0] = GEN_DISTINCT;
    c.out_size = (int64_t)n * ch * g.oh * g.ow;
    return c;
}

static void avgpool_f64(op_ctx *c, double *const *in, double *out) { ref64_avgpool_forward(out, in[0], c->n, c->c, c->hw); }
static void avgpool_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_avgpool_backward(din[0], dout, c->n, c->c, c->hw);
}
static void avgpool_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_avgpool_forward, fast_avgpool_forward, out, in[0], c->n, c->c, c->hw);
}
static void avgpool_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_avgpool_backward, fast_avgpool_backward, din[0], dout, c->n, c->c, c->hw);
}

static op_ctx op_avgpool(int n, int ch, int hw)
{
    op_ctx c = {.fwd64 = avgpool_f64, .bwd64 = avgpool_b64, .fwd32 = avgpool_f32, .bwd32 = avgpool_b32, .n = n,
                .c = ch, .hw = hw, .n_in = 1};
    snprintf(c.name, sizeof c.name, "avgpool n%d c%d hw%d", n, ch, hw);
    c.size[0] = (int64_t)n * ch * hw;
    c.diff[0] = 1;
    c.out_size = (int64_t)n * ch;
    return c;
}

/* slice, concat, shuffle */
static void slice_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_slice_forward(out, in[0], c->n, c->c, c->hw, c->start, c->count);
}
static void slice_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_slice_backward(din[0], dout, c->n, c->c, c->hw, c->start, c->count);
}
static void slice_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_slice_forward, fast_slice_forward, out, in[0], c->n, c->c, c->hw, c->start, c->count);
}
static void slice_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_slice_backward, fast_slice_backward, din[0], dout, c->n, c->c, c->hw, c->start, c->count);
}

static op_ctx op_slice(int n, int ch, int hw, int start, int count)
{
    op_ctx c = {.fwd64 = slice_f64, .bwd64 = slice_b64, .fwd32 = slice_f32, .bwd32 = slice_b32, .n = n, .c = ch,
                .hw = hw, .start = start, .count = count, .n_in = 1};
    snprintf(c.name, sizeof c.name, "slice n%d c%d hw%d [%d,%d)", n, ch, hw, start, start + count);
    c.size[0] = (int64_t)n * ch * hw;
    c.diff[0] = 1;
    c.out_size = (int64_t)n * count * hw;
    return c;
}

static void concat_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_concat_forward(out, in[0], in[1], c->n, c->ca, c->cb, c->hw);
}
static void concat_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_concat_backward(din[0], din[1], dout, c->n, c->ca, c->cb, c->hw);
}
static void concat_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_concat_forward, fast_concat_forward, out, in[0], in[1], c->n, c->ca, c->cb, c->hw);
}
static void concat_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_concat_backward, fast_concat_backward, din[0], din[1], dout, c->n, c->ca, c->cb, c->hw);
}

static op_ctx op_concat(int n, int ca, int cb, int hw)
{
    op_ctx c = {.fwd64 = concat_f64, .bwd64 = concat_b64, .fwd32 = concat_f32, .bwd32 = concat_b32, .n = n,
                .ca = ca, .cb = cb, .hw = hw, .n_in = 2};
    snprintf(c.name, sizeof c.name, "concat n%d %d+%d hw%d", n, ca, cb, hw);
    c.size[0] = (int64_t)n * ca * hw;
    c.size[1] = (int64_t)n * cb * hw;
    c.diff[0] = c.diff[1] = 1;
    c.out_size = c.size[0] + c.size[1];
    return c;
}

static void shuffle_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_shuffle_forward(out, in[0], c->n, c->c, c->hw, c->groups);
}
static void shuffle_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    (void)out;
    ref64_shuffle_backward(din[0], dout, c->n, c->c, c->hw, c->groups);
}
static void shuffle_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_shuffle_forward, fast_shuffle_forward, out, in[0], c->n, c->c, c->hw, c->groups);
}
static void shuffle_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    (void)out;
    KERNEL_PAIR(ref_shuffle_backward, fast_shuffle_backward, din[0], dout, c->n, c->c, c->hw, c->groups);
}

static op_ctx op_shuffle(int n, int ch, int hw, int groups)
{
    op_ctx c = {.fwd64 = shuffle_f64, .bwd64 = shuffle_b64, .fwd32 = shuffle_f32, .bwd32 = shuffle_b32, .n = n,
                .c = ch, .hw = hw, .groups = groups, .n_in = 1};
    snprintf(c.name, sizeof c.name, "shuffle n%d c%d hw%d g%d", n, ch, hw, groups);
    c.size[0] = c.out_size = (int64_t)n * ch * hw;
    c.diff[0] = 1;
    return c;
}

/* linear, cosine_linear, l2norm */
static void linear_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_linear_forward(out, in[0], in[1], in[2], c->n, c->f, c->k);
}
static void linear_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_linear_backward(din[0], din[1], din[2], dout, in[0], in[1], c->n, c->f, c->k);
}
static void linear_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_linear_forward, fast_linear_forward, out, in[0], in[1], in[2], c->n, c->f, c->k);
}
static void linear_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_linear_backward, fast_linear_backward, din[0], din[1], din[2], dout, in[0], in[1], c->n, c->f,
                c->k);
}

static op_ctx op_linear(int n, int f, int k, int bias)
{
    op_ctx c = {.fwd64 = linear_f64, .bwd64 = linear_b64, .fwd32 = linear_f32, .bwd32 = linear_b32, .n = n, .f = f,
                .k = k, .n_in = bias ? 3 : 2};
    snprintf(c.name, sizeof c.name, "linear n%d f%d k%d%s", n, f, k, bias ? " bias" : "");
    c.size[0] = (int64_t)n * f;
    c.size[1] = (int64_t)k * f;
    c.size[2] = k;
    c.diff[0] = c.diff[1] = c.diff[2] = 1;
    c.out_size = (int64_t)n * k;
    return c;
}

static void cosl_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_cosine_linear_forward(out, c->save64, in[0], in[1], in[2], c->n, c->f, c->k);
}
static void cosl_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_cosine_linear_backward(din[0], din[1], din[2], dout, c->save64, in[2], c->n, c->f, c->k);
}
static void cosl_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_cosine_linear_forward, fast_cosine_linear_forward, out, c->save32, in[0], in[1], in[2], c->n,
                c->f, c->k);
}
static void cosl_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_cosine_linear_backward, fast_cosine_linear_backward, din[0], din[1], din[2], dout, c->save32,
                in[2], c->n, c->f, c->k);
}

static op_ctx op_cosine_linear(int n, int f, int k)
{
    op_ctx c = {.fwd64 = cosl_f64, .bwd64 = cosl_b64, .fwd32 = cosl_f32, .bwd32 = cosl_b32, .n = n, .f = f, .k = k,
                .n_in = 3};
    snprintf(c.name, sizeof c.name, "cosine_linear n%d f%d k%d", n, f, k);
    c.size[0] = (int64_t)n * f;
    c.size[1] = (int64_t)k * f;
    c.size[2] = 1;
    c.diff[0] = c.diff[1] = c.diff[2] = 1;
    c.gen[2] = GEN_SIGMA;
    c.out_size = (int64_t)n * k;
    c.save_size = cosine_linear_save_size(n, f, k);
    c.ws_size = fast_cosine_linear_workspace(n, f, k);
    return c;
}

static void l2_f64(op_ctx *c, double *const *in, double *out) { ref64_l2norm_forward(out, c->save64, in[0], c->n, c->f); }
static void l2_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)in;
    ref64_l2norm_backward(din[0], dout, out, c->save64, c->n, c->f);
}
static void l2_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_l2norm_forward, fast_l2norm_forward, out, c->save32, in[0], c->n, c->f);
}
static void l2_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)in;
    KERNEL_PAIR(ref_l2norm_backward, fast_l2norm_backward, din[0], dout, out, c->save32, c->n, c->f);
}

static op_ctx op_l2norm(int n, int f)
{
    op_ctx c = {.fwd64 = l2_f64, .bwd64 = l2_b64, .fwd32 = l2_f32, .bwd32 = l2_b32, .n = n, .f = f, .n_in = 1};
    snprintf(c.name, sizeof c.name, "l2norm n%d f%d", n, f);
    c.size[0] = c.out_size = (int64_t)n * f;
    c.diff[0] = 1;
    c.save_size = l2norm_save_size(n);
    return c;
}

/* softmax_xent, cosine_embed: one-value outputs */
static void xent_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_softmax_xent_forward(out, c->save64, in[0], in[1], c->n, c->k);
}
static void xent_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_softmax_xent_backward(din[0], dout[0], c->save64, in[1], c->n, c->k);
}
static void xent_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_softmax_xent_forward, fast_softmax_xent_forward, out, c->save32, in[0], in[1], c->n, c->k);
}
static void xent_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_softmax_xent_backward, fast_softmax_xent_backward, din[0], dout[0], c->save32, in[1], c->n, c->k);
}

static op_ctx op_xent(int n, int k)
{
    op_ctx c = {.fwd64 = xent_f64, .bwd64 = xent_b64, .fwd32 = xent_f32, .bwd32 = xent_b32, .n = n, .k = k,
                .n_in = 2};
    snprintf(c.name, sizeof c.name, "softmax_xent n%d k%d", n, k);
    c.size[0] = (int64_t)n * k;
    c.size[1] = n;
    c.diff[0] = 1;
    c.gen[1] = GEN_LABELS;
    c.out_size = 1;
    c.save_size = softmax_xent_save_size(n, k);
    return c;
}

static void cose_f64(op_ctx *c, double *const *in, double *out)
{
    ref64_cosine_embed_forward(out, c->save64, in[0], in[1], c->n, c->f);
}
static void cose_b64(op_ctx *c, double *const *in, const double *out, const double *dout, double *const *din)
{
    (void)out;
    ref64_cosine_embed_backward(din[0], dout[0], c->save64, in[0], in[1], c->n, c->f);
}
static void cose_f32(op_ctx *c, float *const *in, float *out)
{
    KERNEL_PAIR(ref_cosine_embed_forward, fast_cosine_embed_forward, out, c->save32, in[0], in[1], c->n, c->f);
}
static void cose_b32(op_ctx *c, float *const *in, const float *out, const float *dout, float *const *din)
{
    (void)out;
    KERNEL_PAIR(ref_cosine_embed_backward, fast_cosine_embed_backward, din[0], dout[0], c->save32, in[0], in[1], c->n,
                c->f);
}

static op_ctx op_cosine_embed(int n, int f)
{
    op_ctx c = {.fwd64 = cose_f64, .bwd64 = cose_b64, .fwd32 = cose_f32, .bwd32 = cose_b32, .n = n, .f = f,
                .n_in = 2};
    snprintf(c.name, sizeof c.name, "cosine_embed n%d f%d", n, f);
    c.size[0] = c.size[1] = (int64_t)n * f;
    c.diff[0] = 1; /* b gets no gradient */
    c.out_size = 1;
    c.save_size = cosine_embed_save_size(n);
    return c;
}

/* Draws input j of c as its gen says. */
static double *draw(const op_ctx *c, int j)
{
    const int64_t n = c->size[j];
    double *x = xcalloc(n, sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        switch (c->gen[j]) {
        case GEN_SYM: x[i] = sym(); break;
        case GEN_AWAY0: x[i] = (uni() < 0.5 ? -1 : 1) * (0.1 + uni()); break;
        case GEN_RELU6: {
            double v;
            do
                v = -2 + 10 * uni();
            while (fabs(v) < 0.1 || fabs(v - 6) < 0.1);
            x[i] = v;
            break;
        }
        case GEN_DISTINCT: x[i] = (double)i * 0.01 - 0.005 * (double)n; break;
        case GEN_LABELS: x[i] = floor(uni() * c->k); break;
        case GEN_GAMMA: x[i] = 0.5 + uni(); break;
        case GEN_SIGMA: x[i] = 2 + 2 * uni(); break;
        }
    }
    if (c->gen[j] == GEN_DISTINCT) /* shuffle the grid */
        for (int64_t i = n - 1; i > 0; i--) {
            const int64_t s = (int64_t)(uni() * (double)(i + 1));
            const double t = x[i];
            x[i] = x[s];
            x[s] = t;
        }
    return x;
}

static void alloc_state(op_ctx *c)
{
    c->save64 = xcalloc(c->save_size, sizeof(double));
    c->save32 = xcalloc(c->save_size, sizeof(float));
    c->run64 = xcalloc(2 * (int64_t)c->c, sizeof(double));
    c->run32 = xcalloc(2 * (int64_t)c->c, sizeof(float));
    for (int i = 0; i < c->c; i++) {
        c->run64[c->c + i] = 1;
        c->run32[c->c + i] = 1;
    }
    c->argmax = xcalloc(c->out_size, sizeof(int32_t));
}

static void free_state(op_ctx *c)
{
    free(c->save64);
    free(c->save32);
    free(c->run64);
    free(c->run32);
    free(c->argmax);
    free(c->par.ws);
}

/* ---- backward vs central differences, in double ---- */

static double weighted(const double *r, const double *out, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += r[i] * out[i];
    return s;
}

/* L = sum_i r_i out_i for random r; checks dL/d(every differentiable input)
 * at up to 48 points each, and that inputs without a gradient get none. */
static void fd_check(op_ctx c)
{
    alloc_state(&c);
    double *in[4] = {0}, *din[4] = {0};
    for (int j = 0; j < c.n_in; j++) {
        in[j] = draw(&c, j);
        if (c.diff[j])
            din[j] = xcalloc(c.size[j], sizeof(double));
    }
    double *out = xcalloc(c.out_size, sizeof *out), *r = xcalloc(c.out_size, sizeof *r);
    for (int64_t i = 0; i < c.out_size; i++)
        r[i] = sym();
    c.fwd64(&c, in, out);
    c.bwd64(&c, in, out, r, din);
    double worst = 0;
    int bad = 0;
    char first[512] = "";
    for (int j = 0; j < c.n_in; j++) {
        if (!c.diff[j])
            continue;
        const int64_t n = c.size[j], points = n < 48 ? n : 48;
        for (int64_t q = 0; q < points; q++) {
            const int64_t e = n <= 48 ? q : (int64_t)(uni() * (double)n);
            const double x0 = in[j][e];
            in[j][e] = x0 + FD_STEP;
            c.fwd64(&c, in, out);
            const double lp = weighted(r, out, c.out_size);
            in[j][e] = x0 - FD_STEP;
            c.fwd64(&c, in, out);
            const double lm = weighted(r, out, c.out_size);
            in[j][e] = x0;
            const double num = (lp - lm) / (2 * FD_STEP), ana = din[j][e];
            const double err = fabs(num - ana) / fmax(1, fabs(ana));
            worst = fmax(worst, err);
            if (err > FD_TOL && bad++ == 0)
                snprintf(first, sizeof first, "input %d element %lld: analytic %.10g, numeric %.10g", j, (long long)e,
                         ana, num);
        }
    }
    ck_assert_msg(!bad, "%s: %d gradients off by more than %g (max %.3g); first: %s", c.name, bad, FD_TOL, worst,
                  first);
    for (int j = 0; j < c.n_in; j++) {
        free(in[j]);
        free(din[j]);
    }
    free(out);
    free(r);
    free_state(&c);
}

static op_ctx fd_case(int i)
{
    switch (i) {
    case 0: return op_conv((conv_geom){.n = 2, .c = 3, .h = 7, .w = 6, .oc = 4, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 1);
    case 1: return op_conv((conv_geom){.n = 2, .c = 4, .h = 8, .w = 7, .oc = 6, .k = 3, .stride = 2, .pad = 1, .groups = 2}, 1);
    case 2: return op_conv((conv_geom){.n = 2, .c = 4, .h = 7, .w = 7, .oc = 4, .k = 3, .stride = 2, .pad = 1, .groups = 4}, 0);
    case 3: return op_conv((conv_geom){.n = 2, .c = 2, .h = 6, .w = 5, .oc = 4, .k = 5, .stride = 1, .pad = 2, .groups = 2}, 1);
    case 4: return op_conv((conv_geom){.n = 3, .c = 5, .h = 4, .w = 3, .oc = 3, .k = 1, .stride = 1, .pad = 0, .groups = 1}, 0);
    case 5: return op_conv((conv_geom){.n = 1, .c = 3, .h = 9, .w = 8, .oc = 2, .k = 7, .stride = 2, .pad = 3, .groups = 1}, 0);
    case 6: return op_bn(3, 2, 5);
    case 7: return op_bn(2, 3, 1);
    case 8: return op_elementwise("relu", 40);
    case 9: return op_elementwise("relu6", 40);
    case 10: return op_elementwise("add", 30);
    case 11: return op_maxpool(2, 2, 7, 7, 3, 2, 1);
    case 12: return op_maxpool(1, 3, 6, 5, 2, 2, 0);
    case 13: return op_avgpool(2, 3, 10);
    case 14: return op_slice(2, 5, 6, 1, 3);
    case 15: return op_concat(2, 2, 3, 4);
    case 16: return op_shuffle(2, 6, 3, 3);
    case 17: return op_linear(3, 5, 4, 1);
    case 18: return op_linear(2, 3, 2, 0);
    case 19: return op_cosine_linear(3, 6, 4);
    case 20: return op_l2norm(3, 5);
    case 21: return op_xent(5, 4);
    case 22: return op_cosine_embed(4, 6);
    }
    return op_l2norm(1, 1);
}
#define N_FD_CASES 23

START_TEST(backward_matches_differences) { fd_check(fd_case(_i)); }
END_TEST

/* ---- fast vs reference, in float ---- */

static float *to_float(const double *x, int64_t n)
{
    float *y = xcalloc(n, sizeof *y);
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

/* Runs case c through the reference and the fast kernels on threads threads:
 * outputs, running statistics and (accumulated onto random values, so that
 * += is checked too) input gradients must agree within NMSE_TOL. */
static void fast_check_mode(op_ctx c, int threads, int mode, int wino)
{
    op_ctx ref = c, fast = c;
    alloc_state(&ref);
    alloc_state(&fast);
    fast.fast = mode;
    fast.par.threads = threads;
    if (mode >= 2) {
        char why[256] = "";
        int64_t ws = 0;
        const int b = mode == 3 ? dconv_block() : 0;
        ck_assert_msg(dconv_create(&fast.dc, &c.g, c.n_in > 2, b, b, wino, -1, threads, &ws, why, sizeof why) == 0,
                      "%s: %s", c.name, why);
        c.ws_size = ws > c.ws_size ? ws : c.ws_size;
        /* the rule: Winograd exactly for 3x3 stride-1 ungrouped shapes, where oneDNN has it (AVX-512) */
        const int wino_shape = wino && c.g.k == 3 && c.g.stride == 1 && c.g.groups == 1 && c.g.c >= 16 &&
                               c.g.oc >= 16 && dconv_block() == 16;
        ck_assert_msg(!strstr(dconv_impl(fast.dc), "wino") == !wino_shape, "%s, wino=%d: %s", c.name, wino,
                      dconv_impl(fast.dc));
    }
    fast.par.ws_size = c.ws_size;
    fast.par.ws = xcalloc(c.ws_size, sizeof(float));
    float *in[4] = {0}, *dref[4] = {0}, *dfast[4] = {0};
    for (int j = 0; j < c.n_in; j++) {
        double *x = draw(&c, j);
        in[j] = to_float(x, c.size[j]);
        free(x);
        if (c.diff[j]) {
            dref[j] = xcalloc(c.size[j], sizeof(float));
            for (int64_t i = 0; i < c.size[j]; i++)
                dref[j][i] = (float)sym();
            dfast[j] = xcalloc(c.size[j], sizeof(float));
            memcpy(dfast[j], dref[j], (size_t)c.size[j] * sizeof(float));
        }
    }
    float *oref = xcalloc(c.out_size, sizeof(float)), *ofast = xcalloc(c.out_size, sizeof(float));
    float *dout = xcalloc(c.out_size, sizeof(float));
    for (int64_t i = 0; i < c.out_size; i++)
        dout[i] = (float)sym();
    ref.fwd32(&ref, in, oref);
    fast.fwd32(&fast, in, ofast);
    double e = nmse(oref, ofast, c.out_size);
    ck_assert_msg(e <= NMSE_TOL, "%s, %d threads: forward NMSE %.3g > %g", c.name, threads, e, NMSE_TOL);
    if (c.c && c.fwd32 == bn_f32) {
        e = nmse(ref.run32, fast.run32, 2 * (int64_t)c.c);
        ck_assert_msg(e <= NMSE_TOL, "%s: running statistics NMSE %.3g", c.name, e);
    }
    ref.bwd32(&ref, in, oref, dout, dref);
    fast.bwd32(&fast, in, ofast, dout, dfast);
    for (int j = 0; j < c.n_in; j++) {
        if (!c.diff[j])
            continue;
        e = nmse(dref[j], dfast[j], c.size[j]);
        ck_assert_msg(e <= NMSE_TOL, "%s, %d threads: gradient of input %d NMSE %.3g > %g", c.name, threads, j, e,
                      NMSE_TOL);
    }
    /* the same thread count gives the same bits */
    float *again = xcalloc(c.out_size, sizeof(float));
    fast.fwd32(&fast, in, again);
    ck_assert_msg(memcmp(again, ofast, (size_t)c.out_size * sizeof(float)) == 0, "%s: forward not reproducible",
                  c.name);
    for (int j = 0; j < c.n_in; j++) {
        free(in[j]);
        free(dref[j]);
        free(dfast[j]);
    }
    free(oref);
    free(ofast);
    free(dout);
    free(again);
    dconv_free(fast.dc);
    free_state(&ref);
    free_state(&fast);
}

static void fast_check(op_ctx c, int threads) { fast_check_mode(c, threads, 1, 0); }

/* Convolutions of every kind the fast path distinguishes. */
static const struct {
    conv_geom g;
    int bias;
} conv_cases[] = {
    {{.n = 3, .c = 5, .h = 9, .w = 7, .oc = 6, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 1},
    {{.n = 2, .c = 4, .h = 11, .w = 10, .oc = 8, .k = 3, .stride = 2, .pad = 1, .groups = 1}, 0},
    {{.n = 3, .c = 6, .h = 8, .w = 8, .oc = 4, .k = 3, .stride = 1, .pad = 0, .groups = 2}, 1},  /* groups */
    {{.n = 3, .c = 8, .h = 9, .w = 9, .oc = 8, .k = 3, .stride = 1, .pad = 1, .groups = 8}, 1},  /* depthwise */
    {{.n = 2, .c = 6, .h = 10, .w = 7, .oc = 6, .k = 3, .stride = 2, .pad = 1, .groups = 6}, 0}, /* depthwise s2 */
    {{.n = 2, .c = 3, .h = 7, .w = 7, .oc = 6, .k = 5, .stride = 1, .pad = 2, .groups = 3}, 0},  /* multiplier 2 */
    {{.n = 2, .c = 4, .h = 10, .w = 10, .oc = 4, .k = 9, .stride = 1, .pad = 4, .groups = 4}, 0}, /* big depthwise */
    {{.n = 2, .c = 4, .h = 12, .w = 37, .oc = 4, .k = 3, .stride = 1, .pad = 1, .groups = 4}, 1}, /* wide rows */
    {{.n = 2, .c = 3, .h = 9, .w = 27, .oc = 6, .k = 3, .stride = 1, .pad = 1, .groups = 3}, 0},
    {{.n = 2, .c = 4, .h = 20, .w = 41, .oc = 4, .k = 3, .stride = 2, .pad = 1, .groups = 4}, 0},
    {{.n = 2, .c = 3, .h = 5, .w = 6, .oc = 3, .k = 1, .stride = 1, .pad = 1, .groups = 3}, 1},  /* pad > k-1 */
    {{.n = 2, .c = 4, .h = 17, .w = 18, .oc = 4, .k = 2, .stride = 2, .pad = 1, .groups = 4}, 0},
    {{.n = 3, .c = 16, .h = 6, .w = 5, .oc = 12, .k = 1, .stride = 1, .pad = 0, .groups = 1}, 1}, /* 1x1 */
    {{.n = 2, .c = 8, .h = 9, .w = 9, .oc = 16, .k = 1, .stride = 2, .pad = 0, .groups = 1}, 0},  /* 1x1 s2 */
    {{.n = 2, .c = 3, .h = 20, .w = 18, .oc = 8, .k = 7, .stride = 2, .pad = 3, .groups = 1}, 0}, /* stem */
    {{.n = 1, .c = 3, .h = 70, .w = 70, .oc = 4, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 1}, /* tiles */
    {{.n = 3, .c = 4, .h = 72, .w = 64, .oc = 5, .k = 1, .stride = 1, .pad = 0, .groups = 1}, 0}, /* 1x1 tiles */
    {{.n = 7, .c = 8, .h = 4, .w = 4, .oc = 8, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 1},   /* batched */
    {{.n = 5, .c = 32, .h = 2, .w = 2, .oc = 16, .k = 1, .stride = 1, .pad = 0, .groups = 2}, 0}, /* batched 1x1 */
    {{.n = 1, .c = 4, .h = 5, .w = 5, .oc = 3, .k = 3, .stride = 3, .pad = 0, .groups = 1}, 0},   /* one image */
    {{.n = 3, .c = 16, .h = 9, .w = 10, .oc = 20, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 1}, /* Winograd */
    {{.n = 2, .c = 28, .h = 8, .w = 8, .oc = 32, .k = 3, .stride = 1, .pad = 1, .groups = 1}, 0},  /* Winograd */
    {{.n = 4, .c = 48, .h = 2, .w = 2, .oc = 48, .k = 3, .stride = 1, .pad = 1, .groups = 48}, 0}, /* 2x2 depthwise */
};
#define N_CONV_CASES (int)(sizeof conv_cases / sizeof conv_cases[0])

START_TEST(fast_conv_matches_reference)
{
    rng_seed(100 + (uint64_t)_i);
    for (int threads = 1; threads <= 2; threads++)
        fast_check(op_conv(conv_cases[_i].g, conv_cases[_i].bias), threads);
}
END_TEST

/* The same cases on oneDNN (where the backend was built with it; the
 * suite's last test says which), every kind, depthwise too (conv=dnnl). */
START_TEST(dnnl_conv_matches_reference)
{
    if (!dconv_available())
        return;
    rng_seed(300 + (uint64_t)_i);
    for (int threads = 1; threads <= 2; threads++)
        for (int wino = 0; wino <= 1; wino++) /* Winograd where the shape has it (3x3, stride 1) */
            for (int mode = 2; mode <= 3; mode++) /* plain arrays, channel-blocked arrays */
                fast_check_mode(op_conv(conv_cases[_i].g, conv_cases[_i].bias), threads, mode, wino);
}
END_TEST

/* The other ops, big enough (> 32768 elements) that the threaded paths run. */
static op_ctx fast_case(int i)
{
    switch (i) {
    case 0: return op_bn(4, 16, 24 * 24);
    case 1: return op_bn(3, 5, 7);
    case 2: return op_elementwise("relu", 50000);
    case 3: return op_elementwise("relu6", 50000);
    case 4: return op_elementwise("add", 50000);
    case 5: return op_maxpool(4, 16, 23, 24, 3, 2, 1);
    case 6: return op_maxpool(2, 3, 8, 8, 2, 2, 0);
    case 7: return op_avgpool(8, 64, 81);
    case 8: return op_slice(6, 24, 300, 5, 12);
    case 9: return op_concat(6, 10, 14, 300);
    case 10: return op_shuffle(6, 24, 300, 2);
    case 11: return op_linear(64, 256, 100, 1);
    case 12: return op_linear(3, 7, 5, 0);
    case 13: return op_cosine_linear(64, 256, 100);
    case 14: return op_cosine_linear(3, 5, 2);
    case 15: return op_l2norm(128, 512);
    case 16: return op_xent(128, 300);
    case 17: return op_cosine_embed(128, 512);
    }
    return op_l2norm(1, 1);
}
#define N_FAST_CASES 18

START_TEST(fast_ops_match_reference)
{
    rng_seed(200 + (uint64_t)_i);
    for (int threads = 1; threads <= 2; threads++)
        fast_check(fast_case(_i), threads);
}
END_TEST

START_TEST(maxpool_first_max_on_ties)
{
    /* a 2x3 plane of equal values, one 2x2 window with pad 1: PyTorch picks the first max */
    const float x[6] = {1, 1, 1, 1, 1, 1};
    conv_geom g = {.n = 1, .c = 1, .h = 2, .w = 3, .oc = 1, .k = 2, .stride = 2, .pad = 1, .groups = 1};
    conv_geom_finish(&g);
    ck_assert_int_eq(g.oh * g.ow, 4);
    float out[4], out2[4];
    int32_t am[4], am2[4];
    cpu_par par = {2, NULL, 0};
    ref_maxpool_forward(out, am, x, &g);
    fast_maxpool_forward(&par, out2, am2, x, &g);
    const int32_t want[4] = {0, 1, 3, 4}; /* each window's first in-range tap */
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(am[i], want[i]);
        ck_assert_int_eq(am2[i], want[i]);
        ck_assert(out[i] == 1 && out2[i] == 1);
    }
}
END_TEST

START_TEST(conv_backward_reproducible)
{
    /* weight gradients are summed per thread, then in thread order: same bits every run */
    conv_geom g = {.n = 6, .c = 8, .h = 12, .w = 12, .oc = 16, .k = 3, .stride = 1, .pad = 1, .groups = 1};
    conv_geom_finish(&g);
    const int64_t xs = (int64_t)g.n * g.c * g.h * g.w, ws = (int64_t)g.oc * g.c * 9, ys = (int64_t)g.n * g.oc * g.oh * g.ow;
    rng_seed(7);
    float *x = xcalloc(xs, 4), *w = xcalloc(ws, 4), *dy = xcalloc(ys, 4);
    for (int64_t i = 0; i < xs; i++)
        x[i] = (float)sym();
    for (int64_t i = 0; i < ws; i++)
        w[i] = (float)sym();
    for (int64_t i = 0; i < ys; i++)
        dy[i] = (float)sym();
    cpu_par par = {2, NULL, fast_conv2d_workspace(&g, 2)};
    par.ws = xcalloc(par.ws_size, 4);
    float *dx[2] = {xcalloc(xs, 4), xcalloc(xs, 4)}, *dw[2] = {xcalloc(ws, 4), xcalloc(ws, 4)};
    float *db[2] = {xcalloc(g.oc, 4), xcalloc(g.oc, 4)};
    for (int r = 0; r < 2; r++)
        fast_conv2d_backward(&par, dx[r], dw[r], db[r], dy, x, w, &g);
    ck_assert(memcmp(dx[0], dx[1], (size_t)xs * 4) == 0);
    ck_assert(memcmp(dw[0], dw[1], (size_t)ws * 4) == 0);
    ck_assert(memcmp(db[0], db[1], (size_t)g.oc * 4) == 0);
    for (int r = 0; r < 2; r++) {
        free(dx[r]);
        free(dw[r]);
        free(db[r]);
    }
    free(x);
    free(w);
    free(dy);
    free(par.ws);
}
END_TEST

START_TEST(sgd_kernel_matches_pytorch_formula)
{
    /* torch.optim.SGD, by hand in double, three steps */
    const struct {
        float lr, momentum, wd;
        int nesterov;
    } cases[] = {{0.1f, 0, 0, 0}, {0.05f, 0.9f, 5e-4f, 0}, {0.05f, 0.9f, 1e-3f, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        enum { N = 5 };
        float p[N], v[N] = {0}, p2[N], v2[N] = {0}, g[N];
        double hp[N], hv[N] = {0};
        for (int i = 0; i < N; i++)
            hp[i] = p[i] = p2[i] = (float)(0.3 * i - 0.5);
        cpu_par par = {2, NULL, 0};
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < N; i++)
                g[i] = (float)(0.1 * (i + 1) * (step % 2 ? -1 : 1));
            ref_sgd_update(p, g, v, N, cases[c].lr, cases[c].momentum, cases[c].wd, cases[c].nesterov);
            fast_sgd_update(&par, p2, g, v2, N, cases[c].lr, cases[c].momentum, cases[c].wd, cases[c].nesterov);
            for (int i = 0; i < N; i++) {
                double d = g[i] + (double)cases[c].wd * hp[i];
                hv[i] = step == 0 ? d : cases[c].momentum * hv[i] + d; /* PyTorch: buf = d on the first step */
                d = cases[c].nesterov ? d + cases[c].momentum * hv[i] : hv[i];
                hp[i] -= cases[c].lr * d;
            }
        }
        for (int i = 0; i < N; i++) {
            ck_assert_msg(fabs(p[i] - hp[i]) < HAND_TOL, "case %zu: param %d %.9g, by hand %.9g", c, i, p[i], hp[i]);
            ck_assert(p[i] == p2[i] && v[i] == v2[i]);
        }
    }
}
END_TEST

/* ---- plans, through the plugin ---- */

static const cs_backend_iface *cpu(void)
{
    const cs_plugin *p = cs_registry_find(tu_registry(), CS_KIND_BACKEND, "cpu");
    ck_assert_msg(p != NULL, "the cpu backend is not loaded");
    return p->iface;
}

/* A graph prepared on the cpu backend, through the front door (backend.h). */
typedef struct run {
    cs_device *dev;
    cs_plan *plan;
    cs_graph *g;
} run;

static run start(cs_graph *g, const char *device)
{
    run r = {NULL, NULL, g};
    cs_error err = {0};
    ck_assert_msg(cs_device_open(cpu(), "cpu", device, &r.dev, &err) == CS_OK, "open '%s': %s", device, err.msg);
    ck_assert_msg(cs_plan_prepare(r.dev, g, &r.plan, &err) == CS_OK, "prepare: %s", err.msg);
    return r;
}

static void stop(run *r)
{
    cs_plan_release(r->plan);
    cs_device_close(r->dev);
    cs_graph_free(r->g);
}

#define OK(call) \
    do { \
        cs_error err_ = {0}; \
        int rc_ = (call); \
        ck_assert_msg(rc_ == CS_OK, "%s: %s", #call, err_.msg); \
    } while (0)
/* the calls below name their error struct err_ */
#define E (&err_)

/* Writes the graph's initial parameters and buffers (seeded) into the plan, frozen copies too. */
static void init_params(run *r, uint64_t seed)
{
    float *p = xcalloc(cs_graph_n_params(r->g), 4), *b = xcalloc(cs_graph_n_buffers(r->g), 4);
    cs_graph_init(r->g, seed, p, b);
    OK(cs_plan_write(r->plan, CS_ARENA_PARAMS, 0, cs_graph_n_params(r->g), p, E));
    OK(cs_plan_write(r->plan, CS_ARENA_BUFFERS, 0, cs_graph_n_buffers(r->g), b, E));
    OK(cs_plan_write(r->plan, CS_ARENA_FROZEN_PARAMS, 0, cs_graph_n_params(r->g), p, E));
    OK(cs_plan_write(r->plan, CS_ARENA_FROZEN_BUFFERS, 0, cs_graph_n_buffers(r->g), b, E));
    free(p);
    free(b);
}

static float *read_arena(run *r, cs_arena a, int64_t n)
{
    float *x = xcalloc(n, 4);
    OK(cs_plan_read(r->plan, a, 0, n, x, E));
    return x;
}

static float loss_of(run *r, int t)
{
    float v;
    OK(cs_plan_read_tensor(r->plan, t, &v, 1, E));
    return v;
}

/* conv-bn-relu-avgpool-linear-xent on [batch,3,8,8] images, 4 classes. */
typedef struct tiny {
    cs_graph *g;
    int x, labels, logits, loss;
} tiny;

static tiny tiny_net(int batch)
{
    tiny t = {cs_graph_new(batch), 0, 0, 0, 0};
    t.x = cs_input(t.g, "x", 3, 8, 8);
    t.labels = cs_input_vec(t.g, "labels", 0);
    int h = cs_conv2d(t.g, "conv1", t.x, 8, 3, 1, 1, 1, 0);
    h = cs_batchnorm(t.g, "bn1", h);
    h = cs_relu(t.g, h);
    h = cs_avgpool(t.g, h);
    t.logits = cs_linear(t.g, "fc", h, 4, 1, CS_INIT_UNIFORM_FAN_IN);
    t.loss = cs_softmax_xent(t.g, t.logits, t.labels);
    cs_graph_add_loss(t.g, t.loss, 1);
    cs_error err = {0};
    ck_assert_msg(cs_graph_status(t.g, &err) == 0, "%s", err.msg);
    return t;
}

/* A fixed batch: images in (-1, 1), labels i % 4. */
static void feed(run *r, const tiny *t, int n, uint64_t seed)
{
    rng_seed(seed);
    float *x = xcalloc((int64_t)n * 3 * 64, 4), *l = xcalloc(n, 4);
    for (int64_t i = 0; i < (int64_t)n * 3 * 64; i++)
        x[i] = (float)sym();
    for (int i = 0; i < n; i++)
        l[i] = (float)(i % 4);
    OK(cs_plan_set_input(r->plan, t->x, x, n, E));
    OK(cs_plan_set_input(r->plan, t->labels, l, n, E));
    free(x);
    free(l);
}

START_TEST(device_strings)
{
    const cs_backend_iface *b = cpu();
    cs_device *dev = NULL;
    cs_error err = {0};
    char desc[512];
    ck_assert_int_eq(cs_device_open(b, "cpu", "threads=1", &dev, &err), CS_OK);
    cs_device_describe(dev, desc, sizeof desc);
    ck_assert_msg(strncmp(desc, "cpu: ", 5) == 0 && strstr(desc, ", 1 thread, ") && strstr(desc, "GEMM: OpenBLAS "),
                  "%s", desc);
    /* the vector extension and the convolution family are named */
    ck_assert_msg(strstr(desc, fast_cpu_isa()) && strstr(desc, dconv_available() ? "convolutions: oneDNN " :
                                                                                   "convolutions: im2col + GEMM"),
                  "%s", desc);
    cs_device_close(dev);
    ck_assert_int_eq(cs_device_open(b, "cpu", "threads=1,conv=im2col", &dev, &err), CS_OK);
    cs_device_describe(dev, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "convolutions: im2col + GEMM (conv=im2col)"), "%s", desc);
    cs_device_close(dev);
    ck_assert_int_eq(cs_device_open(b, "cpu", "", &dev, &err), CS_OK);
    cs_device_describe(dev, desc, sizeof desc);
    char core[64];
    snprintf(core, sizeof core, "(%s kernel, ", fast_blas_corename());
    ck_assert_msg(strstr(desc, core) != NULL, "%s", desc);
    /* on an AVX2 or AVX-512 CPU OpenBLAS runs that extension's kernels, never
     * the generic SSE3 ones it falls to on a CPU model it does not know */
    if (!strcmp(fast_cpu_isa(), "avx512") || !strcmp(fast_cpu_isa(), "avx2"))
        ck_assert_msg(strcasecmp(fast_blas_corename(), "Prescott") && strcasecmp(fast_blas_corename(), "Core2"),
                      "%s", desc);
    cs_device_close(dev);
    const char *bad[] = {"gpu0", "threads=0", "threads=x", "threads=", "threads=99999", "conv=fft", "threads=2,x=1",
                         "fuse=maybe", "layout=nhwc"};
    const char *says[] = {"threads=N", "threads=", "threads=", "threads=", "threads=", "expected auto, dnnl or im2col",
                          "unknown option 'x=1'", "expected on or off", "expected auto or plain"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(cs_device_open(b, "cpu", bad[i], &dev, &err), CS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, bad[i]) && strstr(err.msg, says[i]), "%s", err.msg);
    }
    if (!dconv_available()) { /* conv=dnnl without oneDNN is refused, naming why */
        ck_assert_int_eq(cs_device_open(b, "cpu", "conv=dnnl", &dev, &err), CS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, "conv=dnnl, but oneDNN not built in"), "%s", err.msg);
    }
    ck_assert(setenv("CILSCALE_THREADS", "3", 1) == 0);
    ck_assert_int_eq(cs_device_open(b, "cpu", "", &dev, &err), CS_OK);
    cs_device_describe(dev, desc, sizeof desc);
    ck_assert_msg(strstr(desc, ", 3 threads, ") != NULL, "%s", desc);
    cs_device_close(dev);
    ck_assert(setenv("CILSCALE_THREADS", "lots", 1) == 0);
    ck_assert_int_eq(cs_device_open(b, "cpu", "", &dev, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "CILSCALE_THREADS='lots'") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_device_open(b, "cpu", "threads=2", &dev, &err), CS_OK); /* an explicit device wins */
    cs_device_close(dev);
    ck_assert(unsetenv("CILSCALE_THREADS") == 0);
}
END_TEST

START_TEST(prepare_refuses_unknown_op)
{
    tiny t = tiny_net(2);
    t.g->nodes[2].op = (cs_op)99;
    const cs_backend_iface *b = cpu();
    cs_device *dev = NULL;
    cs_plan *plan = NULL;
    cs_error err = {0};
    ck_assert_int_eq(cs_device_open(b, "cpu", "threads=1", &dev, &err), CS_OK);
    ck_assert_int_eq(cs_plan_prepare(dev, t.g, &plan, &err), CS_ERR_ARG);
    ck_assert_ptr_null(plan);
    char want[256];
    snprintf(want, sizeof want, "node 2 '%s'", cs_graph_node(t.g, 2)->name);
    ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, "op 99"), "%s", err.msg);
    /* a shape that does not fit its op is refused too, by name */
    t.g->nodes[2].op = CS_OP_RELU;
    t.g->nodes[0].a.stride = 2;
    ck_assert_int_eq(cs_plan_prepare(dev, t.g, &plan, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "node 0 'conv1' (conv2d)") != NULL, "%s", err.msg);
    cs_device_close(dev);
    cs_graph_free(t.g);
}
END_TEST

START_TEST(plan_misuse_is_refused)
{
    tiny t = tiny_net(4);
    run r = start(t.g, "threads=1");
    init_params(&r, 1);
    cs_error err = {0};
    float buf[64] = {0};
    ck_assert_int_eq(cs_plan_backward(r.plan, 4, &err), CS_ERR_ARG); /* no forward yet */
    ck_assert_msg(strstr(err.msg, "not a training one") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_forward(r.plan, 4, CS_FWD_TRAIN | CS_FWD_FROZEN, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r.plan, 5, 0, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r.plan, 0, 0, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r.plan, 4, 8, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_read(r.plan, CS_ARENA_PARAMS, cs_graph_n_params(t.g) - 2, 3, buf, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "params arena") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_write(r.plan, CS_ARENA_COUNT_, 0, 1, buf, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_set_input(r.plan, t.logits, buf, 1, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_read_tensor(r.plan, cs_graph_find(t.g, "fc.weight"), buf, 1, &err), CS_ERR_ARG);
    /* a label that is not a class */
    feed(&r, &t, 4, 1);
    const float bad[4] = {0, 1, 4, 2};
    OK(cs_plan_set_input(r.plan, t.labels, bad, 4, E));
    ck_assert_int_eq(cs_plan_forward(r.plan, 4, CS_FWD_TRAIN, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "label 4 in row 2 of labels") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_backward(r.plan, 4, &err), CS_ERR_ARG); /* the failed forward left nothing */
    /* batch norm cannot train on one value per channel */
    feed(&r, &t, 4, 1);
    OK(cs_plan_forward(r.plan, 4, CS_FWD_TRAIN, E));
    ck_assert_int_eq(cs_plan_backward(r.plan, 3, &err), CS_ERR_ARG); /* rows differ from the forward's */
    OK(cs_plan_forward(r.plan, 4, 0, E));
    ck_assert_int_eq(cs_plan_backward(r.plan, 4, &err), CS_ERR_ARG); /* an eval forward came last */
    cs_sgd bad_opt = {.lr = 0.1f, .momentum = 0, .nesterov = 1};
    ck_assert_int_eq(cs_plan_update(r.plan, &bad_opt, &err), CS_ERR_ARG);
    const int64_t out_of_range[1][2] = {{cs_graph_n_params(t.g) - 1, 2}};
    cs_sgd bad_frozen = {.lr = 0.1f, .frozen = out_of_range, .n_frozen = 1};
    ck_assert_int_eq(cs_plan_update(r.plan, &bad_frozen, &err), CS_ERR_ARG);
    stop(&r);
}
END_TEST

START_TEST(update_matches_hand_sgd)
{
    /* SGD through the plan on hand-written gradients, momentum, weight decay,
     * Nesterov, frozen ranges; compared with torch.optim.SGD's rule in double */
    const struct {
        float lr, momentum, wd;
        int nesterov;
    } cases[] = {{0.1f, 0, 0, 0}, {0.05f, 0.9f, 5e-4f, 0}, {0.02f, 0.9f, 1e-3f, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tiny t = tiny_net(2);
        run r = start(t.g, "threads=2");
        init_params(&r, 3);
        const int64_t n = cs_graph_n_params(t.g);
        float *p0 = read_arena(&r, CS_ARENA_PARAMS, n), *g = xcalloc(n, 4);
        double *hp = xcalloc(n, 8), *hv = xcalloc(n, 8);
        for (int64_t i = 0; i < n; i++)
            hp[i] = p0[i];
        /* fc.bias is frozen (LUCIR's old classes): untouched, momentum and all */
        const cs_tensor *fb = cs_graph_tensor(t.g, cs_graph_find(t.g, "fc.bias"));
        const int64_t frozen[1][2] = {{fb->offset, fb->size}};
        cs_sgd opt = {cases[c].lr, cases[c].momentum, cases[c].wd, cases[c].nesterov, frozen, 1};
        for (int step = 0; step < 3; step++) {
            for (int64_t i = 0; i < n; i++)
                g[i] = (float)(0.01 * ((i * 7 + step * 3) % 11) - 0.05);
            OK(cs_plan_write(r.plan, CS_ARENA_GRADS, 0, n, g, E));
            OK(cs_plan_update(r.plan, &opt, E));
            for (int64_t i = 0; i < n; i++) {
                if (i >= fb->offset && i < fb->offset + fb->size)
                    continue;
                double d = g[i] + (double)cases[c].wd * hp[i];
                hv[i] = cases[c].momentum * hv[i] + d;
                d = cases[c].nesterov ? d + cases[c].momentum * hv[i] : hv[i];
                hp[i] -= cases[c].lr * d;
            }
        }
        float *p = read_arena(&r, CS_ARENA_PARAMS, n), *v = read_arena(&r, CS_ARENA_MOMENTUM, n);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(fabs(p[i] - hp[i]) < HAND_TOL, "case %zu: param %lld is %.9g, by hand %.9g", c,
                          (long long)i, p[i], hp[i]);
        for (int64_t i = fb->offset; i < fb->offset + fb->size; i++)
            ck_assert(p[i] == p0[i] && v[i] == 0);
        free(p0);
        free(p);
        free(v);
        free(g);
        free(hp);
        free(hv);
        stop(&r);
    }
}
END_TEST

START_TEST(tiny_net_learns)
{
    tiny t = tiny_net(8);
    run r = start(t.g, "");
    init_params(&r, 11);
    feed(&r, &t, 8, 5);
    const cs_sgd opt = {.lr = 0.3f, .momentum = 0.9f, .weight_decay = 5e-4f};
    float first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        OK(cs_plan_step(r.plan, 8, &opt, E));
        last = loss_of(&r, t.loss);
        if (step == 0)
            first = last;
    }
    ck_assert_msg(isfinite(last) && last < 0.5f * first, "loss %.4f after 20 steps, %.4f after the first", last,
                  first);
    stop(&r);
}
END_TEST

/* n steps of the tiny network (batch 8) on threads, params returned. */
static float *train_tiny(const char *device, int steps, int64_t *n_params)
{
    tiny t = tiny_net(8);
    run r = start(t.g, device);
    init_params(&r, 21);
    const cs_sgd opt = {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = 1};
    for (int s = 0; s < steps; s++) {
        feed(&r, &t, 8, 100 + (uint64_t)s);
        OK(cs_plan_forward(r.plan, 8, CS_FWD_TRAIN, E));
        OK(cs_plan_backward(r.plan, 8, E));
        OK(cs_plan_update(r.plan, &opt, E));
    }
    *n_params = cs_graph_n_params(t.g);
    float *p = read_arena(&r, CS_ARENA_PARAMS, cs_graph_n_params(t.g));
    stop(&r);
    return p;
}

START_TEST(same_seed_same_bits)
{
    int64_t n;
    float *a = train_tiny("threads=2", 6, &n), *b = train_tiny("threads=2", 6, &n);
    ck_assert_msg(memcmp(a, b, (size_t)n * 4) == 0, "two runs with the same seed and threads differ");
    free(a);
    free(b);
}
END_TEST

/* A residual block (conv, bn, relu, conv, bn, add, relu) ending in average
 * pooling: everything the blocked layout covers, with 20 channels so that the
 * last block is part padding. */
static cs_graph *residual_net(int batch, int *mid)
{
    cs_graph *g = cs_graph_new(batch);
    int x = cs_input(g, "x", 3, 8, 8), labels = cs_input_vec(g, "labels", 0);
    int a = cs_relu(g, cs_batchnorm(g, "bn0", cs_conv2d(g, "conv0", x, 20, 3, 1, 1, 1, 0)));
    int h = cs_relu(g, cs_batchnorm(g, "bn1", cs_conv2d(g, "conv1", a, 20, 3, 1, 1, 1, 0)));
    h = cs_batchnorm(g, "bn2", cs_conv2d(g, "conv2", h, 20, 3, 2, 1, 1, 1));
    h = cs_relu(g, cs_add(g, h, cs_conv2d(g, "down", a, 20, 1, 2, 0, 1, 0)));
    *mid = h;
    int logits = cs_linear(g, "fc", cs_avgpool(g, h), 4, 1, CS_INIT_UNIFORM_FAN_IN);
    cs_graph_add_loss(g, cs_softmax_xent(g, logits, labels), 1);
    cs_error err = {0};
    ck_assert_msg(cs_graph_status(g, &err) == 0, "%s", err.msg);
    return g;
}

/* One training forward and backward of residual_net on device; the gradients,
 * the loss and the blocked-or-not tensor mid, read back. */
static float *residual_grads(const char *device, int n, float *loss, float *mid_out)
{
    int mid;
    cs_graph *g = residual_net(8, &mid);
    run r = start(g, device);
    init_params(&r, 5);
    OK(cs_plan_profile(r.plan, NULL, 0, E));
    rng_seed(77);
    float *x = xcalloc(8 * 3 * 64, 4), l[8];
    for (int i = 0; i < 8 * 3 * 64; i++)
        x[i] = (float)sym();
    for (int i = 0; i < 8; i++)
        l[i] = (float)(i % 4);
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "x"), x, n, E));
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "labels"), l, n, E));
    OK(cs_plan_forward(r.plan, n, CS_FWD_TRAIN, E));
    OK(cs_plan_backward(r.plan, n, E));
    *loss = loss_of(&r, cs_graph_loss(g, 0));
    OK(cs_plan_read_tensor(r.plan, mid, mid_out, n, E));
    float *gr = read_arena(&r, CS_ARENA_GRADS, cs_graph_n_params(g));
    /* the profile says how many activations were blocked: all 4-D ones here
     * (with oneDNN), none with layout=plain */
    char report[4096], want[64];
    OK(cs_plan_profile(r.plan, report, sizeof report, E));
    const int blocked = dconv_available() && !strstr(device, "layout=plain");
    snprintf(want, sizeof want, "channel-blocked (nChw%dc): %d of 11 4-D", blocked ? dconv_block() : 0,
             blocked ? 11 : 0);
    ck_assert_msg(strstr(report, want), "%s: want '%s' in\n%s", device, want, report);
    free(x);
    stop(&r);
    return gr;
}

/* Channel-blocked activations between oneDNN convolutions give the plain
 * layout's numbers: loss, every gradient, a tensor read back; at the full
 * batch and at fewer rows. */
START_TEST(blocked_layout_matches_plain)
{
    int mid;
    cs_graph *g = residual_net(8, &mid);
    const int64_t np = cs_graph_n_params(g), nm = 8 * cs_tensor_row(cs_graph_tensor(g, mid));
    cs_graph_free(g);
    for (int n = 8; n >= 5; n -= 3) {
        float la, lb, *ma = xcalloc(nm, 4), *mb = xcalloc(nm, 4);
        float *a = residual_grads("threads=2,layout=plain", n, &la, ma);
        float *b = residual_grads("threads=2", n, &lb, mb);
        ck_assert_msg(fabsf(la - lb) <= 1e-5f * fabsf(la), "%d rows: loss %.9g (plain) vs %.9g (blocked)", n, la, lb);
        double e = nmse(a, b, np);
        ck_assert_msg(e <= NMSE_TOL, "%d rows: gradients NMSE %.3g > %g", n, e, NMSE_TOL);
        e = nmse(ma, mb, nm * n / 8);
        ck_assert_msg(e <= NMSE_TOL, "%d rows: tensor read back NMSE %.3g > %g", n, e, NMSE_TOL);
        free(a);
        free(b);
        free(ma);
        free(mb);
    }
}
END_TEST

/* A relu fused into the batch norm or add before it gives the same numbers
 * as the separate relu (its mask is read from its output), in both layouts,
 * to rounding: loss within 1e-6 relative, gradients and the relu output
 * within NMSE 1e-12. Not float for float: with a tensor elided the others sit
 * at other offsets, and a reduction the compiler vectorised may then start
 * its lanes elsewhere (seen on an AMX Xeon: gradient 0 off by 3e-6 relative).
 * The tensor between them is no longer kept, and reading it says so. */
START_TEST(fused_relu_matches_separate)
{
    int mid;
    cs_graph *g = residual_net(8, &mid);
    const int64_t np = cs_graph_n_params(g), nm = 8 * cs_tensor_row(cs_graph_tensor(g, mid));
    cs_graph_free(g);
    const char *pairs[2][2] = {{"threads=2,fuse=off", "threads=2"},
                               {"threads=2,layout=plain,fuse=off", "threads=2,layout=plain"}};
    for (int k = 0; k < 2; k++) {
        float la, lb, *ma = xcalloc(nm, 4), *mb = xcalloc(nm, 4);
        float *a = residual_grads(pairs[k][0], 8, &la, ma), *b = residual_grads(pairs[k][1], 8, &lb, mb);
        ck_assert_msg(fabsf(la - lb) <= 1e-6f * fabsf(la), "%s: loss %.9g vs %.9g fused", pairs[k][0], la, lb);
        double e = nmse(a, b, np);
        ck_assert_msg(e <= 1e-12, "%s: gradients NMSE %.3g fused > 1e-12", pairs[k][0], e);
        e = nmse(ma, mb, nm);
        ck_assert_msg(e <= 1e-12, "%s: relu output NMSE %.3g fused > 1e-12", pairs[k][0], e);
        free(a), free(b), free(ma), free(mb);
    }
    /* bn0's output feeds only a relu: fused away */
    g = residual_net(8, &mid);
    run r = start(g, "threads=2");
    init_params(&r, 5);
    float *x = xcalloc(8 * 3 * 64, 4), l[8] = {0}, *v = xcalloc(8 * 20 * 64, 4);
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "x"), x, 8, E));
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "labels"), l, 8, E));
    OK(cs_plan_forward(r.plan, 8, CS_FWD_TRAIN, E));
    const int bn0 = cs_graph_node(g, 1)->out;
    ck_assert_int_eq(cs_graph_node(g, 1)->op, CS_OP_BATCHNORM);
    cs_error err = {0};
    ck_assert_int_eq(cs_plan_read_tensor(r.plan, bn0, v, 8, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "is not kept: the relu after it runs fused (device option fuse=off keeps it)"), "%s",
                  err.msg);
    free(x), free(v);
    stop(&r);
}
END_TEST

/* residual_net after two training steps (so the running statistics are not
 * the initial ones), then an inference forward: its loss, its mid tensor. */
static float residual_eval(const char *device, float *mid_out, int64_t nm)
{
    int mid;
    cs_graph *g = residual_net(8, &mid);
    run r = start(g, device);
    init_params(&r, 5);
    rng_seed(78);
    float *x = xcalloc(8 * 3 * 64, 4), l[8];
    for (int i = 0; i < 8 * 3 * 64; i++)
        x[i] = (float)(sym() + 0.3);
    for (int i = 0; i < 8; i++)
        l[i] = (float)(i % 4);
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "x"), x, 8, E));
    OK(cs_plan_set_input(r.plan, cs_graph_find(g, "labels"), l, 8, E));
    const cs_sgd opt = {.lr = 0.05f, .momentum = 0.9f};
    for (int k = 0; k < 2; k++)
        OK(cs_plan_step(r.plan, 8, &opt, E));
    OK(cs_plan_forward(r.plan, 8, 0, E));
    const float loss = loss_of(&r, cs_graph_loss(g, 0));
    OK(cs_plan_read_tensor(r.plan, mid, mid_out, 8, E));
    /* conv0's output feeds only bn0: folded at inference, so not computed */
    if (!strstr(device, "fuse=off") && dconv_available()) {
        cs_error err = {0};
        ck_assert_int_eq(cs_plan_read_tensor(r.plan, cs_graph_node(g, 0)->out, x, 8, &err), CS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, "is not computed at inference: the batch norm after it is folded"), "%s",
                      err.msg);
    }
    (void)nm;
    free(x);
    stop(&r);
    return loss;
}

/* Batch norm folded into the convolution before it at inference (oneDNN, with
 * the relu after it as a post-op) gives the unfolded numbers within the
 * tolerance, in both layouts. */
START_TEST(folded_batchnorm_matches_separate)
{
    int mid;
    cs_graph *g = residual_net(8, &mid);
    const int64_t nm = 8 * cs_tensor_row(cs_graph_tensor(g, mid));
    cs_graph_free(g);
    const char *pairs[2][2] = {{"threads=2,fuse=off", "threads=2"},
                               {"threads=2,layout=plain,fuse=off", "threads=2,layout=plain"}};
    for (int k = 0; k < 2; k++) {
        float *ma = xcalloc(nm, 4), *mb = xcalloc(nm, 4);
        const float la = residual_eval(pairs[k][0], ma, nm), lb = residual_eval(pairs[k][1], mb, nm);
        ck_assert_msg(fabsf(la - lb) <= 1e-5f * fabsf(la), "%s: inference loss %.9g vs %.9g folded", pairs[k][0], la,
                      lb);
        const double e = nmse(ma, mb, nm);
        ck_assert_msg(e <= NMSE_TOL, "%s: inference activations NMSE %.3g > %g folded", pairs[k][0], e, NMSE_TOL);
        free(ma), free(mb);
    }
}
END_TEST

/* Batch-norm test values: inputs around 0.5, output gradients, scales
 * around 1, shifts. */
static void bn_random(float *x, float *dy, float *gamma, float *beta, int64_t count, int c)
{
    for (int64_t i = 0; i < count; i++) {
        x[i] = (float)(2 * sym() + 0.5);
        dy[i] = (float)sym();
    }
    for (int i = 0; i < c; i++) {
        gamma[i] = (float)(1 + 0.5 * sym());
        beta[i] = (float)sym();
    }
}

/* kernels_blk.c against the plain fast kernels on the same values, for both
 * block sizes, with channels that leave the last block part padding: which
 * must stay zero. */
START_TEST(blocked_kernels_match_plain)
{
    const int n = 3, c = 20, hw = 35;
    const cpu_par par = {2, NULL, 0};
    for (int b = 8; b <= 16; b += 8) {
        const int64_t plain = (int64_t)n * c * hw, blk = blk_size(n, c, hw, b);
        float *x = xcalloc(plain, 4), *dy = xcalloc(plain, 4), *gamma = xcalloc(c, 4), *beta = xcalloc(c, 4);
        rng_seed(400 + (uint64_t)b);
        bn_random(x, dy, gamma, beta, plain, c);
        float *xb = xcalloc(blk, 4), *dyb = xcalloc(blk, 4), *yb = xcalloc(blk, 4), *dxb = xcalloc(blk, 4);
        blk_from_plain(&par, xb, x, n, c, hw, b);
        blk_from_plain(&par, dyb, dy, n, c, hw, b);
        float *y = xcalloc(plain, 4), *dx = xcalloc(plain, 4), *back = xcalloc(plain, 4);
        float save[2][40], run[2][40], dg[2][20] = {{0}}, dbt[2][20] = {{0}};
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 40; i++)
                run[k][i] = i < 20 ? 0.1f * (float)i : 1 + 0.05f * (float)i;
        fast_batchnorm_forward_train(&par, y, save[0], run[0], run[0] + c, x, gamma, beta, n, c, hw, 1e-5f, 0.1f);
        blk_batchnorm_forward_train(&par, yb, save[1], run[1], run[1] + c, xb, gamma, beta, n, c, hw, b, 1e-5f, 0.1f,
                                    CPU_ACT_NONE);
        blk_to_plain(&par, back, yb, n, c, hw, b);
        ck_assert_msg(nmse(y, back, plain) <= NMSE_TOL, "block %d: batchnorm forward", b);
        ck_assert_msg(nmse(save[0], save[1], 2 * c) <= NMSE_TOL && nmse(run[0], run[1], 2 * c) <= NMSE_TOL,
                      "block %d: batchnorm statistics", b);
        fast_batchnorm_forward_eval(&par, y, x, gamma, beta, run[0], run[0] + c, n, c, hw, 1e-5f);
        blk_batchnorm_forward_eval(&par, yb, xb, gamma, beta, run[0], run[0] + c, n, c, hw, b, 1e-5f, CPU_ACT_NONE);
        blk_to_plain(&par, back, yb, n, c, hw, b);
        ck_assert_msg(nmse(y, back, plain) <= NMSE_TOL, "block %d: batchnorm eval", b);
        /* accumulated onto the same random values */
        for (int64_t i = 0; i < plain; i++)
            dx[i] = (float)sym();
        blk_from_plain(&par, dxb, dx, n, c, hw, b);
        fast_batchnorm_backward(&par, dx, dg[0], dbt[0], dy, x, save[0], gamma, n, c, hw);
        blk_batchnorm_backward(&par, dxb, dg[1], dbt[1], dyb, xb, save[0], gamma, n, c, hw, b, NULL, CPU_ACT_NONE);
        blk_to_plain(&par, back, dxb, n, c, hw, b);
        ck_assert_msg(nmse(dx, back, plain) <= NMSE_TOL, "block %d: batchnorm input gradient", b);
        ck_assert_msg(nmse(dg[0], dg[1], c) <= NMSE_TOL && nmse(dbt[0], dbt[1], c) <= NMSE_TOL,
                      "block %d: batchnorm gamma / beta gradients", b);
        float pooled[2][60], dpool[60];
        fast_avgpool_forward(&par, pooled[0], x, n, c, hw);
        blk_avgpool_forward(&par, pooled[1], xb, n, c, hw, b);
        ck_assert_msg(nmse(pooled[0], pooled[1], n * c) <= NMSE_TOL, "block %d: avgpool forward", b);
        for (int i = 0; i < n * c; i++)
            dpool[i] = (float)sym();
        fast_avgpool_backward(&par, dx, dpool, n, c, hw);
        blk_avgpool_backward(&par, dxb, dpool, n, c, hw, b);
        blk_to_plain(&par, back, dxb, n, c, hw, b);
        ck_assert_msg(nmse(dx, back, plain) <= NMSE_TOL, "block %d: avgpool backward", b);
        /* the padding lanes of the last block stayed zero in every output */
        const int64_t cbs = (c + b - 1) / b;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++)
                for (int l = c % b; l && l < b; l++) {
                    const int64_t k = ((int64_t)i * cbs + cbs - 1) * hw * b + (int64_t)j * b + l;
                    ck_assert_msg(yb[k] == 0 && dxb[k] == 0, "block %d: padding lane %d became %g / %g", b, l, yb[k],
                                  dxb[k]);
                }
        free(x), free(dy), free(gamma), free(beta), free(xb), free(dyb), free(yb), free(dxb), free(y), free(dx);
        free(back);
    }
}
END_TEST

/* One rank's reduce: the sums are already the global ones; counts the calls. */
static int identity_reduce(void *ctx, double *buf, int count)
{
    (void)buf;
    (void)count;
    ++*(int *)ctx;
    return 0;
}

static int failing_reduce(void *ctx, double *buf, int count)
{
    (void)ctx;
    (void)buf;
    (void)count;
    return -1;
}

/* kernels_sync.c with one rank (the reduce adds nothing) against the
 * fast plain kernels (b = 0) and the blocked ones (b = 8, 16), a fused relu
 * and none, with channels that leave the last block part padding (which must
 * stay zero); and a failing reduce is a failure. */
START_TEST(sync_batchnorm_matches_local)
{
    const int n = 3, c = 20, hw = 35;
    const cpu_par par = {2, NULL, 0};
    for (int b = 0; b <= 16; b += 8)
        for (int act = CPU_ACT_NONE; act <= CPU_ACT_RELU; act++) {
            const int64_t plain = (int64_t)n * c * hw, size = b ? blk_size(n, c, hw, b) : plain;
            float *x = xcalloc(plain, 4), *dy = xcalloc(plain, 4), *gamma = xcalloc(c, 4), *beta = xcalloc(c, 4);
            rng_seed(500 + (uint64_t)b + 10 * (uint64_t)act);
            bn_random(x, dy, gamma, beta, plain, c);
            float *xs = xcalloc(size, 4), *dys = xcalloc(size, 4), *y[2], *dx[2];
            if (b) {
                blk_from_plain(&par, xs, x, n, c, hw, b);
                blk_from_plain(&par, dys, dy, n, c, hw, b);
            } else {
                memcpy(xs, x, sizeof(float) * (size_t)plain);
                memcpy(dys, dy, sizeof(float) * (size_t)plain);
            }
            float save[2][40], run[2][40], dg[2][20] = {{0}}, dbt[2][20] = {{0}};
            float *quarter = xcalloc(plain, 4); /* the input gradients accumulate onto 0.25 */
            for (int64_t i = 0; i < plain; i++)
                quarter[i] = 0.25f;
            for (int k = 0; k < 2; k++) {
                y[k] = xcalloc(size, 4);
                dx[k] = xcalloc(size, 4);
                if (b) /* (padding lanes zero) */
                    blk_from_plain(&par, dx[k], quarter, n, c, hw, b);
                else
                    memcpy(dx[k], quarter, sizeof(float) * (size_t)plain);
                for (int i = 0; i < 40; i++)
                    run[k][i] = i < 20 ? 0.1f * (float)i : 1 + 0.05f * (float)i;
            }
            if (b)
                blk_batchnorm_forward_train(&par, y[0], save[0], run[0], run[0] + c, xs, gamma, beta, n, c, hw, b,
                                            1e-5f, 0.1f, act);
            else
                fast_batchnorm_forward_train_act(&par, y[0], save[0], run[0], run[0] + c, xs, gamma, beta, n, c, hw,
                                                 1e-5f, 0.1f, act);
            int calls = 0;
            ck_assert_int_eq(sync_batchnorm_forward_train(&par, identity_reduce, &calls, y[1], save[1], run[1],
                                                          run[1] + c, xs, gamma, beta, n, c, hw, b, 1e-5f, 0.1f, act),
                             0);
            ck_assert_msg(calls == 2, "block %d: the forward reduced %d times, expected 2 (sums, squares)", b, calls);
            ck_assert_msg(nmse(y[0], y[1], size) <= NMSE_TOL, "block %d act %d: sync batchnorm forward", b, act);
            ck_assert_msg(nmse(save[0], save[1], 2 * c) <= NMSE_TOL && nmse(run[0], run[1], 2 * c) <= NMSE_TOL,
                          "block %d act %d: sync batchnorm statistics", b, act);
            if (b)
                blk_batchnorm_backward(&par, dx[0], dg[0], dbt[0], dys, xs, save[0], gamma, n, c, hw, b, y[0], act);
            else
                fast_batchnorm_backward_act(&par, dx[0], dg[0], dbt[0], dys, xs, save[0], gamma, n, c, hw, y[0], act);
            calls = 0;
            ck_assert_int_eq(sync_batchnorm_backward(&par, identity_reduce, &calls, dx[1], dg[1], dbt[1], dys, xs,
                                                     save[0], gamma, n, c, hw, b, y[0], act),
                             0);
            ck_assert_msg(calls == 1, "block %d: the backward reduced %d times, expected 1", b, calls);
            ck_assert_msg(nmse(dx[0], dx[1], size) <= NMSE_TOL, "block %d act %d: sync batchnorm input gradient", b,
                          act);
            ck_assert_msg(nmse(dg[0], dg[1], c) <= NMSE_TOL && nmse(dbt[0], dbt[1], c) <= NMSE_TOL,
                          "block %d act %d: sync batchnorm gamma / beta gradients", b, act);
            if (b) { /* the padding lanes stayed zero */
                const int64_t cbs = (c + b - 1) / b;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < hw; j++)
                        for (int l = c % b; l && l < b; l++) {
                            const int64_t k = ((int64_t)i * cbs + cbs - 1) * hw * b + (int64_t)j * b + l;
                            ck_assert_msg(y[1][k] == 0 && dx[1][k] == 0, "block %d: padding lane %d became %g / %g",
                                          b, l, y[1][k], dx[1][k]);
                        }
            }
            ck_assert_int_eq(sync_batchnorm_forward_train(&par, failing_reduce, NULL, y[1], save[1], run[1],
                                                          run[1] + c, xs, gamma, beta, n, c, hw, b, 1e-5f, 0.1f, act),
                             -1);
            ck_assert_int_eq(sync_batchnorm_backward(&par, failing_reduce, NULL, dx[1], dg[1], dbt[1], dys, xs,
                                                     save[0], gamma, n, c, hw, b, y[0], act),
                             -1);
            for (int k = 0; k < 2; k++)
                free(y[k]), free(dx[k]);
            free(x), free(dy), free(gamma), free(beta), free(xs), free(dys), free(quarter);
        }
}
END_TEST

START_TEST(frozen_arenas_drive_frozen_forward)
{
    tiny t = tiny_net(4);
    run r = start(t.g, "threads=2");
    init_params(&r, 1);
    feed(&r, &t, 4, 9);
    /* give the running statistics something other than 0 and 1 */
    const cs_sgd opt = {.lr = 0.1f};
    OK(cs_plan_step(r.plan, 4, &opt, E));
    const int64_t np = cs_graph_n_params(t.g), nb = cs_graph_n_buffers(t.g);
    float *p = read_arena(&r, CS_ARENA_PARAMS, np), *b = read_arena(&r, CS_ARENA_BUFFERS, nb);
    float live[16], frozen[16];
    OK(cs_plan_forward(r.plan, 4, 0, E));
    OK(cs_plan_read_tensor(r.plan, t.logits, live, 4, E));
    /* different frozen values: a different answer */
    OK(cs_plan_forward(r.plan, 4, CS_FWD_FROZEN, E));
    OK(cs_plan_read_tensor(r.plan, t.logits, frozen, 4, E));
    ck_assert(memcmp(live, frozen, sizeof live) != 0);
    /* the same values: the same answer, to the bit */
    OK(cs_plan_write(r.plan, CS_ARENA_FROZEN_PARAMS, 0, np, p, E));
    OK(cs_plan_write(r.plan, CS_ARENA_FROZEN_BUFFERS, 0, nb, b, E));
    OK(cs_plan_forward(r.plan, 4, CS_FWD_FROZEN, E));
    OK(cs_plan_read_tensor(r.plan, t.logits, frozen, 4, E));
    ck_assert(memcmp(live, frozen, sizeof live) == 0);
    /* only the running statistics differ: eval mode reads the frozen buffers */
    for (int64_t i = 0; i < nb; i++)
        b[i] += 0.5f;
    OK(cs_plan_write(r.plan, CS_ARENA_FROZEN_BUFFERS, 0, nb, b, E));
    OK(cs_plan_forward(r.plan, 4, CS_FWD_FROZEN, E));
    OK(cs_plan_read_tensor(r.plan, t.logits, frozen, 4, E));
    ck_assert(memcmp(live, frozen, sizeof live) != 0);
    free(p);
    free(b);
    stop(&r);
}
END_TEST

START_TEST(batchnorm_running_stats)
{
    tiny t = tiny_net(4);
    run r = start(t.g, "threads=2");
    init_params(&r, 2);
    feed(&r, &t, 4, 3);
    const int64_t np = cs_graph_n_params(t.g);
    float *p = read_arena(&r, CS_ARENA_PARAMS, np);
    /* the conv's output by hand (no bias), then its per-channel batch statistics */
    rng_seed(3);
    float x[4 * 3 * 64];
    for (int i = 0; i < 4 * 3 * 64; i++)
        x[i] = (float)sym();
    const float *w = p + cs_graph_tensor(t.g, cs_graph_find(t.g, "conv1.weight"))->offset;
    conv_geom g = {.n = 4, .c = 3, .h = 8, .w = 8, .oc = 8, .k = 3, .stride = 1, .pad = 1, .groups = 1};
    conv_geom_finish(&g);
    double *y = xcalloc(4 * 8 * 64, 8), *xd = xcalloc(4 * 3 * 64, 8), *wd = xcalloc(8 * 27, 8);
    for (int i = 0; i < 4 * 3 * 64; i++)
        xd[i] = x[i];
    for (int i = 0; i < 8 * 27; i++)
        wd[i] = w[i];
    ref64_conv2d_forward(y, xd, wd, NULL, &g);
    const cs_sgd opt = {.lr = 0.1f, .momentum = 0.9f};
    OK(cs_plan_step(r.plan, 4, &opt, E));
    float *buf = read_arena(&r, CS_ARENA_BUFFERS, cs_graph_n_buffers(t.g));
    const float *rm = buf + cs_graph_tensor(t.g, cs_graph_find(t.g, "bn1.running_mean"))->offset;
    const float *rv = buf + cs_graph_tensor(t.g, cs_graph_find(t.g, "bn1.running_var"))->offset;
    for (int c = 0; c < 8; c++) {
        double s = 0, sq = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 64; j++)
                s += y[(i * 8 + c) * 64 + j];
        const double mean = s / 256;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 64; j++)
                sq += (y[(i * 8 + c) * 64 + j] - mean) * (y[(i * 8 + c) * 64 + j] - mean);
        const double want_mean = 0.9 * 0 + 0.1 * mean, want_var = 0.9 * 1 + 0.1 * sq / 255; /* unbiased */
        ck_assert_msg(fabs(rm[c] - want_mean) < HAND_TOL, "channel %d: running_mean %.9g, by hand %.9g", c, rm[c],
                      want_mean);
        ck_assert_msg(fabs(rv[c] - want_var) < HAND_TOL, "channel %d: running_var %.9g, by hand %.9g", c, rv[c],
                      want_var);
    }
    free(p);
    free(buf);
    free(y);
    free(xd);
    free(wd);
    stop(&r);
}
END_TEST

START_TEST(fewer_rows_than_batch)
{
    /* a batch-6 graph run on 4 rows (the other two NaN) trains like a batch-4 graph */
    tiny big = tiny_net(6), small = tiny_net(4);
    run rb = start(big.g, "threads=2"), rs = start(small.g, "threads=2");
    init_params(&rb, 4);
    init_params(&rs, 4);
    float *nan_rows = xcalloc(6 * 3 * 64, 4), nan_labels[6] = {0, 0, 0, 0, NAN, NAN};
    for (int i = 0; i < 6 * 3 * 64; i++)
        nan_rows[i] = NAN;
    OK(cs_plan_set_input(rb.plan, big.x, nan_rows, 6, E));
    OK(cs_plan_set_input(rb.plan, big.labels, nan_labels, 6, E));
    const cs_sgd opt = {.lr = 0.1f, .momentum = 0.9f};
    for (int s = 0; s < 3; s++) {
        feed(&rb, &big, 4, 50 + (uint64_t)s);
        feed(&rs, &small, 4, 50 + (uint64_t)s);
        OK(cs_plan_step(rb.plan, 4, &opt, E));
        OK(cs_plan_step(rs.plan, 4, &opt, E));
        const float lb = loss_of(&rb, big.loss), ls = loss_of(&rs, small.loss);
        ck_assert_msg(isfinite(lb) && fabsf(lb - ls) <= 1e-6f * fabsf(ls), "step %d: loss %.9g vs %.9g", s, lb, ls);
    }
    float *pb = read_arena(&rb, CS_ARENA_PARAMS, cs_graph_n_params(big.g)), *ps = read_arena(&rs, CS_ARENA_PARAMS, cs_graph_n_params(small.g));
    for (int64_t i = 0; i < cs_graph_n_params(big.g); i++)
        ck_assert_msg(fabsf(pb[i] - ps[i]) <= HAND_TOL, "param %lld: %.9g vs %.9g", (long long)i, pb[i], ps[i]);
    free(nan_rows);
    free(pb);
    free(ps);
    stop(&rb);
    stop(&rs);
}
END_TEST

START_TEST(frozen_params_left_alone)
{
    /* a parameter that is not needs_grad gets no gradient and no update */
    tiny t = tiny_net(4);
    const int w = cs_graph_find(t.g, "conv1.weight");
    cs_graph_set_trainable(t.g, w, 0);
    run r = start(t.g, "threads=2");
    init_params(&r, 5);
    feed(&r, &t, 4, 6);
    const int64_t np = cs_graph_n_params(t.g);
    float *before = read_arena(&r, CS_ARENA_PARAMS, np);
    const cs_sgd opt = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-2f};
    OK(cs_plan_step(r.plan, 4, &opt, E));
    float *after = read_arena(&r, CS_ARENA_PARAMS, np), *grads = read_arena(&r, CS_ARENA_GRADS, np);
    const cs_tensor *wt = cs_graph_tensor(t.g, w);
    int changed = 0;
    for (int64_t i = 0; i < np; i++) {
        const int in_w = i >= wt->offset && i < wt->offset + wt->size;
        if (in_w)
            ck_assert(after[i] == before[i] && grads[i] == 0);
        else
            changed += after[i] != before[i];
    }
    ck_assert_int_gt(changed, 0);
    free(before);
    free(after);
    free(grads);
    stop(&r);
}
END_TEST

/* Every op in one graph with three weighted losses: the plan's parameter
 * gradients against float central differences of its forward. Catches wiring
 * (which gradient goes where, loss weights, skipped branches), not rounding. */
START_TEST(plan_gradients_match_differences)
{
    cs_graph *g = cs_graph_new(6);
    const int x = cs_input(g, "x", 4, 6, 6), labels = cs_input_vec(g, "labels", 0), target = cs_input_vec(g, "target", 8);
    int h = cs_conv2d(g, "conv1", x, 8, 3, 1, 1, 1, 1);
    h = cs_batchnorm(g, "bn1", h);
    const int r1 = cs_relu(g, h);
    const int m = cs_maxpool(g, r1, 3, 2, 1);                      /* [6,8,3,3] */
    int dw = cs_conv2d(g, "dw", m, 8, 3, 1, 1, 8, 0);             /* depthwise */
    dw = cs_relu6(g, dw);
    const int sh = cs_shuffle(g, dw, 2);
    const int s1 = cs_slice(g, sh, 0, 4), s2 = cs_slice(g, sh, 4, 4);
    const int pw = cs_conv2d(g, "pw", s2, 4, 1, 1, 0, 1, 0);
    const int cat = cs_concat(g, s1, pw);
    const int a = cs_add(g, cat, m);
    const int feat = cs_avgpool(g, a);                             /* [6,8] */
    const int logits = cs_linear(g, "fc", feat, 5, 1, CS_INIT_UNIFORM_FAN_IN);
    const int l1 = cs_softmax_xent(g, logits, labels);
    const int cosl = cs_cosine_linear(g, "cos", feat, 5, 4.0f);
    const int l2 = cs_softmax_xent(g, cosl, labels);
    const int l3 = cs_cosine_embed(g, cs_l2norm(g, feat), target);
    cs_graph_add_loss(g, l1, 1.0f);
    cs_graph_add_loss(g, l2, 0.5f);
    cs_graph_add_loss(g, l3, 2.0f);
    cs_error err = {0};
    ck_assert_msg(cs_graph_status(g, &err) == 0, "%s", err.msg);
    run r = start(g, "threads=2");
    init_params(&r, 8);
    rng_seed(12);
    float xs[6 * 4 * 36], ls[6], ts[6 * 8];
    for (int i = 0; i < 6 * 4 * 36; i++)
        xs[i] = (float)sym();
    for (int i = 0; i < 6; i++)
        ls[i] = (float)(i % 5);
    for (int i = 0; i < 6 * 8; i++)
        ts[i] = (float)sym();
    OK(cs_plan_set_input(r.plan, x, xs, 5, E));
    OK(cs_plan_set_input(r.plan, labels, ls, 5, E));
    OK(cs_plan_set_input(r.plan, target, ts, 5, E));
    const int n = 5; /* fewer rows than the batch */
    OK(cs_plan_forward(r.plan, n, CS_FWD_TRAIN, E));
    OK(cs_plan_backward(r.plan, n, E));
    const int64_t np = cs_graph_n_params(g);
    float *p = read_arena(&r, CS_ARENA_PARAMS, np), *grad = read_arena(&r, CS_ARENA_GRADS, np);
    int checked = 0, bad = 0;
    double worst_ratio = 0;
    char first[256] = "";
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *pt = cs_graph_tensor(g, t);
        if (pt->kind != CS_TENSOR_PARAM)
            continue;
        for (int q = 0; q < 3 && q < pt->size; q++) {
            const int64_t e = pt->offset + (int64_t)(uni() * (double)pt->size);
            double total[2];
            for (int side = 0; side < 2; side++) {
                const float v = p[e] + (side ? -PLAN_FD_STEP : PLAN_FD_STEP);
                OK(cs_plan_write(r.plan, CS_ARENA_PARAMS, e, 1, &v, E));
                OK(cs_plan_forward(r.plan, n, CS_FWD_TRAIN, E));
                total[side] = 1.0 * loss_of(&r, l1) + 0.5 * loss_of(&r, l2) + 2.0 * loss_of(&r, l3);
            }
            OK(cs_plan_write(r.plan, CS_ARENA_PARAMS, e, 1, &p[e], E));
            const double num = (total[0] - total[1]) / (2.0 * PLAN_FD_STEP), ana = grad[e];
            checked++;
            worst_ratio = fmax(worst_ratio, fabs(num - ana) / (PLAN_FD_ABS + PLAN_FD_REL * fabs(ana)));
            if (fabs(num - ana) > PLAN_FD_ABS + PLAN_FD_REL * fabs(ana) && bad++ == 0)
                snprintf(first, sizeof first, "%s[%lld]: analytic %.6g, numeric %.6g", pt->name,
                         (long long)(e - pt->offset), ana, num);
        }
    }
    ck_assert_msg(bad == 0, "%d of %d parameter gradients disagree (worst at %.2f of the tolerance); first: %s", bad,
                  checked, worst_ratio, first);
    free(p);
    free(grad);
    stop(&r);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("backward");
    tcase_add_loop_test(tc, backward_matches_differences, 0, N_FD_CASES);
    tcase_add_test(tc, sgd_kernel_matches_pytorch_formula);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("fast");
    tcase_add_loop_test(tc, fast_conv_matches_reference, 0, N_CONV_CASES);
    tcase_add_loop_test(tc, dnnl_conv_matches_reference, 0, N_CONV_CASES);
    tcase_add_loop_test(tc, fast_ops_match_reference, 0, N_FAST_CASES);
    tcase_add_test(tc, maxpool_first_max_on_ties);
    tcase_add_test(tc, conv_backward_reproducible);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("plan");
    tcase_add_test(tc, device_strings);
    tcase_add_test(tc, prepare_refuses_unknown_op);
    tcase_add_test(tc, plan_misuse_is_refused);
    tcase_add_test(tc, update_matches_hand_sgd);
    tcase_add_test(tc, tiny_net_learns);
    tcase_add_test(tc, same_seed_same_bits);
    tcase_add_test(tc, blocked_layout_matches_plain);
    tcase_add_test(tc, blocked_kernels_match_plain);
    tcase_add_test(tc, sync_batchnorm_matches_local);
    tcase_add_test(tc, fused_relu_matches_separate);
    tcase_add_test(tc, folded_batchnorm_matches_separate);
    tcase_add_test(tc, frozen_arenas_drive_frozen_forward);
    tcase_add_test(tc, batchnorm_running_stats);
    tcase_add_test(tc, fewer_rows_than_batch);
    tcase_add_test(tc, frozen_params_left_alone);
    tcase_add_test(tc, plan_gradients_match_differences);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(ops_suite()) ? 1 : 0; }
