/* kernels_sync.c: batch norm in training over the rows of every rank of a
 * data-parallel run (synchronised batch norm). Each rank holds n rows; the
 * per-channel sums go through `reduce` (an allreduce, blocking), so mean and
 * variance are those of the global batch, and the backward's two
 * per-channel means too. The same two-pass arithmetic as
 * fast_batchnorm_forward_train_act (mean first, then the squared deviations
 * from the float mean): float sums over each row's plane, double over the
 * rows and the ranks.
 *
 * Both layouts are walked in memory order as [n][cbs][hw][B]: the plain one
 * is B = 1 (cbs = c), the channel-blocked one B = b lanes of consecutive
 * channels, which the inner loop runs across (one vector of lanes). Threads
 * split the channel blocks, so each channel's sums are one thread's, in one
 * order whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define MAX_LANES 64

typedef struct bn_view {
    int c, hw, B, cbs;
} bn_view;

static int view_of(bn_view *v, int c, int hw, int b)
{
    v->c = c;
    v->hw = hw;
    v->B = b ? b : 1;
    v->cbs = b ? (c + b - 1) / b : c;
    return v->B <= MAX_LANES ? 0 : -1;
}

/* The view of the layout and room for 2c + 1 sums, or NULL (a block wider
 * than MAX_LANES, or no memory). */
static double *start(bn_view *v, int c, int hw, int b)
{
    return view_of(v, c, hw, b) ? NULL : malloc(sizeof(double) * (size_t)(2 * c + 1));
}

/* Row i's plane of channel block cb: hw x B floats. */
static inline int64_t plane(const bn_view *v, int i, int cb)
{
    return ((int64_t)i * v->cbs + cb) * v->hw * v->B;
}

/* acc[l] += sum over the plane of (x - mu[l]) (sq 0) or of (x - mu[l])^2
 * (sq 1), lane by lane, in float. */
static inline void plane_sums(const float *x, int hw, int B, const float *mu, int sq, float *part)
{
    if (B == 1) {
        const float m = mu ? mu[0] : 0;
        float s = 0;
        if (sq) {
#pragma omp simd reduction(+ : s)
            for (int j = 0; j < hw; j++)
                s += (x[j] - m) * (x[j] - m);
        } else {
#pragma omp simd reduction(+ : s)
            for (int j = 0; j < hw; j++)
                s += x[j];
        }
        part[0] = s;
        return;
    }
    for (int l = 0; l < B; l++)
        part[l] = 0;
    for (int j = 0; j < hw; j++, x += B) {
        if (sq) {
#pragma omp simd
            for (int l = 0; l < B; l++)
                part[l] += (x[l] - mu[l]) * (x[l] - mu[l]);
        } else {
#pragma omp simd
            for (int l = 0; l < B; l++)
                part[l] += x[l];
        }
    }
}

/* buf[ch] = sum over this rank's rows and positions, per channel. */
static void channel_sums(const cpu_par *p, const bn_view *v, const float *in, int n, const float *mu, int sq,
                         double *buf)
{
    const int par = (int64_t)n * v->cbs * v->hw * v->B > 32768;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int cb = 0; cb < v->cbs; cb++) {
        double acc[MAX_LANES] = {0};
        float part[MAX_LANES], m[MAX_LANES] = {0};
        if (mu)
            for (int l = 0; l < v->B && cb * v->B + l < v->c; l++)
                m[l] = mu[cb * v->B + l];
        for (int i = 0; i < n; i++) {
            plane_sums(in + plane(v, i, cb), v->hw, v->B, m, sq, part);
            for (int l = 0; l < v->B; l++)
                acc[l] += part[l];
        }
        for (int l = 0; l < v->B && cb * v->B + l < v->c; l++)
            buf[cb * v->B + l] = acc[l];
    }
}

int sync_batchnorm_forward_train(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *out, float *save,
                                 float *running_mean, float *running_var, const float *in, const float *gamma,
                                 const float *beta, int n, int c, int hw, int b, float eps, float momentum, int act)
{
    bn_view v;
    double *buf = start(&v, c, hw, b);
    if (!buf)
        return -1;
    channel_sums(p, &v, in, n, NULL, 0, buf);
    buf[c] = (double)n * hw;
    if (reduce(rctx, buf, c + 1)) {
        free(buf);
        return -1;
    }
    const double m = buf[c];
    double *mean = buf + c + 1;
    for (int ch = 0; ch < c; ch++) {
        mean[ch] = buf[ch] / m;
        save[ch] = (float)mean[ch];
    }
    channel_sums(p, &v, in, n, save, 1, buf);
    if (reduce(rctx, buf, c)) {
        free(buf);
        return -1;
    }
    for (int ch = 0; ch < c; ch++) {
        save[c + ch] = (float)(1 / sqrt(buf[ch] / m + eps));
        running_mean[ch] = (float)(momentum * mean[ch] + (1 - momentum) * (double)running_mean[ch]);
        running_var[ch] = (float)(momentum * (buf[ch] / (m - 1)) + (1 - momentum) * (double)running_var[ch]);
    }
    const int par = (int64_t)n * v.cbs * hw * v.B > 32768;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int cb = 0; cb < v.cbs; cb++) {
        /* the blocked layout's lanes past c: scale and shift 0, so they stay zero */
        float mu[MAX_LANES] = {0}, scale[MAX_LANES] = {0}, shift[MAX_LANES] = {0};
        for (int l = 0; l < v.B && cb * v.B + l < c; l++) {
            const int ch = cb * v.B + l;
            mu[l] = save[ch];
            scale[l] = save[c + ch] * gamma[ch];
            shift[l] = beta[ch];
        }
        for (int i = 0; i < n; i++) {
            const float *x = in + plane(&v, i, cb);
            float *y = out + plane(&v, i, cb);
            if (v.B == 1) {
#pragma omp simd
                for (int j = 0; j < hw; j++)
                    y[j] = cpu_act((x[j] - mu[0]) * scale[0] + shift[0], act);
                continue;
            }
            for (int j = 0; j < hw; j++, x += v.B, y += v.B)
#pragma omp simd
                for (int l = 0; l < v.B; l++)
                    y[l] = cpu_act((x[l] - mu[l]) * scale[l] + shift[l], act);
        }
    }
    free(buf);
    return 0;
}

int sync_batchnorm_backward(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *din, float *dgamma,
                            float *dbeta, const float *dout, const float *in, const float *save, const float *gamma,
                            int n, int c, int hw, int b, const float *yact, int act)
{
    bn_view v;
    double *buf = start(&v, c, hw, b);
    if (!buf)
        return -1;
    const int par = (int64_t)n * v.cbs * hw * v.B > 32768;
    const int B = v.B;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int cb = 0; cb < v.cbs; cb++) {
        double sdy[MAX_LANES] = {0}, sdyx[MAX_LANES] = {0};
        float mu[MAX_LANES] = {0}, invstd[MAX_LANES] = {0};
        for (int l = 0; l < B && cb * B + l < c; l++) {
            mu[l] = save[cb * B + l];
            invstd[l] = save[c + cb * B + l];
        }
        for (int i = 0; i < n; i++) {
            const int64_t o = plane(&v, i, cb);
            const float *x = in + o, *dy = dout + o, *ya = act ? yact + o : dy;
            float a[MAX_LANES] = {0}, ax[MAX_LANES] = {0};
            if (B == 1) {
                float s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
                for (int j = 0; j < hw; j++) {
                    const float g = cpu_act_grad(dy[j], ya[j], act);
                    s += g;
                    sx += g * ((x[j] - mu[0]) * invstd[0]);
                }
                a[0] = s;
                ax[0] = sx;
            } else {
                for (int j = 0; j < hw; j++, x += B, dy += B, ya += B)
#pragma omp simd
                    for (int l = 0; l < B; l++) {
                        const float g = cpu_act_grad(dy[l], ya[l], act);
                        a[l] += g;
                        ax[l] += g * ((x[l] - mu[l]) * invstd[l]);
                    }
            }
            for (int l = 0; l < B; l++) {
                sdy[l] += a[l];
                sdyx[l] += ax[l];
            }
        }
        for (int l = 0; l < B && cb * B + l < c; l++) {
            const int ch = cb * B + l;
            /* this rank's share of the parameter gradients: the gradient
             * allreduce adds the other ranks' */
            if (dgamma)
                dgamma[ch] += (float)sdyx[l];
            if (dbeta)
                dbeta[ch] += (float)sdy[l];
            buf[ch] = sdy[l];
            buf[c + ch] = sdyx[l];
        }
    }
    buf[2 * c] = (double)n * hw;
    if (reduce(rctx, buf, 2 * c + 1)) {
        free(buf);
        return -1;
    }
    const double m = buf[2 * c];
    if (din) {
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
        for (int cb = 0; cb < v.cbs; cb++) {
            /* lanes past c: every factor 0, so their gradient stays zero */
            float mu[MAX_LANES] = {0}, invstd[MAX_LANES] = {0}, scale[MAX_LANES] = {0}, mdy[MAX_LANES] = {0},
                  mdyx[MAX_LANES] = {0};
            for (int l = 0; l < B && cb * B + l < c; l++) {
                const int ch = cb * B + l;
                mu[l] = save[ch];
                invstd[l] = save[c + ch];
                scale[l] = gamma[ch] * invstd[l];
                mdy[l] = (float)(buf[ch] / m);
                mdyx[l] = (float)(buf[c + ch] / m);
            }
            for (int i = 0; i < n; i++) {
                const int64_t o = plane(&v, i, cb);
                const float *x = in + o, *dy = dout + o, *ya = act ? yact + o : dy;
                float *dx = din + o;
                for (int j = 0; j < hw; j++, x += B, dy += B, ya += B, dx += B)
#pragma omp simd
                    for (int l = 0; l < B; l++) {
                        const float g = cpu_act_grad(dy[l], ya[l], act);
                        dx[l] += scale[l] * (g - mdy[l] - (x[l] - mu[l]) * invstd[l] * mdyx[l]);
                    }
            }
        }
    }
    free(buf);
    return 0;
}
