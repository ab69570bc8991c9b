#version 460
// pool.comp: max pooling (k x k windows, -inf padding) and global average pooling.
//   MAXPOOL              y and the index of each window's first maximum (as a float; -1: only padding)
//   MAXPOOL BACKWARD     gx += gy of the windows whose maximum it was: gathered per input element, in
//                        the order of the outputs, so the sums equal the CPU's scatter to the bit
//   AVGPOOL (BACKWARD)   y[n,c] = mean over hw; gx += gy / hw
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats x, y, save, gx, gy;
    int n, c, ih, iw, oh, ow, k, stride, pad;
} pc;

void main()
{
#if defined(MAXPOOL) && defined(BACKWARD)
    FOR_EACH(idx, pc.n * pc.c * pc.ih * pc.iw) {
        const int plane = int(idx) / (pc.ih * pc.iw), pos = int(idx) % (pc.ih * pc.iw);
        const int iy = pos / pc.iw, ix = pos % pc.iw;
        const int ay = iy + pc.pad - pc.k + 1, ax = ix + pc.pad - pc.k + 1;
        const int y0 = ay <= 0 ? 0 : (ay + pc.stride - 1) / pc.stride, y1 = min(pc.oh - 1, (iy + pc.pad) / pc.stride);
        const int x0 = ax <= 0 ? 0 : (ax + pc.stride - 1) / pc.stride, x1 = min(pc.ow - 1, (ix + pc.pad) / pc.stride);
        float s = pc.gx.v[idx];
        for (int oy = y0; oy <= y1; oy++)
            for (int ox = x0; ox <= x1; ox++) {
                const int o = (plane * pc.oh + oy) * pc.ow + ox;
                if (int(pc.save.v[o]) == pos)
                    s += pc.gy.v[o];
            }
        pc.gx.v[idx] = s;
    }
#elif defined(MAXPOOL)
    FOR_EACH(idx, pc.n * pc.c * pc.oh * pc.ow) {
        const int ox = int(idx) % pc.ow, oy = int(idx) / pc.ow % pc.oh, plane = int(idx) / (pc.ow * pc.oh);
        float best = uintBitsToFloat(0xff800000u); // -inf
        int at = -1;
        for (int ky = 0; ky < pc.k; ky++) {
            const int iy = oy * pc.stride - pc.pad + ky;
            if (iy < 0 || iy >= pc.ih)
                continue;
            for (int kx = 0; kx < pc.k; kx++) {
                const int ix = ox * pc.stride - pc.pad + kx;
                if (ix < 0 || ix >= pc.iw)
                    continue;
                const float v = pc.x.v[(plane * pc.ih + iy) * pc.iw + ix];
                if (at < 0)
                    at = iy * pc.iw + ix;
                if (v > best || isnan(v)) {
                    best = v;
                    at = iy * pc.iw + ix;
                }
            }
        }
        pc.y.v[idx] = best;
        pc.save.v[idx] = float(at); // exact: a plane holds fewer than 2^24 pixels
    }
#elif defined(BACKWARD)
    const int hw = pc.ih * pc.iw;
    FOR_EACH(idx, pc.n * pc.c * hw)
        pc.gx.v[idx] += pc.gy.v[int(idx) / hw] / float(hw);
#else
    const int hw = pc.ih * pc.iw;
    FOR_EACH(plane, pc.n * pc.c) {
        float s = 0.0;
        for (int j = 0; j < hw; j++)
            s += pc.x.v[int(plane) * hw + j];
        pc.y.v[plane] = s / float(hw);
    }
#endif
}
