#version 460
// conv2d.comp: grouped 2-D convolution, forward and backward (kernels_ref.inc's conv2d), as
// implicit GEMMs with register tiles: each invocation computes a TM x TN block of results, so that
// every value it loads feeds several multiply-adds (loads, not arithmetic, bound these kernels on
// both GPUs and lavapipe). TM and TN are -D defines of the variant.
//   default          y[n, o, p] = b[o] + sum_r w[o, r] x[n, r, p], r = (ci, ky, kx), p = an output pixel;
//                    a tile is TM output channels (of one group) x TN output positions (n, p)
//   BACKWARD_DATA    gx[n, c, q] += sum over (o, ky, kx) that saw input pixel q of w[o, ci, ky, kx] gy[n, o, .];
//                    a tile is TM input channels (of one group) x TN input positions (n, q)
//   BACKWARD_WEIGHT  gw[o, r] += sum over (n, p) of gy[n, o, p] x[n, r, p]; a tile is TM output channels
//                    x TN taps r; the sum runs over one chunk of the n * oh * ow positions: with one
//                    chunk it adds into gw, with more it writes partial sums to part[chunk][o][r]
//                    (deterministic: no atomics, a fixed order)
//   REDUCE_CHUNKS    gw[i] += sum over chunks c of part[c][i], in chunk order
//   BACKWARD_BIAS    gb[o] += sum over (n, p) of gy[n, o, p]: one invocation per channel (compensated)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#ifndef TM
#define TM 1
#endif
// BACKWARD_DATA: the stride as a constant where the variant fixes it (-DSTRIDE=1 or 2), so that
// the division and remainder by it in the inner loop fold into shifts and masks
#ifndef STRIDE
#define STRIDE pc.stride
#endif
#ifndef TN
#define TN 1
#endif

layout(push_constant) uniform PC {
    Floats x, w, b, y;
    Floats gx, gw, gb, gy;
    Floats part; // BACKWARD_WEIGHT with chunks > 1, REDUCE_CHUNKS: the partial sums [chunks][oc][cg k k]
    int n, c, ih, iw, oc, oh, ow, k, stride, pad, groups;
    int flags;  // 1: has a bias
    int chunks; // BACKWARD_WEIGHT, REDUCE_CHUNKS: chunks of the n * oh * ow positions
} pc;

void main()
{
    const int cg = pc.c / pc.groups, og = pc.oc / pc.groups, k = pc.k, kk = k * k;
    const int ohw = pc.oh * pc.ow, ihw = pc.ih * pc.iw;
#if defined(BACKWARD_WEIGHT)
    const int r_all = cg * kk, m = pc.n * ohw;
    const int tiles_o = (og + TM - 1) / TM, tiles_r = (r_all + TN - 1) / TN;
    const int per_chunk = (m + pc.chunks - 1) / pc.chunks;
    FOR_EACH(item, pc.groups * tiles_o * tiles_r * pc.chunks) {
        int t = int(item);
        const int tr = t % tiles_r; t /= tiles_r;
        const int to = t % tiles_o; t /= tiles_o;
        const int grp = t % pc.groups;
        const int chunk = t / pc.groups;
        const int o0 = grp * og + to * TM, r0 = tr * TN;
        int ci[TN], ky[TN], kx[TN];
        for (int j = 0; j < TN; j++) {
            const int r = min(r0 + j, r_all - 1);
            ci[j] = grp * cg + r / kk;
            ky[j] = r % kk / k;
            kx[j] = r % k;
        }
        float acc[TM][TN];
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++)
                acc[i][j] = 0.0;
        const int q0 = chunk * per_chunk, q1 = min(m, q0 + per_chunk);
        // the position q = (nn, oy, ox) is stepped, not divided out: integer division is slow
        // on lavapipe (a scalar instruction per lane) and not free on GPUs
        int nn = q0 / ohw, oy = q0 % ohw / pc.ow, ox = q0 % pc.ow;
        for (int q = q0; q < q1; q++) {
            const int p = oy * pc.ow + ox;
            const int iy0 = oy * pc.stride - pc.pad, ix0 = ox * pc.stride - pc.pad;
            float dy[TM], xv[TN];
            for (int i = 0; i < TM; i++)
                dy[i] = to * TM + i < og ? pc.gy.v[(nn * pc.oc + o0 + i) * ohw + p] : 0.0;
            for (int j = 0; j < TN; j++) {
                const int iy = iy0 + ky[j], ix = ix0 + kx[j];
                xv[j] = iy >= 0 && iy < pc.ih && ix >= 0 && ix < pc.iw ? pc.x.v[(nn * pc.c + ci[j]) * ihw + iy * pc.iw + ix]
                                                                        : 0.0;
            }
            for (int i = 0; i < TM; i++)
                for (int j = 0; j < TN; j++)
                    acc[i][j] += dy[i] * xv[j];
            if (++ox == pc.ow) {
                ox = 0;
                if (++oy == pc.oh) {
                    oy = 0;
                    nn++;
                }
            }
        }
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++)
                if (to * TM + i < og && r0 + j < r_all) {
                    const int at = (o0 + i) * r_all + r0 + j;
                    if (pc.chunks == 1)
                        pc.gw.v[at] += acc[i][j];
                    else
                        pc.part.v[chunk * pc.oc * r_all + at] = acc[i][j];
                }
    }
#elif defined(REDUCE_CHUNKS)
    const int total = pc.oc * cg * kk;
    FOR_EACH(i, total) {
        float s = 0.0;
        for (int ch = 0; ch < pc.chunks; ch++)
            s += pc.part.v[ch * total + int(i)];
        pc.gw.v[i] += s;
    }
#elif defined(BACKWARD_BIAS)
    FOR_EACH(o, pc.oc) {
        precise float s = 0.0, cs = 0.0;
        for (int nn = 0; nn < pc.n; nn++)
            for (int p = 0; p < ohw; p++)
                KAHAN_ADD(s, cs, pc.gy.v[(nn * pc.oc + int(o)) * ohw + p]);
        pc.gb.v[o] += s;
    }
#elif defined(BACKWARD_DATA)
    // columns are input positions q = (image, pixel) over the whole batch (see the forward)
    const int cols = pc.n * ihw, tiles_c = (cg + TM - 1) / TM, tiles_q = (cols + TN - 1) / TN;
    FOR_EACH(item, pc.groups * tiles_c * tiles_q) {
        int t = int(item);
        const int tq = t % tiles_q; t /= tiles_q;
        const int tc = t % tiles_c;
        const int grp = t / tiles_c;
        const int ci0 = tc * TM, q0 = tq * TN;
        int iy[TN], ix[TN], gyn[TN];
        for (int j = 0; j < TN; j++) {
            const int q = min(q0 + j, cols - 1), nn = q / ihw, p = q % ihw;
            iy[j] = p / pc.iw + pc.pad;
            ix[j] = p % pc.iw + pc.pad;
            gyn[j] = nn * pc.oc * ohw;
        }
        float acc[TM][TN];
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++)
                acc[i][j] = 0.0;
        for (int o = grp * og; o < (grp + 1) * og; o++) {
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float wv[TM], dy[TN];
                    for (int i = 0; i < TM; i++)
                        wv[i] = ci0 + i < cg ? pc.w.v[((o * cg + ci0 + i) * k + ky) * k + kx] : 0.0;
                    for (int j = 0; j < TN; j++) {
                        const int ty = iy[j] - ky, tx = ix[j] - kx;
                        const bool hit = ty >= 0 && tx >= 0 && ty % STRIDE == 0 && tx % STRIDE == 0 &&
                                         ty / STRIDE < pc.oh && tx / STRIDE < pc.ow;
                        dy[j] = hit ? pc.gy.v[gyn[j] + o * ohw + ty / STRIDE * pc.ow + tx / STRIDE] : 0.0;
                    }
                    for (int i = 0; i < TM; i++)
                        for (int j = 0; j < TN; j++)
                            acc[i][j] += wv[i] * dy[j];
                }
        }
        for (int j = 0; j < TN; j++)
            if (q0 + j < cols) {
                const int nn = (q0 + j) / ihw, p = (q0 + j) % ihw;
                for (int i = 0; i < TM; i++)
                    if (ci0 + i < cg)
                        pc.gx.v[(nn * pc.c + grp * cg + ci0 + i) * ihw + p] += acc[i][j];
            }
    }
#else
    // columns are output positions q = (image, pixel) over the whole batch, so that small
    // feature maps (1x1, 2x2 at the end of a network) still fill the TN columns of a tile
    const int cols = pc.n * ohw, tiles_o = (og + TM - 1) / TM, tiles_q = (cols + TN - 1) / TN;
    FOR_EACH(item, pc.groups * tiles_o * tiles_q) {
        int t = int(item);
        const int tq = t % tiles_q; t /= tiles_q;
        const int to = t % tiles_o;
        const int grp = t / tiles_o;
        const int o0 = grp * og + to * TM, q0 = tq * TN;
        int iy0[TN], ix0[TN], xc[TN];
        for (int j = 0; j < TN; j++) {
            const int q = min(q0 + j, cols - 1), nn = q / ohw, p = q % ohw;
            iy0[j] = p / pc.ow * pc.stride - pc.pad;
            ix0[j] = p % pc.ow * pc.stride - pc.pad;
            xc[j] = (nn * pc.c + grp * cg) * ihw;
        }
        float acc[TM][TN];
        for (int i = 0; i < TM; i++) {
            const float bias = (pc.flags & 1) != 0 && to * TM + i < og ? pc.b.v[o0 + i] : 0.0;
            for (int j = 0; j < TN; j++)
                acc[i][j] = bias;
        }
        for (int ci = 0; ci < cg; ci++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float wv[TM], xv[TN];
                    for (int i = 0; i < TM; i++)
                        wv[i] = to * TM + i < og ? pc.w.v[((o0 + i) * cg + ci) * kk + ky * k + kx] : 0.0;
                    for (int j = 0; j < TN; j++) {
                        const int iy = iy0[j] + ky, ix = ix0[j] + kx;
                        xv[j] = iy >= 0 && iy < pc.ih && ix >= 0 && ix < pc.iw ? pc.x.v[xc[j] + ci * ihw + iy * pc.iw + ix]
                                                                                : 0.0;
                    }
                    for (int i = 0; i < TM; i++)
                        for (int j = 0; j < TN; j++)
                            acc[i][j] += wv[i] * xv[j];
                }
        for (int j = 0; j < TN; j++)
            if (q0 + j < cols) {
                const int nn = (q0 + j) / ohw, p = (q0 + j) % ohw;
                for (int i = 0; i < TM; i++)
                    if (to * TM + i < og)
                        pc.y.v[(nn * pc.oc + o0 + i) * ohw + p] = acc[i][j];
            }
    }
#endif
}
