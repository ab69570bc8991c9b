#version 460
// loss.comp: the loss ops (kernels_ref.inc's softmax_xent and cosine_embed) and the pieces around them.
//   SOFTMAX_XENT            one invocation per row: probs (saved) and the row's loss term
//   SOFTMAX_XENT BACKWARD   gz += (gloss / n) (probs - onehot(label)), one invocation per logit
//   COSINE_EMBED            one invocation per row: |a|, |b|, cos (saved) and the term 1 - cos
//   COSINE_EMBED BACKWARD   ga += -(gloss / n) d cos / d a, one invocation per element
//   MEAN                    loss = mean of the n row terms: one invocation, in row order
//   SEED                    the gradient of the total loss: g[loss n] += weight n (from Hyper)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats a, b, save, terms, loss, ga, gloss;
    Hyper hyper;
    int n, f; // SEED: n = which loss term
} pc;

void main()
{
    const int f = pc.f;
#if defined(SEED)
    // ga: the gradient of loss number n (one dispatch per loss term, so a term listed twice adds twice)
    if (gl_GlobalInvocationID.x == 0)
        pc.ga.v[0] += pc.hyper.loss_weight[pc.n];
#elif defined(MEAN)
    if (gl_GlobalInvocationID.x == 0) {
        float s = 0.0;
        for (int i = 0; i < pc.n; i++)
            s += pc.terms.v[i];
        pc.loss.v[0] = s / float(pc.n);
    }
#elif defined(SOFTMAX_XENT) && defined(BACKWARD)
    const float scale = pc.gloss.v[0] / float(pc.n);
    FOR_EACH(idx, pc.n * f) {
        const int i = int(idx) / f, o = int(idx) % f;
        pc.ga.v[idx] += scale * (pc.save.v[idx] - (o == int(pc.b.v[i]) ? 1.0 : 0.0));
    }
#elif defined(SOFTMAX_XENT)
    // a: logits [n, f = classes], b: labels [n], save: probs [n, f]
    FOR_EACH(r, pc.n) {
        const int row = int(r) * f;
        float mx = pc.a.v[row];
        for (int o = 1; o < f; o++)
            mx = pc.a.v[row + o] > mx ? pc.a.v[row + o] : mx;
        float s = 0.0;
        for (int o = 0; o < f; o++)
            s += exp(pc.a.v[row + o] - mx);
        for (int o = 0; o < f; o++)
            pc.save.v[row + o] = exp(pc.a.v[row + o] - mx) / s;
        pc.terms.v[r] = log(s) - (pc.a.v[row + int(pc.b.v[r])] - mx);
    }
#elif defined(COSINE_EMBED) && defined(BACKWARD)
    // save: anorm[n], bnorm[n], cos[n]
    const float scale = -pc.gloss.v[0] / float(pc.n);
    FOR_EACH(idx, pc.n * f) {
        const int i = int(idx) / f;
        const float anorm = pc.save.v[i], cs = pc.save.v[2 * pc.n + i];
        const float an = max(anorm, NORM_EPS), bn = max(pc.save.v[pc.n + i], NORM_EPS);
        const float ahat = pc.a.v[idx] / an, bhat = pc.b.v[idx] / bn;
        const float d = anorm > NORM_EPS ? (bhat - ahat * cs) / an : bhat / NORM_EPS;
        pc.ga.v[idx] += scale * d;
    }
#elif defined(COSINE_EMBED)
    FOR_EACH(r, pc.n) {
        const int row = int(r) * f;
        float aa = 0.0, bb = 0.0, ab = 0.0;
        for (int j = 0; j < f; j++) {
            const float x = pc.a.v[row + j], y = pc.b.v[row + j];
            aa += x * x;
            bb += y * y;
            ab += x * y;
        }
        const float na = sqrt(aa), nb = sqrt(bb);
        const float c = ab / (max(na, NORM_EPS) * max(nb, NORM_EPS));
        pc.save.v[r] = na;
        pc.save.v[pc.n + int(r)] = nb;
        pc.save.v[2 * pc.n + int(r)] = c;
        pc.terms.v[r] = 1.0 - c;
    }
#endif
}
