/* kernels_fast.c: the fast kernels: convolutions and linear layers through OpenBLAS SGEMM, the rest over OpenMP threads.
 *
 * Threads: every kernel splits its work statically over p->threads OpenMP
 * threads (images, channels, planes or rows), and every sum that crosses a
 * split is added in thread order, so a thread count fixes every bit.
 * OpenBLAS runs single-threaded inside those threads: its own pool would
 * compete with OpenMP's for the same cores. Hot loops are written for the
 * vectorizer (omp simd, or GCC vector types where it will not), and the
 * depthwise kernel has an AVX2 clone picked at load time. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

/* Below about this many elements (or multiply-adds) an op runs on one thread:
 * waking the others costs more than it saves. */
#define PAR_MIN 32768

/* A convolution GEMM wants at least this many columns (output positions) to
 * run near peak: images whose output is smaller are batched together... */
#define CONV_MIN_COLS 512
/* ...and an image with more is cut into tiles of at most about this many, so
 * that its im2col block stays in cache rather than streaming megabytes. */
#define CONV_MAX_COLS 4096

/* Depthwise convolutions with up to this many taps (k <= 8) take the direct
 * kernel; larger ones fall back to im2col + GEMM per group. */
#define DW_MAX_TAPS 64

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The t-th of nt static shares of [0, total). */
static inline void span(int64_t total, int t, int nt, int64_t *lo, int64_t *hi)
{
    *lo = total * t / nt;
    *hi = total * (t + 1) / nt;
}

/* ---- BLAS ---- */

/* C[m,n] = alpha op(A) op(B) + beta C, row-major; ta: A is stored [k,m], tb: B is stored [n,k]. */
static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    fast_blas_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The same with the m rows of C split over the threads (one GEMM each, on
 * shares that depend only on m and the thread count). */
static void par_sgemm(const cpu_par *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
{
    const int nt = (int64_t)m * n * k < 8 * PAR_MIN ? 1 : (int)min64(p->threads, m);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t lo, hi;
        span(m, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        sgemm(ta, tb, (int)(hi - lo), n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
    }
}

/* ---- conv2d ---- */

static int is_depthwise(const conv_geom *g) { return g->groups == g->c && g->k * g->k <= DW_MAX_TAPS; }
static int is_pointwise(const conv_geom *g) { return g->k == 1 && g->stride == 1 && g->pad == 0; }

/* How a convolution's work is cut into units, each one GEMM per group: a run
 * of up to `imgs` whole images (small outputs), or a tile of `tile` output
 * positions of one image (`tiles` per image). */
typedef struct conv_tiling {
    int imgs, tile, tiles;
    int64_t max_cols; /* the most columns a unit can have, whatever n */
} conv_tiling;

static conv_tiling conv_tiling_for(const conv_geom *g)
{
    const int ohw = g->oh * g->ow;
    conv_tiling t = {1, ohw, 1, ohw};
    if (ohw < CONV_MIN_COLS) {
        t.imgs = (CONV_MIN_COLS + ohw - 1) / ohw;
        t.max_cols = (int64_t)t.imgs * ohw;
    } else if (ohw > CONV_MAX_COLS) {
        t.tiles = (ohw + CONV_MAX_COLS - 1) / CONV_MAX_COLS;
        t.tile = (ohw + t.tiles - 1) / t.tiles;
        t.max_cols = t.tile;
    }
    return t;
}

/* Images per unit when count images are cut into runs of at most most
 * images, as evenly as that allows, into at least min_units runs. */
static int run_length(int count, int most, int min_units)
{
    int units = (count + most - 1) / most;
    if (units < min_units)
        units = min_units < count ? min_units : count;
    return units > 0 ? (count + units - 1) / units : 1;
}

/* First and one-past-last output column ox whose tap kx lands inside the input row. */
static inline void valid_cols(const conv_geom *g, int kx, int *lo, int *hi)
{
    const int first = g->pad - kx, last = g->w - 1 + g->pad - kx; /* ox * stride in [first, last] */
    *lo = first <= 0 ? 0 : (first + g->stride - 1) / g->stride;
    *hi = last < 0 ? 0 : last / g->stride + 1;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* im2col of one tap (ky, kx) of one image for a stride-1 convolution whose
 * output is as large as its input: output position j reads
 * plane[j + (ky - pad) * w + kx - pad], so the whole run of columns is one
 * shifted copy, after which the positions whose tap falls in the padding are
 * zeroed (whole rows above and below, a few columns at each side). */
static void im2col_same(float *dst, const float *plane, const conv_geom *g, int ky, int kx, int j0, int nj)
{
    const int w = g->w, p = g->pad;
    const int64_t hw = (int64_t)g->h * w, shift = (int64_t)(ky - p) * w + kx - p;
    const int64_t a = j0, b = (int64_t)j0 + nj;
    int64_t ca = a > -shift ? a : -shift, cb = b < hw - shift ? b : hw - shift;
    if (cb < ca)
        cb = ca = a;
    memset(dst, 0, (size_t)(ca - a) * sizeof *dst);
    memcpy(dst + (ca - a), plane + ca + shift, (size_t)(cb - ca) * sizeof *dst);
    memset(dst + (cb - a), 0, (size_t)(b - cb) * sizeof *dst);
    const int left = p - kx > 0 ? p - kx : 0, right = w + p - kx < w ? w + p - kx : w; /* valid ox: [left, right) */
    for (int64_t r0 = a - a % w; r0 < b; r0 += w) { /* each output row the run touches */
        const int oy = (int)(r0 / w), iy = oy - p + ky;
        const int64_t s0 = r0 > a ? r0 : a, s1 = r0 + w < b ? r0 + w : b;
        if (iy < 0 || iy >= g->h) {
            memset(dst + (s0 - a), 0, (size_t)(s1 - s0) * sizeof *dst);
            continue;
        }
        for (int64_t j = s0; j < s1 && j < r0 + left; j++)
            dst[j - a] = 0;
        for (int64_t j = s0 > r0 + right ? s0 : r0 + right; j < s1; j++)
            dst[j - a] = 0;
    }
}

/* col[c*k*k + ky*k + kx][i*nj + j] = the input tap (ky, kx) of output position
 * j0 + j of image img0 + i (0 in the padding), for i < ni, j < nj. When ni > 1
 * every image is whole (j0 = 0, nj = oh*ow). add = 0: im2col; add = 1: col2im,
 * the transpose: each input pixel gets the sum of its columns (into in). */
static void im2col_run(float *col, float *in, const conv_geom *g, int img0, int ni, int j0, int nj, int add)
{
    const int k = g->k, s = g->stride;
    const int64_t len = (int64_t)ni * nj, hw = (int64_t)g->h * g->w;
    const int same = !add && s == 1 && g->oh == g->h && g->ow == g->w;
    for (int c = 0; c < g->c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + ((int64_t)(c * k + ky) * k + kx) * len;
                if (same) {
                    for (int i = 0; i < ni; i++)
                        im2col_same(row + (int64_t)i * nj, in + ((int64_t)(img0 + i) * g->c + c) * hw, g, ky, kx, j0,
                                    nj);
                    continue;
                }
                int vlo, vhi;
                valid_cols(g, kx, &vlo, &vhi);
                for (int i = 0; i < ni; i++) {
                    float *plane = in + ((int64_t)(img0 + i) * g->c + c) * hw;
                    for (int j = j0, end = j0 + nj; j < end;) {
                        const int oy = j / g->ow, ox0 = j % g->ow;
                        const int ox1 = (int)min64(g->ow, ox0 + (int64_t)(end - j));
                        const int iy = oy * s - g->pad + ky;
                        const int lo = vlo < ox0 ? ox0 : vlo > ox1 ? ox1 : vlo;
                        const int hi = vhi < lo ? lo : vhi > ox1 ? ox1 : vhi;
                        float *dst = row; /* dst[ox - ox0] is this segment's column of ox */
                        if (iy < 0 || iy >= g->h) {
                            if (!add)
                                memset(dst, 0, (size_t)(ox1 - ox0) * sizeof *dst);
                        } else {
                            /* the input of ox is plane[at + ox * s] */
                            const int64_t at = (int64_t)iy * g->w - g->pad + kx;
                            if (!add) {
                                memset(dst, 0, (size_t)(lo - ox0) * sizeof *dst);
                                if (s == 1)
                                    memcpy(dst + (lo - ox0), plane + at + lo, (size_t)(hi - lo) * sizeof *dst);
                                else
                                    for (int ox = lo; ox < hi; ox++)
                                        dst[ox - ox0] = plane[at + (int64_t)ox * s];
                                memset(dst + (hi - ox0), 0, (size_t)(ox1 - hi) * sizeof *dst);
                            } else if (s == 1) {
#pragma omp simd
                                for (int ox = lo; ox < hi; ox++)
                                    plane[at + ox] += dst[ox - ox0];
                            } else {
#pragma omp simd
                                for (int ox = lo; ox < hi; ox++)
                                    plane[at + (int64_t)ox * s] += dst[ox - ox0];
                            }
                        }
                        row += ox1 - ox0;
                        j += ox1 - ox0;
                    }
                }
            }
}

/* Floats each thread's share of the conv workspace holds: the im2col block and a [oc, cols] staging block. */
static int64_t conv_thread_ws(const conv_geom *g, const conv_tiling *t)
{
    return ((int64_t)g->c * g->k * g->k + g->oc) * t->max_cols;
}

static int64_t dw_thread_ws(const conv_geom *g);

int64_t fast_conv2d_workspace(const conv_geom *g, int threads)
{
    if (is_depthwise(g))
        return threads * dw_thread_ws(g);
    const conv_tiling t = conv_tiling_for(g);
    const int64_t wsize = (int64_t)g->oc * (g->c / g->groups) * g->k * g->k;
    return threads * conv_thread_ws(g, &t) + (threads - 1) * wsize;
}

/* Unit u of the forward, with imgs images per unit: which images and output positions. */
static void conv_unit(const conv_tiling *t, int imgs, int n, int ohw, int64_t u, int *img, int *ni, int *j0, int *nj)
{
    if (t->tiles == 1) {
        *img = (int)(u * imgs);
        *ni = (int)min64(imgs, n - *img);
        *j0 = 0;
        *nj = t->tile;
    } else {
        *img = (int)(u / t->tiles);
        *ni = 1;
        *j0 = (int)(u % t->tiles) * t->tile;
        *nj = (int)min64(t->tile, ohw - *j0);
    }
}

/* ---- depthwise conv2d (one input channel per group): direct ---- */

/* The geometry of the planes the direct kernel reads: the input zero-padded
 * and split into stride phases, P[r][row][j] = padded[row][j * s + r], so
 * that tap kx of output column ox reads P[kx % s][oy * s + ky][ox + kx / s],
 * contiguous in ox whatever the stride; and for the input gradient, the
 * output gradient spread out by the stride and padded by k - 1 - pad, which
 * turns the backward into a stride-1 correlation with the flipped kernel. */
typedef struct dw_planes {
    int hp, pw;         /* phase planes: rows, columns */
    int64_t phase_size; /* floats of all s phases */
    int fh, fw;         /* spread gradient plane: (h + k - 1) x (w + k - 1) */
} dw_planes;

static dw_planes dw_planes_for(const conv_geom *g)
{
    dw_planes d;
    d.hp = g->h + 2 * g->pad;
    d.pw = (g->w + 2 * g->pad + g->stride - 1) / g->stride;
    d.phase_size = (int64_t)g->stride * d.hp * d.pw;
    d.fh = g->h + g->k - 1;
    d.fw = g->w + g->k - 1;
    return d;
}

static int64_t dw_thread_ws(const conv_geom *g)
{
    const dw_planes d = dw_planes_for(g);
    return d.phase_size + (int64_t)d.fh * d.fw;
}

static void dw_pad_phases(float *P, const float *x, const conv_geom *g, const dw_planes *d)
{
    const int s = g->stride;
    for (int r = 0; r < s; r++) {
        /* columns j of phase r whose input column j * s + r - pad lies inside the row */
        const int first = g->pad - r, last = g->w - 1 + g->pad - r;
        int lo = first <= 0 ? 0 : (first + s - 1) / s, hi = last < 0 ? 0 : last / s + 1;
        hi = hi < d->pw ? hi : d->pw;
        lo = lo < hi ? lo : hi;
        for (int row = 0; row < d->hp; row++) {
            float *dst = P + ((int64_t)r * d->hp + row) * d->pw;
            const int iy = row - g->pad;
            if (iy < 0 || iy >= g->h) {
                memset(dst, 0, (size_t)d->pw * sizeof *dst);
                continue;
            }
            const float *src = x + (int64_t)iy * g->w + r - g->pad; /* src[j * s] for j in [lo, hi) */
            memset(dst, 0, (size_t)lo * sizeof *dst);
            if (s == 1)
                memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
            else
                for (int j = lo; j < hi; j++)
                    dst[j] = src[(int64_t)j * s];
            memset(dst + hi, 0, (size_t)(d->pw - hi) * sizeof *dst);
        }
    }
}

/* F[a][b] = dy[oy][ox] where a = oy * s + k - 1 - pad (b likewise), else 0. */
static void dw_spread(float *F, const float *dy, const conv_geom *g, const dw_planes *d)
{
    const int s = g->stride, off = g->k - 1 - g->pad;
    memset(F, 0, (size_t)d->fh * d->fw * sizeof *F);
    /* the columns ox whose b lies inside F's row */
    int lo = 0, hi = g->ow;
    while (lo < hi && lo * s + off < 0)
        lo++;
    while (hi > lo && (hi - 1) * s + off >= d->fw)
        hi--;
    for (int oy = 0; oy < g->oh; oy++) {
        const int a = oy * s + off;
        if (a < 0 || a >= d->fh)
            continue;
        float *dst = F + (int64_t)a * d->fw + off;
        const float *src = dy + (int64_t)oy * g->ow;
        if (s == 1)
            memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
        else
            for (int ox = lo; ox < hi; ox++)
                dst[(int64_t)ox * s] = src[ox];
    }
}

/* Eight floats as one value (GCC/Clang vector extension): one AVX register,
 * or two SSE ones. Moved through memcpy, which compiles to unaligned moves
 * (macros rather than functions: a function passing one would change the ABI
 * between the AVX2 and baseline clones). */
typedef float v8f __attribute__((vector_size(32)));
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8f))
#define STORE8(p, v) memcpy((p), &(v), sizeof(v8f))

/* The direct kernel keeps 16 output columns in registers through all the
 * taps; the AVX2 clone is picked at load time where the CPU has it. */
CPU_CLONES static void dw_core(float *y, const float *P, int hp, int pw,
                                                                      const float *w, int k, int s, int oh, int ow,
                                                                      float bias, int accumulate)
{
    int64_t off[DW_MAX_TAPS]; /* where tap t reads, from the start of output row oy's window */
    const int taps = k * k;
    for (int t = 0; t < taps; t++)
        off[t] = ((int64_t)(t % k % s) * hp + t / k) * pw + t % k / s;
    for (int oy = 0; oy < oh; oy++) {
        float *yr = y + (int64_t)oy * ow;
        const float *base = P + (int64_t)oy * s * pw;
        /* A row that is not a multiple of 8 ends with the last 8 columns,
         * computed first (before the blocks below change them when
         * accumulating) and stored last, only where the blocks did not reach. */
        const int tail = ow % 8 && ow >= 8 ? ow - 8 : -1;
        v8f a0, a1, x0, x1, last = (v8f){0};
        if (tail >= 0) {
            last += bias;
            if (accumulate)
                LOAD8(last, yr + tail);
            for (int t = 0; t < taps; t++) {
                LOAD8(x0, base + off[t] + tail);
                last += w[t] * x0;
            }
        }
        int ox = 0;
        for (; ox + 16 <= ow; ox += 16) {
            a0 = (v8f){0} + bias;
            a1 = a0;
            if (accumulate) {
                LOAD8(a0, yr + ox);
                LOAD8(a1, yr + ox + 8);
            }
            for (int t = 0; t < taps; t++) {
                const v8f wt = (v8f){0} + w[t];
                LOAD8(x0, base + off[t] + ox);
                LOAD8(x1, base + off[t] + ox + 8);
                a0 += wt * x0;
                a1 += wt * x1;
            }
            STORE8(yr + ox, a0);
            STORE8(yr + ox + 8, a1);
        }
        for (; ox + 8 <= ow; ox += 8) {
            a0 = (v8f){0} + bias;
            if (accumulate)
                LOAD8(a0, yr + ox);
            for (int t = 0; t < taps; t++) {
                LOAD8(x0, base + off[t] + ox);
                a0 += w[t] * x0;
            }
            STORE8(yr + ox, a0);
        }
        if (tail >= 0) {
            float keep[8];
            STORE8(keep, last);
            memcpy(yr + ox, keep + (ox - tail), (size_t)(ow - ox) * sizeof *yr);
            ox = ow;
        }
        for (; ox < ow; ox++) {
            float acc = accumulate ? yr[ox] : bias;
            for (int t = 0; t < taps; t++)
                acc += w[t] * base[off[t] + ox];
            yr[ox] = acc;
        }
    }
}

/* acc[t] += sum over the plane of dy[oy][ox] * P[kx % s][oy*s + ky][ox + kx/s]
 * for every tap t = ky*k + kx: the weight gradient of one output plane. */
CPU_CLONES static void dw_weight_grad(double *acc, const float *dy,
                                                                             const float *P, int hp, int pw, int k,
                                                                             int s, int oh, int ow)
{
    for (int t = 0; t < k * k; t++) {
        const int64_t off = ((int64_t)(t % k % s) * hp + t / k) * pw + t % k / s;
        v8f sum = (v8f){0}, a, b;
        float rest = 0;
        for (int oy = 0; oy < oh; oy++) {
            const float *dyr = dy + (int64_t)oy * ow, *pr = P + (int64_t)oy * s * pw + off;
            int ox = 0;
            for (; ox + 8 <= ow; ox += 8) {
                LOAD8(a, dyr + ox);
                LOAD8(b, pr + ox);
                sum += a * b;
            }
            for (; ox < ow; ox++)
                rest += dyr[ox] * pr[ox];
        }
        double total = rest;
        for (int j = 0; j < 8; j++)
            total += sum[j];
        acc[t] += total;
    }
}

static void dw_forward(const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                       const conv_geom *g)
{
    const int og = g->oc / g->groups, k = g->k;
    const int64_t planes = (int64_t)g->n * g->c, hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow;
    const dw_planes d = dw_planes_for(g);
    const int64_t per_thread = dw_thread_ws(g);
#pragma omp parallel num_threads(p->threads) if (planes * og * ohw * k * k > PAR_MIN)
    {
        float *P = p->ws + omp_get_thread_num() * per_thread;
        int64_t lo, hi;
        span(planes, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (int64_t pl = lo; pl < hi; pl++) { /* input plane (i, c), feeding outputs c*og .. */
            const int i = (int)(pl / g->c), c = (int)(pl % g->c);
            dw_pad_phases(P, in + pl * hw, g, &d);
            for (int o = c * og; o < (c + 1) * og; o++)
                dw_core(out + ((int64_t)i * g->oc + o) * ohw, P, d.hp, d.pw, weight + (int64_t)o * k * k, k,
                        g->stride, g->oh, g->ow, bias ? bias[o] : 0, 0);
        }
    }
}

static void dw_backward(const cpu_par *p, float *din, float *dweight, const float *dout, const float *in,
                        const float *weight, const conv_geom *g)
{
    const int og = g->oc / g->groups, k = g->k, s = g->stride;
    const int64_t hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow;
    const dw_planes d = dw_planes_for(g);
    const int64_t per_thread = dw_thread_ws(g);
    /* Split over input channels: each owns its din planes and its outputs' weights. */
#pragma omp parallel num_threads(p->threads) if ((int64_t)g->n * g->oc * ohw * k * k > PAR_MIN)
    {
        float *P = p->ws + omp_get_thread_num() * per_thread, *F = P + d.phase_size;
        int64_t lo, hi;
        span(g->c, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (int c = (int)lo; c < hi; c++)
            for (int o = c * og; o < (c + 1) * og; o++) {
                const float *w = weight + (int64_t)o * k * k;
                float wflip[DW_MAX_TAPS];
                for (int t = 0; t < k * k; t++)
                    wflip[t] = w[k * k - 1 - t];
                double acc[DW_MAX_TAPS] = {0};
                for (int i = 0; i < g->n; i++) {
                    const float *dy = dout + ((int64_t)i * g->oc + o) * ohw;
                    if (dweight) {
                        dw_pad_phases(P, in + ((int64_t)i * g->c + c) * hw, g, &d);
                        dw_weight_grad(acc, dy, P, d.hp, d.pw, k, s, g->oh, g->ow);
                    }
                    if (din) {
                        dw_spread(F, dy, g, &d);
                        dw_core(din + ((int64_t)i * g->c + c) * hw, F, d.fh, d.fw, wflip, k, 1, g->h, g->w, 0, 1);
                    }
                }
                if (dweight)
                    for (int t = 0; t < k * k; t++)
                        dweight[(int64_t)o * k * k + t] += (float)acc[t];
            }
    }
}

CPU_CLONES void fast_conv2d_forward(const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                         const conv_geom *g)
{
    if (is_depthwise(g)) {
        dw_forward(p, out, in, weight, bias, g);
        return;
    }
    const conv_tiling tl = conv_tiling_for(g);
    const int cg = g->c / g->groups, og = g->oc / g->groups, ckg = cg * g->k * g->k, direct = is_pointwise(g);
    const int64_t hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow;
    /* every thread gets work when there are images enough */
    const int imgs = run_length(g->n, tl.imgs, p->threads);
    const int64_t units = tl.tiles == 1 ? (g->n + imgs - 1) / imgs : (int64_t)g->n * tl.tiles;
    const int64_t per_thread = conv_thread_ws(g, &tl);
#pragma omp parallel num_threads(p->threads) if (units > 1)
    {
        const int t = omp_get_thread_num();
        float *col = p->ws + t * per_thread, *stage = col + (int64_t)g->c * g->k * g->k * tl.max_cols;
        int64_t u0, u1;
        span(units, t, omp_get_num_threads(), &u0, &u1);
        for (int64_t u = u0; u < u1; u++) {
            int img, ni, j0, nj;
            conv_unit(&tl, imgs, g->n, (int)ohw, u, &img, &ni, &j0, &nj);
            const int len = ni * nj;
            const float *b = col;
            int ldb = len;
            if (direct && ni == 1) {
                b = in + (int64_t)img * g->c * hw + j0;
                ldb = (int)hw;
            } else {
                im2col_run(col, (float *)in, g, img, ni, j0, nj, 0);
            }
            float *c = ni == 1 ? out + (int64_t)img * g->oc * ohw + j0 : stage;
            const int ldc = ni == 1 ? (int)ohw : len;
            for (int grp = 0; grp < g->groups; grp++)
                sgemm(0, 0, og, len, ckg, 1, weight + (int64_t)grp * og * ckg, ckg, b + (int64_t)grp * ckg * ldb,
                      ldb, 0, c + (int64_t)grp * og * ldc, ldc);
            for (int i = 0; i < ni; i++)
                for (int o = 0; o < g->oc; o++) {
                    float *dst = out + ((int64_t)(img + i) * g->oc + o) * ohw + j0;
                    const float *src = c + (int64_t)o * ldc + (int64_t)i * nj;
                    const float bo = bias ? bias[o] : 0;
                    if (ni == 1) {
                        if (bias) {
#pragma omp simd
                            for (int j = 0; j < nj; j++)
                                dst[j] += bo;
                        }
                    } else {
#pragma omp simd
                        for (int j = 0; j < nj; j++)
                            dst[j] = src[j] + bo;
                    }
                }
        }
    }
}

/* dbias[o] += sum over images and positions of dout[., o, .], split over channels. */
static void bias_grad(const cpu_par *p, float *dbias, const float *dout, int n, int c, int64_t hw)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int o = 0; o < c; o++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            const float *d = dout + ((int64_t)i * c + o) * hw;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < hw; j++)
                s += d[j];
        }
        dbias[o] += (float)s;
    }
}

CPU_CLONES void fast_conv2d_backward(const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, const conv_geom *g)
{
    if (dbias)
        bias_grad(p, dbias, dout, g->n, g->oc, (int64_t)g->oh * g->ow);
    if (is_depthwise(g)) {
        if (din || dweight)
            dw_backward(p, din, dweight, dout, in, weight, g);
        return;
    }
    if (!din && !dweight)
        return;
    const conv_tiling tl = conv_tiling_for(g);
    const int cg = g->c / g->groups, og = g->oc / g->groups, ckg = cg * g->k * g->k, direct = is_pointwise(g);
    const int64_t hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow, wsize = (int64_t)g->oc * ckg;
    const int64_t per_thread = conv_thread_ws(g, &tl);
    float *partials = p->ws + p->threads * per_thread;
    /* Split over images, so each thread owns its din planes; weight gradients
     * are summed per thread (thread 0 straight into dweight), then reduced in
     * thread order. */
#pragma omp parallel num_threads(p->threads) if (g->n > 1)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *col = p->ws + t * per_thread, *stage = col + (int64_t)g->c * g->k * g->k * tl.max_cols;
        float *dw = !dweight ? NULL : t == 0 ? dweight : partials + (t - 1) * wsize;
        if (dw && t > 0)
            memset(dw, 0, (size_t)wsize * sizeof *dw);
        int64_t i0, i1;
        span(g->n, t, nt, &i0, &i1);
        const int imgs = run_length((int)(i1 - i0), tl.imgs, 1);
        for (int img = (int)i0; img < i1;) {
            const int ni = (int)min64(imgs, i1 - img);
            for (int tile = 0; tile < tl.tiles; tile++) {
                const int j0 = tile * tl.tile, nj = (int)min64(tl.tile, ohw - j0);
                const int len = ni * nj;
                const float *dy = dout + (int64_t)img * g->oc * ohw + j0;
                int lddy = (int)ohw;
                if (ni > 1) {
                    for (int o = 0; o < g->oc; o++)
                        for (int i = 0; i < ni; i++)
                            memcpy(stage + (int64_t)o * len + (int64_t)i * nj,
                                   dout + ((int64_t)(img + i) * g->oc + o) * ohw, (size_t)nj * sizeof *stage);
                    dy = stage;
                    lddy = len;
                }
                if (dw) {
                    const float *b = col;
                    int ldb = len;
                    if (direct && ni == 1) {
                        b = in + (int64_t)img * g->c * hw + j0;
                        ldb = (int)hw;
                    } else {
                        im2col_run(col, (float *)in, g, img, ni, j0, nj, 0);
                    }
                    for (int grp = 0; grp < g->groups; grp++)
                        sgemm(0, 1, og, ckg, len, 1, dy + (int64_t)grp * og * lddy, lddy,
                              b + (int64_t)grp * ckg * ldb, ldb, 1, dw + (int64_t)grp * og * ckg, ckg);
                }
                if (din) {
                    if (direct && ni == 1) {
                        for (int grp = 0; grp < g->groups; grp++)
                            sgemm(1, 0, ckg, len, og, 1, weight + (int64_t)grp * og * ckg, ckg,
                                  dy + (int64_t)grp * og * lddy, lddy, 1,
                                  din + ((int64_t)img * g->c + (int64_t)grp * cg) * hw + j0, (int)hw);
                    } else {
                        for (int grp = 0; grp < g->groups; grp++)
                            sgemm(1, 0, ckg, len, og, 1, weight + (int64_t)grp * og * ckg, ckg,
                                  dy + (int64_t)grp * og * lddy, lddy, 0, col + (int64_t)grp * ckg * len, len);
                        im2col_run(col, din, g, img, ni, j0, nj, 1);
                    }
                }
            }
            img += ni;
        }
        if (dweight && nt > 1) {
#pragma omp barrier
            int64_t e0, e1;
            span(wsize, t, nt, &e0, &e1);
            for (int q = 1; q < nt; q++) {
                const float *src = partials + (q - 1) * wsize;
                for (int64_t e = e0; e < e1; e++)
                    dweight[e] += src[e];
            }
        }
    }
}

/* ---- batchnorm: split over channels, each channel's sums in one thread ---- */

/* Sums of one plane run in float vectors; planes are then added in double. */
static double sum_plane(const float *x, int64_t count)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < count; j++)
        s += x[j];
    return s;
}

CPU_CLONES void fast_batchnorm_forward_train_act(const cpu_par *p, float *out, float *save, float *running_mean,
                                      float *running_var, const float *in, const float *gamma, const float *beta, int n,
                                      int c, int hw, float eps, float momentum, int act)
{
    const double m = (double)n * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < n; i++)
            sum += sum_plane(in + ((int64_t)i * c + ch) * hw, hw);
        const double mean = sum / m;
        const float fmean = (float)mean;
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * c + ch) * hw;
            float plane = 0;
#pragma omp simd reduction(+ : plane)
            for (int j = 0; j < hw; j++)
                plane += (x[j] - fmean) * (x[j] - fmean);
            sq += plane;
        }
        save[ch] = (float)mean;
        save[c + ch] = (float)(1 / sqrt(sq / m + eps));
        const float mu = save[ch], scale = save[c + ch] * gamma[ch], shift = beta[ch];
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * c + ch) * hw;
            float *y = out + ((int64_t)i * c + ch) * hw;
#pragma omp simd
            for (int j = 0; j < hw; j++)
                y[j] = cpu_act((x[j] - mu) * scale + shift, act);
        }
        running_mean[ch] = (float)(momentum * mean + (1 - momentum) * (double)running_mean[ch]);
        running_var[ch] = (float)(momentum * (sq / (m - 1)) + (1 - momentum) * (double)running_var[ch]);
    }
}

CPU_CLONES void fast_batchnorm_forward_train(const cpu_par *p, float *out, float *save, float *running_mean,
                                  float *running_var, const float *in, const float *gamma, const float *beta, int n,
                                  int c, int hw, float eps, float momentum)
{
    fast_batchnorm_forward_train_act(p, out, save, running_mean, running_var, in, gamma, beta, n, c, hw, eps, momentum,
                                     CPU_ACT_NONE);
}

CPU_CLONES void fast_batchnorm_forward_eval_act(const cpu_par *p, float *out, const float *in, const float *gamma,
                                     const float *beta, const float *running_mean, const float *running_var, int n,
                                     int c, int hw, float eps, int act)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int64_t plane = 0; plane < (int64_t)n * c; plane++) {
        const int ch = (int)(plane % c);
        const float mu = running_mean[ch], scale = (float)(1 / sqrt((double)running_var[ch] + eps)) * gamma[ch];
        const float shift = beta[ch];
        const float *x = in + plane * hw;
        float *y = out + plane * hw;
#pragma omp simd
        for (int j = 0; j < hw; j++)
            y[j] = cpu_act((x[j] - mu) * scale + shift, act);
    }
}

CPU_CLONES void fast_batchnorm_forward_eval(const cpu_par *p, float *out, const float *in, const float *gamma,
                                 const float *beta, const float *running_mean, const float *running_var, int n, int c,
                                 int hw, float eps)
{
    fast_batchnorm_forward_eval_act(p, out, in, gamma, beta, running_mean, running_var, n, c, hw, eps, CPU_ACT_NONE);
}

CPU_CLONES void fast_batchnorm_backward_act(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *save, const float *gamma, int n, int c, int hw,
                                 const float *yact, int act)
{
    const double m = (double)n * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        const float mu = save[ch], invstd = save[c + ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * c + ch) * hw, *dy = dout + ((int64_t)i * c + ch) * hw;
            const float *ya = act ? yact + ((int64_t)i * c + ch) * hw : dy;
            float pdy = 0, pdyx = 0;
#pragma omp simd reduction(+ : pdy, pdyx)
            for (int j = 0; j < hw; j++) {
                const float g = cpu_act_grad(dy[j], ya[j], act);
                pdy += g;
                pdyx += g * ((x[j] - mu) * invstd);
            }
            sdy += pdy;
            sdyx += pdyx;
        }
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        if (!din)
            continue;
        const float scale = gamma[ch] * invstd, mdy = (float)(sdy / m), mdyx = (float)(sdyx / m);
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * c + ch) * hw, *dy = dout + ((int64_t)i * c + ch) * hw;
            const float *ya = act ? yact + ((int64_t)i * c + ch) * hw : dy;
            float *dx = din + ((int64_t)i * c + ch) * hw;
#pragma omp simd
            for (int j = 0; j < hw; j++)
                dx[j] += scale * (cpu_act_grad(dy[j], ya[j], act) - mdy - (x[j] - mu) * invstd * mdyx);
        }
    }
}

CPU_CLONES void fast_batchnorm_backward(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *save, const float *gamma, int n, int c, int hw)
{
    fast_batchnorm_backward_act(p, din, dgamma, dbeta, dout, in, save, gamma, n, c, hw, NULL, CPU_ACT_NONE);
}

/* ---- elementwise ---- */

CPU_CLONES void fast_relu_forward(const cpu_par *p, float *out, const float *in, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        out[i] = in[i] < 0 ? 0 : in[i];
}

CPU_CLONES void fast_relu_backward(const cpu_par *p, float *din, const float *dout, const float *in, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++) {
        const float d = dout[i]; /* loaded either way, so that the select vectorizes */
        din[i] += in[i] > 0 ? d : 0;
    }
}

CPU_CLONES void fast_relu6_forward(const cpu_par *p, float *out, const float *in, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        out[i] = in[i] < 0 ? 0 : in[i] > 6 ? 6 : in[i];
}

CPU_CLONES void fast_relu6_backward(const cpu_par *p, float *din, const float *dout, const float *in, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++) {
        const float d = dout[i], x = in[i];
        din[i] += (x > 0) & (x < 6) ? d : 0;
    }
}

CPU_CLONES void fast_add_forward_act(const cpu_par *p, float *out, const float *a, const float *b, int64_t count, int act)
{
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        out[i] = cpu_act(a[i] + b[i], act);
}

CPU_CLONES void fast_add_forward(const cpu_par *p, float *out, const float *a, const float *b, int64_t count)
{
    fast_add_forward_act(p, out, a, b, count, CPU_ACT_NONE);
}

CPU_CLONES void fast_add_backward_act(const cpu_par *p, float *da, float *db, const float *dout, const float *yact,
                           int64_t count, int act)
{
    if (!act) {
        fast_add_backward(p, da, db, dout, count);
        return;
    }
    if (da && db) {
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++) {
            const float g = cpu_act_grad(dout[i], yact[i], act);
            da[i] += g;
            db[i] += g;
        }
        return;
    }
    float *d = da ? da : db;
    if (d) {
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            d[i] += cpu_act_grad(dout[i], yact[i], act);
    }
}

CPU_CLONES void fast_add_backward(const cpu_par *p, float *da, float *db, const float *dout, int64_t count)
{
    if (da) {
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) num_threads(p->threads) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            db[i] += dout[i];
    }
}

/* ---- pools: split over planes ---- */

CPU_CLONES void fast_maxpool_forward(const cpu_par *p, float *out, int32_t *argmax, const float *in, const conv_geom *g)
{
    const int64_t planes = (int64_t)g->n * g->c, hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (planes * ohw * g->k * g->k > PAR_MIN)
    for (int64_t plane = 0; plane < planes; plane++) {
        const float *x = in + plane * hw;
        for (int oy = 0; oy < g->oh; oy++) {
            const int y0 = oy * g->stride - g->pad;
            const int ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + g->k > g->h ? g->h - y0 : g->k;
            for (int ox = 0; ox < g->ow; ox++) {
                const int x0 = ox * g->stride - g->pad;
                const int kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + g->k > g->w ? g->w - x0 : g->k;
                /* as the reference: the first of equal maxima wins, NaN propagates */
                float best = -INFINITY;
                int32_t at = ky0 < ky1 && kx0 < kx1 ? (y0 + ky0) * g->w + x0 + kx0 : -1;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int32_t idx = (y0 + ky) * g->w + x0 + kx;
                        if (x[idx] > best || isnan(x[idx])) {
                            best = x[idx];
                            at = idx;
                        }
                    }
                out[plane * ohw + (int64_t)oy * g->ow + ox] = best;
                argmax[plane * ohw + (int64_t)oy * g->ow + ox] = at;
            }
        }
    }
}

CPU_CLONES void fast_maxpool_backward(const cpu_par *p, float *din, const float *dout, const int32_t *argmax,
                           const conv_geom *g)
{
    const int64_t planes = (int64_t)g->n * g->c, hw = (int64_t)g->h * g->w, ohw = (int64_t)g->oh * g->ow;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (planes * ohw > PAR_MIN)
    for (int64_t plane = 0; plane < planes; plane++)
        for (int64_t j = 0; j < ohw; j++)
            if (argmax[plane * ohw + j] >= 0)
                din[plane * hw + argmax[plane * ohw + j]] += dout[plane * ohw + j];
}

CPU_CLONES void fast_avgpool_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int64_t plane = 0; plane < (int64_t)n * c; plane++)
        out[plane] = (float)(sum_plane(in + plane * hw, hw) / hw);
}

CPU_CLONES void fast_avgpool_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int64_t plane = 0; plane < (int64_t)n * c; plane++) {
        const float d = dout[plane] / hw;
#pragma omp simd
        for (int j = 0; j < hw; j++)
            din[plane * hw + j] += d;
    }
}

/* ---- channel plumbing: split over images ---- */

CPU_CLONES void fast_slice_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int start, int count)
{
    const int64_t row = (int64_t)count * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (n * row > PAR_MIN)
    for (int i = 0; i < n; i++)
        memcpy(out + i * row, in + ((int64_t)i * c + start) * hw, (size_t)row * sizeof *out);
}

CPU_CLONES void fast_slice_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int start,
                         int count)
{
    const int64_t row = (int64_t)count * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (n * row > PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *dst = din + ((int64_t)i * c + start) * hw;
        const float *src = dout + i * row;
#pragma omp simd
        for (int64_t j = 0; j < row; j++)
            dst[j] += src[j];
    }
}

CPU_CLONES void fast_concat_forward(const cpu_par *p, float *out, const float *a, const float *b, int n, int ca, int cb,
                         int hw)
{
    const int64_t ra = (int64_t)ca * hw, rb = (int64_t)cb * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (n * (ra + rb) > PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(out + i * (ra + rb), a + i * ra, (size_t)ra * sizeof *out);
        memcpy(out + i * (ra + rb) + ra, b + i * rb, (size_t)rb * sizeof *out);
    }
}

CPU_CLONES void fast_concat_backward(const cpu_par *p, float *da, float *db, const float *dout, int n, int ca, int cb,
                          int hw)
{
    const int64_t ra = (int64_t)ca * hw, rb = (int64_t)cb * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (n * (ra + rb) > PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *src = dout + i * (ra + rb);
        if (da) {
#pragma omp simd
            for (int64_t j = 0; j < ra; j++)
                da[i * ra + j] += src[j];
        }
        if (db) {
#pragma omp simd
            for (int64_t j = 0; j < rb; j++)
                db[i * rb + j] += src[ra + j];
        }
    }
}

CPU_CLONES void fast_shuffle_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int groups)
{
    const int per = c / groups;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int gi = 0; gi < groups; gi++)
            for (int j = 0; j < per; j++)
                memcpy(out + ((int64_t)i * c + j * groups + gi) * hw, in + ((int64_t)i * c + gi * per + j) * hw,
                       (size_t)hw * sizeof *out);
}

CPU_CLONES void fast_shuffle_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int groups)
{
    const int per = c / groups;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * c * hw > PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int gi = 0; gi < groups; gi++)
            for (int j = 0; j < per; j++) {
                float *dst = din + ((int64_t)i * c + gi * per + j) * hw;
                const float *src = dout + ((int64_t)i * c + j * groups + gi) * hw;
#pragma omp simd
                for (int q = 0; q < hw; q++)
                    dst[q] += src[q];
            }
}

/* ---- classifier heads ---- */

CPU_CLONES void fast_linear_forward(const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                         int n, int f, int k)
{
    par_sgemm(p, 0, 1, n, k, f, 1, in, f, weight, f, 0, out, k);
    if (bias)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < k; o++)
                out[(int64_t)i * k + o] += bias[o];
}

CPU_CLONES void fast_linear_backward(const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, int n, int f, int k)
{
    if (din)
        par_sgemm(p, 0, 0, n, f, k, 1, dout, k, weight, f, 1, din, f);
    if (dweight)
        par_sgemm(p, 1, 0, k, f, n, 1, dout, k, in, f, 1, dweight, f);
    if (dbias)
        for (int o = 0; o < k; o++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += dout[(int64_t)i * k + o];
            dbias[o] += (float)s;
        }
}

/* Rows of x[rows,f] to unit length (norm floored at CPU_NORM_EPS) into y, raw lengths into norm. */
static void normalize_rows(const cpu_par *p, float *y, float *norm, const float *x, int rows, int f)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)rows * f > PAR_MIN)
    for (int i = 0; i < rows; i++) {
        const float *xr = x + (int64_t)i * f;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < f; j++)
            s += (double)xr[j] * xr[j];
        norm[i] = (float)sqrt(s);
        const double d = sqrt(s) > CPU_NORM_EPS ? sqrt(s) : CPU_NORM_EPS;
#pragma omp simd
        for (int j = 0; j < f; j++)
            y[(int64_t)i * f + j] = (float)(xr[j] / d);
    }
}

/* dx_i += the gradient through y_i = x_i / max(|x_i|, eps), given dy (rows of [rows,f]). */
static void normalize_rows_backward(const cpu_par *p, float *dx, const float *dy, const float *y, const float *norm,
                                    int rows, int f)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)rows * f > PAR_MIN)
    for (int i = 0; i < rows; i++) {
        const float *dyr = dy + (int64_t)i * f, *yr = y + (int64_t)i * f;
        float *dxr = dx + (int64_t)i * f;
        if (norm[i] > CPU_NORM_EPS) {
            double dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < f; j++)
                dot += (double)yr[j] * dyr[j];
            const float inv = 1 / norm[i], fdot = (float)dot;
#pragma omp simd
            for (int j = 0; j < f; j++)
                dxr[j] += (dyr[j] - yr[j] * fdot) * inv;
        } else {
#pragma omp simd
            for (int j = 0; j < f; j++)
                dxr[j] += (float)(dyr[j] / CPU_NORM_EPS);
        }
    }
}

int64_t fast_cosine_linear_workspace(int n, int f, int k) { return (int64_t)(n > k ? n : k) * f; }

CPU_CLONES void fast_cosine_linear_forward(const cpu_par *p, float *out, float *save, const float *in, const float *weight,
                                const float *sigma, int n, int f, int k)
{
    float *xn = save, *wn = xn + (int64_t)n * f, *xnorm = wn + (int64_t)k * f, *wnorm = xnorm + n, *cos = wnorm + k;
    normalize_rows(p, xn, xnorm, in, n, f);
    normalize_rows(p, wn, wnorm, weight, k, f);
    par_sgemm(p, 0, 1, n, k, f, 1, xn, f, wn, f, 0, cos, k);
    for (int64_t i = 0; i < (int64_t)n * k; i++)
        out[i] = sigma[0] * cos[i];
}

CPU_CLONES void fast_cosine_linear_backward(const cpu_par *p, float *din, float *dweight, float *dsigma, const float *dout,
                                 const float *save, const float *sigma, int n, int f, int k)
{
    const float *xn = save, *wn = xn + (int64_t)n * f, *xnorm = wn + (int64_t)k * f, *wnorm = xnorm + n,
                *cos = wnorm + k;
    if (dsigma) {
        double s = 0;
        for (int64_t i = 0; i < (int64_t)n * k; i++)
            s += (double)dout[i] * cos[i];
        dsigma[0] += (float)s;
    }
    if (din) { /* d loss / d xn = sigma dout wn */
        par_sgemm(p, 0, 0, n, f, k, sigma[0], dout, k, wn, f, 0, p->ws, f);
        normalize_rows_backward(p, din, p->ws, xn, xnorm, n, f);
    }
    if (dweight) { /* d loss / d wn = sigma dout^T xn */
        par_sgemm(p, 1, 0, k, f, n, sigma[0], dout, k, xn, f, 0, p->ws, f);
        normalize_rows_backward(p, dweight, p->ws, wn, wnorm, k, f);
    }
}

CPU_CLONES void fast_l2norm_forward(const cpu_par *p, float *out, float *save, const float *in, int n, int f)
{
    normalize_rows(p, out, save, in, n, f);
}

CPU_CLONES void fast_l2norm_backward(const cpu_par *p, float *din, const float *dout, const float *out, const float *save,
                          int n, int f)
{
    normalize_rows_backward(p, din, dout, out, save, n, f);
}

/* ---- losses: rows split over threads, per-thread sums added in thread order ---- */

CPU_CLONES void fast_softmax_xent_forward(const cpu_par *p, float *loss, float *save, const float *logits,
                               const float *labels, int n, int k)
{
    double part[CPU_MAX_THREADS] = {0};
    const int nt = p->threads < CPU_MAX_THREADS ? p->threads : CPU_MAX_THREADS;
#pragma omp parallel num_threads(nt) if ((int64_t)n * k > PAR_MIN)
    {
        const int t = omp_get_thread_num();
        int64_t lo, hi;
        span(n, t, omp_get_num_threads(), &lo, &hi);
        double total = 0;
        for (int64_t i = lo; i < hi; i++) {
            const float *z = logits + i * k;
            float *pr = save + i * k;
            float mx = z[0];
            for (int o = 1; o < k; o++)
                mx = z[o] > mx ? z[o] : mx;
            double s = 0;
            for (int o = 0; o < k; o++)
                s += exp((double)z[o] - mx);
            for (int o = 0; o < k; o++)
                pr[o] = (float)(exp((double)z[o] - mx) / s);
            total += log(s) - ((double)z[(int)labels[i]] - mx);
        }
        part[t] = total;
    }
    double total = 0;
    for (int t = 0; t < nt; t++)
        total += part[t];
    loss[0] = (float)(total / n);
}

CPU_CLONES void fast_softmax_xent_backward(const cpu_par *p, float *dlogits, float dloss, const float *save,
                                const float *labels, int n, int k)
{
    const float scale = dloss / n;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * k > PAR_MIN)
    for (int i = 0; i < n; i++) {
        const int y = (int)labels[i];
        for (int o = 0; o < k; o++)
            dlogits[(int64_t)i * k + o] += scale * (save[(int64_t)i * k + o] - (o == y ? 1.0f : 0.0f));
    }
}

CPU_CLONES void fast_cosine_embed_forward(const cpu_par *p, float *loss, float *save, const float *a, const float *b, int n,
                               int f)
{
    float *anorm = save, *bnorm = save + n, *cos = save + 2 * n;
    double part[CPU_MAX_THREADS] = {0};
    const int nt = p->threads < CPU_MAX_THREADS ? p->threads : CPU_MAX_THREADS;
#pragma omp parallel num_threads(nt) if ((int64_t)n * f > PAR_MIN)
    {
        const int t = omp_get_thread_num();
        int64_t lo, hi;
        span(n, t, omp_get_num_threads(), &lo, &hi);
        double total = 0;
        for (int64_t i = lo; i < hi; i++) {
            const float *x = a + i * f, *y = b + i * f;
            double aa = 0, bb = 0, ab = 0;
#pragma omp simd reduction(+ : aa, bb, ab)
            for (int j = 0; j < f; j++) {
                aa += (double)x[j] * x[j];
                bb += (double)y[j] * y[j];
                ab += (double)x[j] * y[j];
            }
            const double na = sqrt(aa), nb = sqrt(bb);
            anorm[i] = (float)na;
            bnorm[i] = (float)nb;
            const double c = ab / ((na > CPU_NORM_EPS ? na : CPU_NORM_EPS) * (nb > CPU_NORM_EPS ? nb : CPU_NORM_EPS));
            cos[i] = (float)c;
            total += 1 - c;
        }
        part[t] = total;
    }
    double total = 0;
    for (int t = 0; t < nt; t++)
        total += part[t];
    loss[0] = (float)(total / n);
}

CPU_CLONES void fast_cosine_embed_backward(const cpu_par *p, float *da, float dloss, const float *save, const float *a,
                                const float *b, int n, int f)
{
    const float *anorm = save, *bnorm = save + n, *cos = save + 2 * n;
    const double scale = -(double)dloss / n;
#pragma omp parallel for schedule(static) num_threads(p->threads) if ((int64_t)n * f > PAR_MIN)
    for (int i = 0; i < n; i++) {
        const double an = anorm[i] > CPU_NORM_EPS ? anorm[i] : CPU_NORM_EPS;
        const double bn = bnorm[i] > CPU_NORM_EPS ? bnorm[i] : CPU_NORM_EPS;
        const float *x = a + (int64_t)i * f, *y = b + (int64_t)i * f;
        float *dx = da + (int64_t)i * f;
        if (anorm[i] > CPU_NORM_EPS) {
            const float ka = (float)(scale / an / bn), kb = (float)(-scale * cos[i] / (an * an));
#pragma omp simd
            for (int j = 0; j < f; j++)
                dx[j] += ka * y[j] + kb * x[j];
        } else {
            const float kb = (float)(scale / bn / CPU_NORM_EPS);
#pragma omp simd
            for (int j = 0; j < f; j++)
                dx[j] += kb * y[j];
        }
    }
}

/* ---- optimiser: elementwise, the reference's arithmetic exactly ---- */

CPU_CLONES void fast_zero(const cpu_par *p, float *x, int64_t count)
{
    const int nt = count > 8 * PAR_MIN ? p->threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t lo, hi;
        span(count, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        memset(x + lo, 0, (size_t)(hi - lo) * sizeof *x);
    }
}

CPU_CLONES void fast_sgd_update(const cpu_par *p, float *param, const float *grad, float *mom, int64_t count, float lr,
                     float momentum, float weight_decay, int nesterov)
{
#pragma omp parallel for schedule(static) num_threads(p->threads) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++) {
        float d = grad[i];
        if (weight_decay != 0)
            d += weight_decay * param[i];
        mom[i] = momentum * mom[i] + d;
        if (nesterov)
            d += momentum * mom[i];
        else
            d = mom[i];
        param[i] -= lr * d;
    }
}
