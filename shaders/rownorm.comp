#version 460
// rownorm.comp: rows scaled to unit length, one invocation per row, summing in order (l2norm,
// and the two normalisations inside cosine_linear; rows are feature vectors or classifier weights).
//   default    norm[r] = |x_r|; y_r = x_r / max(|x_r|, eps)
//   BACKWARD   (l2norm) gx_r += (gy_r - y_r <y_r, gy_r>) / |x_r|, or gy_r / eps below the floor
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats x, y, norm, gx, gy;
    int rows, f;
} pc;

void main()
{
    const int f = pc.f;
    FOR_EACH(r, pc.rows) {
        const int row = int(r) * f;
#ifdef BACKWARD
        float dot = 0.0;
        for (int j = 0; j < f; j++)
            dot += pc.y.v[row + j] * pc.gy.v[row + j];
                const float nrm = pc.norm.v[r];
        for (int j = 0; j < f; j++) {
            const float dy = pc.gy.v[row + j];
            pc.gx.v[row + j] += nrm > NORM_EPS ? (dy - pc.y.v[row + j] * dot) / nrm : dy / NORM_EPS;
        }
#else
        float s = 0.0;
        for (int j = 0; j < f; j++)
            s += pc.x.v[row + j] * pc.x.v[row + j];
        const float nrm = sqrt(s);
        pc.norm.v[r] = nrm;
        const float d = max(nrm, NORM_EPS);
        for (int j = 0; j < f; j++)
            pc.y.v[row + j] = pc.x.v[row + j] / d;
#endif
    }
}
