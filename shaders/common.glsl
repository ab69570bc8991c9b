// common.glsl: what every compute shader of the vulkan backend shares.
//
// Operands are device addresses (VK_KHR_buffer_device_address, core in
// Vulkan 1.2) passed in push constants, already offset to the tensor's first
// float by the host: no descriptor sets, no limit on an arena's size but the
// allocation's, and the frozen model is the same pipelines with other
// addresses. An operand a dispatch may lack (a bias, a gradient no one needs)
// comes with a flag bit; the shader never touches it then.
//
// Workgroups are one-dimensional, of WG invocations (specialization constant
// 0, a power of two the host picks from the device's limits). Loops stride
// over the whole grid, so a dispatch's group count may be capped at 65535.
#extension GL_EXT_buffer_reference : require

layout(local_size_x_id = 0) in;

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Floats { float v[]; };

// Per-step values the host rewrites without re-recording: the SGD settings,
// the loss weights, the frozen ranges of the parameter arena ([start, end) in
// floats). Mirrors vk_hyper in plugins/backend-vulkan/vk.h.
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Hyper {
    float lr, momentum, weight_decay;
    int nesterov, n_frozen, pad0, pad1, pad2;
    float loss_weight[8];
    uint frozen[]; // 2 * n_frozen
};

#define WG gl_WorkGroupSize.x
#define LID gl_LocalInvocationID.x
// i runs over [0, count) once across the whole grid.
#define FOR_EACH(i, count) for (uint i = gl_GlobalInvocationID.x; i < uint(count); i += gl_NumWorkGroups.x * WG)
// item runs over [0, count) once per workgroup (uniform: barriers inside are allowed).
#define FOR_EACH_GROUP(item, count) for (uint item = gl_WorkGroupID.x; item < uint(count); item += gl_NumWorkGroups.x)

// Compensated (Kahan) summation for long sums whose result feeds a cancellation (batch norm's
// statistics and gradients): s += x with the rounding error carried in c. `precise` keeps the
// compiler from folding the compensation away.
#define KAHAN_ADD(s, c, x) \
    { \
        precise float y_ = (x) - c; \
        precise float t_ = s + y_; \
        c = (t_ - s) - y_; \
        s = t_; \
    }

// F.normalize's floor on a norm (kernels.h CPU_NORM_EPS).
#define NORM_EPS 1e-12

#ifdef REDUCE
shared float red[WG];
// The sum of v over the workgroup, in a fixed order (deterministic). Call in
// uniform control flow; every invocation gets the result.
float wg_sum(float v)
{
    red[LID] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (LID < s)
            red[LID] += red[LID + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}
float wg_max(float v)
{
    red[LID] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (LID < s)
            red[LID] = max(red[LID], red[LID + s]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}
#endif
