#version 460
// cosine_linear.comp: y[i,o] = sigma cos(x_i, w_o), after rownorm.comp has written xn (rows of x
// normalised), wn (rows of w), xnorm and wnorm into the node's save area (kernels_ref.inc).
//   default          cos[i,o] = <xn_i, wn_o> (saved); y = sigma cos
//   BACKWARD_DATA    gx[i,j] += normalise'(dy = sigma sum_o gy[i,o] wn[o,j], dot = sigma sum_o gy[i,o] cos[i,o])
//   BACKWARD_WEIGHT  gw[o,j] += the same with the roles of x and w swapped
//   BACKWARD_SIGMA   gsigma += sum gy cos: one invocation
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats xn, wn, xnorm, wnorm, cosv, sigma, y, gx, gw, gsigma, gy;
    int n, f, k;
} pc;

float normalize_grad(float dy, float y, float dot, float norm)
{
    return norm > NORM_EPS ? (dy - y * dot) / norm : dy / NORM_EPS;
}

void main()
{
    const int f = pc.f, k = pc.k;
#if defined(BACKWARD_SIGMA)
    if (gl_GlobalInvocationID.x == 0) {
        float s = 0.0;
        for (int i = 0; i < pc.n * k; i++)
            s += pc.gy.v[i] * pc.cosv.v[i];
        pc.gsigma.v[0] += s;
    }
#elif defined(BACKWARD_DATA)
    const float sigma = pc.sigma.v[0];
    FOR_EACH(idx, pc.n * f) {
        const int i = int(idx) / f, j = int(idx) % f;
        float dot = 0.0, dy = 0.0;
        for (int o = 0; o < k; o++) {
            const float g = pc.gy.v[i * k + o];
            dot += g * pc.cosv.v[i * k + o];
            dy += g * pc.wn.v[o * f + j];
        }
        pc.gx.v[idx] += normalize_grad(sigma * dy, pc.xn.v[idx], sigma * dot, pc.xnorm.v[i]);
    }
#elif defined(BACKWARD_WEIGHT)
    const float sigma = pc.sigma.v[0];
    FOR_EACH(idx, k * f) {
        const int o = int(idx) / f, j = int(idx) % f;
        float dot = 0.0, dy = 0.0;
        for (int i = 0; i < pc.n; i++) {
            const float g = pc.gy.v[i * k + o];
            dot += g * pc.cosv.v[i * k + o];
            dy += g * pc.xn.v[i * f + j];
        }
        pc.gw.v[idx] += normalize_grad(sigma * dy, pc.wn.v[idx], sigma * dot, pc.wnorm.v[o]);
    }
#else
    const float sigma = pc.sigma.v[0];
    FOR_EACH(idx, pc.n * k) {
        const int i = int(idx) / k, o = int(idx) % k;
        float s = 0.0;
        for (int j = 0; j < f; j++)
            s += pc.xn.v[i * f + j] * pc.wn.v[o * f + j];
        pc.cosv.v[idx] = s;
        pc.y.v[idx] = sigma * s;
    }
#endif
}
