/* kernels_blk.c: the ops that run on channel-blocked activations (oneDNN's
 * nChw16c / nChw8c), so that convolutions on oneDNN hand their outputs on
 * without a reorder: batch norm, global average pooling, and the conversion to
 * the plain layout for reading a tensor back. relu, relu6 and add are
 * elementwise and run the fast kernels over the padded size.
 *
 * Layout: x[n][cb][j][l] with channel c = cb * B + l, cb < ceil(C / B), j the
 * position in the H x W plane; the lanes of the last block past C (padding)
 * hold zeros, which every kernel here keeps. Work is split over channel
 * blocks, each block's sums are added in a fixed order, so a thread count
 * fixes every bit, as in the other fast kernels. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define MAXB 16

static inline int64_t blocks(int c, int b) { return (c + b - 1) / b; }

int64_t blk_size(int n, int c, int hw, int b) { return (int64_t)n * blocks(c, b) * b * hw; }

/* s[l] = the sum over the plane's hw positions of lane l (float, in order). */
static inline void lane_sums(float *s, const float *x, int hw, int b)
{
    for (int l = 0; l < b; l++)
        s[l] = 0;
    for (int j = 0; j < hw; j++)
#pragma omp simd
        for (int l = 0; l < b; l++)
            s[l] += x[(int64_t)j * b + l];
}

/* y = act((x - mu) * scale + shift) on channel block cb of every row. */
static inline void normalize_block(float *out, const float *in, int n, int64_t cbs, int64_t cb, int hw, int b,
                                   const float *mu, const float *scale, const float *shift, int act)
{
    const int64_t plane = (int64_t)hw * b;
    for (int i = 0; i < n; i++) {
        const float *x = in + ((int64_t)i * cbs + cb) * plane;
        float *y = out + ((int64_t)i * cbs + cb) * plane;
        for (int j = 0; j < hw; j++)
#pragma omp simd
            for (int l = 0; l < b; l++)
                y[(int64_t)j * b + l] = cpu_act((x[(int64_t)j * b + l] - mu[l]) * scale[l] + shift[l], act);
    }
}

CPU_CLONES void blk_batchnorm_forward_train(const cpu_par *p, float *out, float *save, float *running_mean, float *running_var,
                                 const float *in, const float *gamma, const float *beta, int n, int c, int hw, int b,
                                 float eps, float momentum, int act)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
    const double m = (double)n * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int64_t cb = 0; cb < cbs; cb++) {
        const int lanes = (int)(c - cb * b < b ? c - cb * b : b);
        double sum[MAXB] = {0}, sq[MAXB] = {0};
        float mu[MAXB] = {0}, scale[MAXB] = {0}, shift[MAXB] = {0};
        for (int i = 0; i < n; i++) {
            float s[MAXB];
            lane_sums(s, in + ((int64_t)i * cbs + cb) * plane, hw, b);
            for (int l = 0; l < b; l++)
                sum[l] += s[l];
        }
        for (int l = 0; l < b; l++)
            mu[l] = (float)(sum[l] / m);
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * cbs + cb) * plane;
            float s[MAXB] = {0};
            for (int j = 0; j < hw; j++)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    const float d = x[(int64_t)j * b + l] - mu[l];
                    s[l] += d * d;
                }
            for (int l = 0; l < b; l++)
                sq[l] += s[l];
        }
        for (int l = 0; l < lanes; l++) {
            const int ch = (int)(cb * b + l);
            const double mean = sum[l] / m;
            save[ch] = (float)mean;
            save[c + ch] = (float)(1 / sqrt(sq[l] / m + eps));
            mu[l] = save[ch];
            scale[l] = save[c + ch] * gamma[ch];
            shift[l] = beta[ch];
            running_mean[ch] = (float)(momentum * mean + (1 - momentum) * (double)running_mean[ch]);
            running_var[ch] = (float)(momentum * (sq[l] / (m - 1)) + (1 - momentum) * (double)running_var[ch]);
        }
        /* padding lanes: mu = scale = shift = 0, so their outputs stay 0 */
        normalize_block(out, in, n, cbs, cb, hw, b, mu, scale, shift, act);
    }
}

CPU_CLONES void blk_batchnorm_forward_eval(const cpu_par *p, float *out, const float *in, const float *gamma, const float *beta,
                                const float *running_mean, const float *running_var, int n, int c, int hw, int b,
                                float eps, int act)
{
    const int64_t cbs = blocks(c, b);
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int64_t cb = 0; cb < cbs; cb++) {
        const int lanes = (int)(c - cb * b < b ? c - cb * b : b);
        float mu[MAXB] = {0}, scale[MAXB] = {0}, shift[MAXB] = {0};
        for (int l = 0; l < lanes; l++) {
            const int ch = (int)(cb * b + l);
            mu[l] = running_mean[ch];
            scale[l] = (float)(1 / sqrt((double)running_var[ch] + eps)) * gamma[ch];
            shift[l] = beta[ch];
        }
        normalize_block(out, in, n, cbs, cb, hw, b, mu, scale, shift, act);
    }
}

CPU_CLONES void blk_batchnorm_backward(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *in, const float *save, const float *gamma, int n, int c, int hw, int b,
                            const float *yact, int act)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
    const double m = (double)n * hw;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int64_t cb = 0; cb < cbs; cb++) {
        const int lanes = (int)(c - cb * b < b ? c - cb * b : b);
        float mu[MAXB] = {0}, invstd[MAXB] = {0};
        for (int l = 0; l < lanes; l++) {
            mu[l] = save[cb * b + l];
            invstd[l] = save[c + cb * b + l];
        }
        double sdy[MAXB] = {0}, sdyx[MAXB] = {0};
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * cbs + cb) * plane, *dy = dout + ((int64_t)i * cbs + cb) * plane;
            const float *ya = act ? yact + ((int64_t)i * cbs + cb) * plane : dy;
            float a[MAXB] = {0}, e[MAXB] = {0};
            for (int j = 0; j < hw; j++)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    const float g = cpu_act_grad(dy[(int64_t)j * b + l], ya[(int64_t)j * b + l], act);
                    a[l] += g;
                    e[l] += g * ((x[(int64_t)j * b + l] - mu[l]) * invstd[l]);
                }
            for (int l = 0; l < b; l++) {
                sdy[l] += a[l];
                sdyx[l] += e[l];
            }
        }
        float scale[MAXB] = {0}, mdy[MAXB] = {0}, mdyx[MAXB] = {0};
        for (int l = 0; l < lanes; l++) {
            const int ch = (int)(cb * b + l);
            if (dgamma)
                dgamma[ch] += (float)sdyx[l];
            if (dbeta)
                dbeta[ch] += (float)sdy[l];
            scale[l] = gamma[ch] * invstd[l];
            mdy[l] = (float)(sdy[l] / m);
            mdyx[l] = (float)(sdyx[l] / m);
        }
        if (!din)
            continue;
        /* padding lanes: scale = 0, so their gradients stay 0 */
        for (int i = 0; i < n; i++) {
            const float *x = in + ((int64_t)i * cbs + cb) * plane, *dy = dout + ((int64_t)i * cbs + cb) * plane;
            const float *ya = act ? yact + ((int64_t)i * cbs + cb) * plane : dy;
            float *dx = din + ((int64_t)i * cbs + cb) * plane;
            for (int j = 0; j < hw; j++)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    const int64_t k = (int64_t)j * b + l;
                    dx[k] += scale[l] * (cpu_act_grad(dy[k], ya[k], act) - mdy[l] - (x[k] - mu[l]) * invstd[l] * mdyx[l]);
                }
        }
    }
}

CPU_CLONES void blk_avgpool_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int b)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int i = 0; i < n; i++)
        for (int64_t cb = 0; cb < cbs; cb++) {
            float s[MAXB];
            lane_sums(s, in + ((int64_t)i * cbs + cb) * plane, hw, b);
            for (int l = 0; l < b && cb * b + l < c; l++)
                out[(int64_t)i * c + cb * b + l] = s[l] / (float)hw;
        }
}

CPU_CLONES void blk_avgpool_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int b)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int i = 0; i < n; i++)
        for (int64_t cb = 0; cb < cbs; cb++) {
            float g[MAXB] = {0};
            for (int l = 0; l < b && cb * b + l < c; l++)
                g[l] = dout[(int64_t)i * c + cb * b + l] / (float)hw;
            float *dx = din + ((int64_t)i * cbs + cb) * plane;
            for (int j = 0; j < hw; j++)
#pragma omp simd
                for (int l = 0; l < b; l++)
                    dx[(int64_t)j * b + l] += g[l];
        }
}

CPU_CLONES void blk_to_plain(const cpu_par *p, float *dst, const float *src, int n, int c, int hw, int b)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float *x = src + ((int64_t)i * cbs + ch / b) * plane + ch % b;
            float *y = dst + ((int64_t)i * c + ch) * hw;
            for (int j = 0; j < hw; j++)
                y[j] = x[(int64_t)j * b];
        }
}

CPU_CLONES void blk_from_plain(const cpu_par *p, float *dst, const float *src, int n, int c, int hw, int b)
{
    const int64_t cbs = blocks(c, b), plane = (int64_t)hw * b;
    memset(dst, 0, (size_t)blk_size(n, c, hw, b) * sizeof *dst);
#pragma omp parallel for schedule(static) num_threads(p->threads) if (blk_size(n, c, hw, b) > 32768)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            float *y = dst + ((int64_t)i * cbs + ch / b) * plane + ch % b;
            const float *x = src + ((int64_t)i * c + ch) * hw;
            for (int j = 0; j < hw; j++)
                y[(int64_t)j * b] = x[j];
        }
}
