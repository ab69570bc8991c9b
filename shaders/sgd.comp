#version 460
// sgd.comp: torch.optim.SGD on a run of trainable parameters (kernels_ref.inc's sgd_update), one
// invocation per parameter; the frozen ranges of the arena (Hyper) are left alone, momentum and all.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats p, g, m;
    Hyper hyper;
    int start, count; // the run: floats [start, start + count) of the arena; p, g, m point at start
} pc;

void main()
{
    const float lr = pc.hyper.lr, mu = pc.hyper.momentum, wd = pc.hyper.weight_decay;
    const int nf = pc.hyper.n_frozen;
    FOR_EACH(i, pc.count) {
        const uint at = uint(pc.start) + i;
        bool frozen = false;
        for (int r = 0; r < nf; r++)
            frozen = frozen || (at >= pc.hyper.frozen[2 * r] && at < pc.hyper.frozen[2 * r + 1]);
        if (frozen)
            continue;
        const float p = pc.p.v[i];
        float d = pc.g.v[i];
        if (wd != 0.0)
            d += wd * p;
        const float v = mu * pc.m.v[i] + d;
        pc.m.v[i] = v;
        d = pc.hyper.nesterov != 0 ? d + mu * v : v;
        pc.p.v[i] = p - lr * d;
    }
}
