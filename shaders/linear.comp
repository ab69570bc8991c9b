#version 460
// linear.comp: y[n,k] = x[n,f] w[k,f]^T + b[k] (kernels_ref.inc's linear), one invocation per result
// element, each a plain loop over the summed index (deterministic).
//   default          y
//   BACKWARD_DATA    gx[i,j] += sum_o gy[i,o] w[o,j]
//   BACKWARD_WEIGHT  gw[o,j] += sum_i gy[i,o] x[i,j]
//   BACKWARD_BIAS    gb[o] += sum_i gy[i,o]
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats x, w, b, y, gx, gw, gb, gy;
    int n, f, k, flags; // flags: 1 = has a bias
} pc;

void main()
{
    const int f = pc.f, k = pc.k;
#if defined(BACKWARD_DATA)
    FOR_EACH(idx, pc.n * f) {
        const int i = int(idx) / f, j = int(idx) % f;
        float s = 0.0;
        for (int o = 0; o < k; o++)
            s += pc.gy.v[i * k + o] * pc.w.v[o * f + j];
        pc.gx.v[idx] += s;
    }
#elif defined(BACKWARD_WEIGHT)
    FOR_EACH(idx, k * f) {
        const int o = int(idx) / f, j = int(idx) % f;
        float s = 0.0;
        for (int i = 0; i < pc.n; i++)
            s += pc.gy.v[i * k + o] * pc.x.v[i * f + j];
        pc.gw.v[idx] += s;
    }
#elif defined(BACKWARD_BIAS)
    FOR_EACH(o, k) {
        float s = 0.0;
        for (int i = 0; i < pc.n; i++)
            s += pc.gy.v[i * k + int(o)];
        pc.gb.v[o] += s;
    }
#else
    FOR_EACH(idx, pc.n * k) {
        const int i = int(idx) / k, o = int(idx) % k;
        float s = (pc.flags & 1) != 0 ? pc.b.v[o] : 0.0;
        for (int j = 0; j < f; j++)
            s += pc.x.v[i * f + j] * pc.w.v[o * f + j];
        pc.y.v[idx] = s;
    }
#endif
}
