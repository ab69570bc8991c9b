/* kernels_sync.c: batch norm in training over the rows of every rank of a
 * data-parallel run (synchronised batch norm). Each rank holds n rows; the
 * per-channel sums go through `reduce` (an allreduce, blocking), so mean and
 * variance are those of the global batch, and the backward's two
 * per-channel means too. The same two-pass arithmetic as
 * fast_batchnorm_forward_train_act (mean first, then the squared deviations
 * from the float mean), in double across the ranks. */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

/* Where (row i, channel ch, position j) is: NCHW when b is 0, else the
 * channel-blocked layout of kernels_blk.c. */
typedef struct bn_view {
    int c, hw, b;
    int64_t cbs;
} bn_view;

static inline int64_t at(const bn_view *v, int i, int ch, int j)
{
    if (!v->b)
        return ((int64_t)i * v->c + ch) * v->hw + j;
    return (((int64_t)i * v->cbs + ch / v->b) * v->hw + j) * v->b + ch % v->b;
}

int sync_batchnorm_forward_train(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *out, float *save,
                                 float *running_mean, float *running_var, const float *in, const float *gamma,
                                 const float *beta, int n, int c, int hw, int b, float eps, float momentum, int act)
{
    const bn_view v = {c, hw, b, b ? (c + b - 1) / b : 0};
    double *buf = malloc(sizeof(double) * (size_t)(c + 1));
    if (!buf)
        return -1;
    const int par = (int64_t)n * c * hw > 32768;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++)
                s += in[at(&v, i, ch, j)];
        buf[ch] = s;
    }
    buf[c] = (double)n * hw;
    if (reduce(rctx, buf, c + 1)) {
        free(buf);
        return -1;
    }
    const double m = buf[c];
    for (int ch = 0; ch < c; ch++)
        save[ch] = (float)(buf[ch] / m);
    double *mean = malloc(sizeof(double) * (size_t)c);
    if (!mean) {
        free(buf);
        return -1;
    }
    for (int ch = 0; ch < c; ch++)
        mean[ch] = buf[ch] / m;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int ch = 0; ch < c; ch++) {
        const float mu = save[ch];
        double sq = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                const float d = in[at(&v, i, ch, j)] - mu;
                sq += (double)d * d;
            }
        buf[ch] = sq;
    }
    if (reduce(rctx, buf, c)) {
        free(buf);
        free(mean);
        return -1;
    }
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int ch = 0; ch < c; ch++) {
        save[c + ch] = (float)(1 / sqrt(buf[ch] / m + eps));
        const float mu = save[ch], scale = save[c + ch] * gamma[ch], shift = beta[ch];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                const int64_t k = at(&v, i, ch, j);
                out[k] = cpu_act((in[k] - mu) * scale + shift, act);
            }
        running_mean[ch] = (float)(momentum * mean[ch] + (1 - momentum) * (double)running_mean[ch]);
        running_var[ch] = (float)(momentum * (buf[ch] / (m - 1)) + (1 - momentum) * (double)running_var[ch]);
    }
    /* the blocked layout's lanes past c stay zero */
    for (int ch = c; b && ch < v.cbs * b; ch++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++)
                out[at(&v, i, ch, j)] = 0;
    free(buf);
    free(mean);
    return 0;
}

int sync_batchnorm_backward(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *din, float *dgamma,
                            float *dbeta, const float *dout, const float *in, const float *save, const float *gamma,
                            int n, int c, int hw, int b, const float *yact, int act)
{
    const bn_view v = {c, hw, b, b ? (c + b - 1) / b : 0};
    double *buf = malloc(sizeof(double) * (size_t)(2 * c + 1));
    if (!buf)
        return -1;
    const int par = (int64_t)n * c * hw > 32768;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
    for (int ch = 0; ch < c; ch++) {
        const float mu = save[ch], invstd = save[c + ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                const int64_t k = at(&v, i, ch, j);
                const float g = cpu_act_grad(dout[k], act ? yact[k] : dout[k], act);
                sdy += g;
                sdyx += (double)g * ((in[k] - mu) * invstd);
            }
        /* this rank's share of the parameter gradients: the gradient
         * allreduce adds the other ranks' */
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        buf[ch] = sdy;
        buf[c + ch] = sdyx;
    }
    buf[2 * c] = (double)n * hw;
    if (reduce(rctx, buf, 2 * c + 1)) {
        free(buf);
        return -1;
    }
    const double m = buf[2 * c];
    if (din) {
#pragma omp parallel for schedule(static) num_threads(p->threads) if (par)
        for (int ch = 0; ch < c; ch++) {
            const float mu = save[ch], invstd = save[c + ch], scale = gamma[ch] * invstd;
            const float mdy = (float)(buf[ch] / m), mdyx = (float)(buf[c + ch] / m);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < hw; j++) {
                    const int64_t k = at(&v, i, ch, j);
                    const float g = cpu_act_grad(dout[k], act ? yact[k] : dout[k], act);
                    din[k] += scale * (g - mdy - (in[k] - mu) * invstd * mdyx);
                }
        }
    }
    free(buf);
    return 0;
}
