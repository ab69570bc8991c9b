#version 460
// batchnorm.comp: batch normalisation over [n,c,hw] (kernels_ref.inc's batchnorm).
//   TRAIN     per channel: batch mean and biased variance (two passes), save = mean[c], invstd[c];
//             running = (1 - momentum) running + momentum batch (unbiased variance); y
//   EVAL      y from the running statistics: one invocation per element
//   BACKWARD  per channel: ggamma += sum gy xhat, gbeta += sum gy, gx += ... (as flags say)
// TRAIN and BACKWARD take one workgroup per channel (a tree reduction in shared memory), or with
// SERIAL one invocation per channel, for few values per channel, where barriers cost more than
// the sums. The sums are compensated: the input gradient subtracts their means from each value,
// and a plain float sum over thousands of values leaves errors there that earlier layers amplify.
#extension GL_GOOGLE_include_directive : require
#if (defined(TRAIN) || defined(BACKWARD)) && !defined(SERIAL)
#define REDUCE
#endif
#ifdef SERIAL
#define CHANNELS(ch, count) FOR_EACH(ch, count)
#define FIRST_J 0
#define STEP 1
#define SUM(v) (v)
#define FIRST true
#else
#define CHANNELS(ch, count) FOR_EACH_GROUP(ch, count)
#define FIRST_J int(LID)
#define STEP int(WG)
#define SUM(v) wg_sum(v)
#define FIRST (LID == 0)
#endif
// This invocation's values of channel ch: j = FIRST_J, FIRST_J + STEP, ... below m = n hw, at
// `at`, the index of (j / hw, ch, j % hw), stepped without dividing in the loop.
#define VALUES(at) \
    for (int j = FIRST_J, r_ = FIRST_J % pc.hw, at = (FIRST_J / pc.hw * pc.c + int(ch)) * pc.hw + r_; j < m; \
         j += STEP, r_ += step_r, at += step_at + (r_ >= pc.hw ? pc.c * pc.hw - pc.hw : 0), \
         r_ -= r_ >= pc.hw ? pc.hw : 0)
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats x, y, gamma, beta, rmean, rvar, save;
    Floats gx, gy, ggamma, gbeta;
    int n, c, hw, flags; // flags: 1 = gx, 2 = ggamma, 4 = gbeta
    float eps, momentum;
} pc;

void main()
{
    const int m = pc.n * pc.hw;
    // VALUES' step: STEP = a hw + step_r values is a images and step_r pixels further
    const int step_r = STEP % pc.hw, step_at = STEP / pc.hw * pc.c * pc.hw + step_r;
#if defined(TRAIN)
    CHANNELS(ch, pc.c) {
        precise float s = 0.0, cs = 0.0;
        VALUES(at)
            KAHAN_ADD(s, cs, pc.x.v[at]);
        const float mean = SUM(s) / float(m);
        precise float sq = 0.0, csq = 0.0;
        VALUES(at) {
            const float d = pc.x.v[at] - mean;
            KAHAN_ADD(sq, csq, d * d);
        }
        sq = SUM(sq);
        const float invstd = 1.0 / sqrt(sq / float(m) + pc.eps);
        if (FIRST) {
            pc.save.v[ch] = mean;
            pc.save.v[pc.c + int(ch)] = invstd;
            pc.rmean.v[ch] = pc.momentum * mean + (1.0 - pc.momentum) * pc.rmean.v[ch];
            pc.rvar.v[ch] = pc.momentum * (sq / float(m - 1)) + (1.0 - pc.momentum) * pc.rvar.v[ch];
        }
        const float g = pc.gamma.v[ch], b = pc.beta.v[ch];
        VALUES(at)
            pc.y.v[at] = (pc.x.v[at] - mean) * invstd * g + b;
    }
#elif defined(BACKWARD)
    CHANNELS(ch, pc.c) {
        const float mean = pc.save.v[ch], invstd = pc.save.v[pc.c + int(ch)];
        precise float sdy = 0.0, sdyx = 0.0, c1 = 0.0, c2 = 0.0;
        VALUES(at) {
            const float dy = pc.gy.v[at];
            KAHAN_ADD(sdy, c1, dy);
            KAHAN_ADD(sdyx, c2, dy * ((pc.x.v[at] - mean) * invstd));
        }
        sdy = SUM(sdy);
        sdyx = SUM(sdyx);
        if (FIRST) {
            if ((pc.flags & 2) != 0)
                pc.ggamma.v[ch] += sdyx;
            if ((pc.flags & 4) != 0)
                pc.gbeta.v[ch] += sdy;
        }
        if ((pc.flags & 1) != 0) {
            const float scale = pc.gamma.v[ch] * invstd, a = sdy / float(m), bq = sdyx / float(m);
            VALUES(at) {
                const float xhat = (pc.x.v[at] - mean) * invstd;
                pc.gx.v[at] += scale * (pc.gy.v[at] - a - xhat * bq);
            }
        }
    }
#else
    FOR_EACH(idx, m * pc.c) {
        const int ch = int(idx) / pc.hw % pc.c;
        const float invstd = 1.0 / sqrt(pc.rvar.v[ch] + pc.eps);
        pc.y.v[idx] = (pc.x.v[idx] - pc.rmean.v[ch]) * invstd * pc.gamma.v[ch] + pc.beta.v[ch];
    }
#endif
}
