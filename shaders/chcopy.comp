#version 460
// chcopy.comp: channel plumbing (slice, concat, shuffle) as one copy of `count` channels per row:
// dst[n, dst_c0 + d(ch), hw] = src[n, src_c0 + s(ch), hw] for ch in [0, count), where d or s is
// ShuffleNet's permutation ch -> (ch % per) * groups + ch / per (perm_side 1: on dst, 2: on src).
//   default    forward, activations: assigns
//   BACKWARD   gradients: accumulates (+=), as every backward does
// Each destination element has one writer: no races, nothing to order.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    Floats src, dst;
    int n, hw, count, src_c, src_c0, dst_c, dst_c0, groups, perm_side;
} pc;

void main()
{
    const int per = pc.count / pc.groups;
    FOR_EACH(idx, pc.n * pc.count * pc.hw) {
        const int p = int(idx) % pc.hw, ch = int(idx) / pc.hw % pc.count, nn = int(idx) / (pc.hw * pc.count);
        const int perm = (ch % per) * pc.groups + ch / per;
        const int s = pc.perm_side == 2 ? perm : ch, d = pc.perm_side == 1 ? perm : ch;
        const float v = pc.src.v[(nn * pc.src_c + pc.src_c0 + s) * pc.hw + p];
#ifdef BACKWARD
        pc.dst.v[(nn * pc.dst_c + pc.dst_c0 + d) * pc.hw + p] += v;
#else
        pc.dst.v[(nn * pc.dst_c + pc.dst_c0 + d) * pc.hw + p] = v;
#endif
    }
}
