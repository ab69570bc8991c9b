#version 460
// eltwise.comp: relu, relu6 and add, forward and backward, one invocation per element.
//   RELU / RELU6 (with BACKWARD: gx += gy where the input is in the linear range)
//   ADD (with BACKWARD: ga += gy, gb += gy, as flags say)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats a, b, y, ga, gb, gy;
    int count, flags; // add backward: 1 = ga, 2 = gb
} pc;

void main()
{
    FOR_EACH(i, pc.count) {
#if defined(ADD) && defined(BACKWARD)
        const float d = pc.gy.v[i];
        // one invocation does both, in order: a + a (ga == gb) gets 2 gy like the CPU
        if ((pc.flags & 1) != 0)
            pc.ga.v[i] += d;
        if ((pc.flags & 2) != 0)
            pc.gb.v[i] += d;
#elif defined(ADD)
        pc.y.v[i] = pc.a.v[i] + pc.b.v[i];
#elif defined(BACKWARD)
        const float x = pc.a.v[i];
#ifdef RELU6
        if (x > 0.0 && x < 6.0)
#else
        if (x > 0.0)
#endif
            pc.ga.v[i] += pc.gy.v[i];
#else
        const float x = pc.a.v[i];
#ifdef RELU6
        pc.y.v[i] = x < 0.0 ? 0.0 : x > 6.0 ? 6.0 : x;
#else
        pc.y.v[i] = x < 0.0 ? 0.0 : x; // NaN passes through, as in PyTorch
#endif
#endif
    }
}
