/* vk.h: what the vulkan backend's files share: the device, the plan, the shader table, push constants. */
#ifndef CILSCALE_VK_H
#define CILSCALE_VK_H

#include <stddef.h>
#include <stdint.h>

#include "cilscale/backend.h"
#include "vk_api.h"

/* ---- shaders: one SPIR-V module per variant, compiled by meson from shaders/ ----
 * VK_SHADERS(X): X(name) for each variant of shaders.list (vk_shaders.h is generated from it). */
#include "vk_shaders.h"

typedef enum vk_shader {
#define VK_SHADER_ENUM_(name) VK_SH_##name,
    VK_SHADERS(VK_SHADER_ENUM_)
#undef VK_SHADER_ENUM_
    VK_SH_COUNT_
} vk_shader;

typedef struct vk_spirv {
    const char *name;
    const uint32_t *code;
    size_t size; /* bytes */
} vk_spirv;
extern const vk_spirv vk_spirv_table[VK_SH_COUNT_];

/* ---- push constants: each mirrors the `PC` block of its shader (shaders/NAME.comp) ----
 * Device addresses first (8-byte aligned), then 4-byte scalars: std430 and
 * the C layout agree. Every block fits the 128 bytes every device offers. */
typedef uint64_t vk_addr;

typedef struct pc_conv { /* conv2d.comp */
    vk_addr x, w, b, y, gx, gw, gb, gy, part;
    int32_t n, c, ih, iw, oc, oh, ow, k, stride, pad, groups, flags, chunks;
} pc_conv;
/* conv2d.comp's register tiles, as shaders.list compiles the variants (-DTM, -DTN):
 * output channels x pixels (forward), input channels x pixels (data), output channels x taps
 * (weight); the _dw variants (1 x 8) serve convolutions with fewer than 4 channels per group. */
#define VK_CONV_FWD_TM VK_TILE_conv2d_fwd_TM
#define VK_CONV_FWD_TN VK_TILE_conv2d_fwd_TN
#define VK_CONV_DATA_TM VK_TILE_conv2d_bwd_data_TM
#define VK_CONV_DATA_TN VK_TILE_conv2d_bwd_data_TN
#define VK_CONV_WEIGHT_TM VK_TILE_conv2d_bwd_weight_TM
#define VK_CONV_WEIGHT_TN VK_TILE_conv2d_bwd_weight_TN
#define VK_CONV_DW_TN VK_TILE_conv2d_fwd_dw_TN
_Static_assert(VK_TILE_conv2d_fwd_dw_TM == 1 && VK_TILE_conv2d_bwd_data_dw_TM == 1 &&
                   VK_TILE_conv2d_bwd_weight_dw_TM == 1 && VK_TILE_conv2d_bwd_data_dw_TN == VK_CONV_DW_TN &&
                   VK_TILE_conv2d_bwd_weight_dw_TN == VK_CONV_DW_TN,
               "the recorder counts the _dw variants' tiles as 1 x VK_CONV_DW_TN");
/* Batch norm and bias sums over at most this many values per channel run one invocation per
 * channel (no barriers); above it, one workgroup per channel. */
#define VK_SERIAL_SUM_MAX 4096
typedef struct pc_bn { /* batchnorm.comp */
    vk_addr x, y, gamma, beta, rmean, rvar, save, gx, gy, ggamma, gbeta;
    int32_t n, c, hw, flags;
    float eps, momentum;
} pc_bn;
typedef struct pc_elt { /* eltwise.comp */
    vk_addr a, b, y, ga, gb, gy;
    int32_t count, flags;
} pc_elt;
typedef struct pc_pool { /* pool.comp */
    vk_addr x, y, save, gx, gy;
    int32_t n, c, ih, iw, oh, ow, k, stride, pad;
} pc_pool;
typedef struct pc_chcopy { /* chcopy.comp */
    vk_addr src, dst;
    int32_t n, hw, count, src_c, src_c0, dst_c, dst_c0, groups, perm_side;
} pc_chcopy;
typedef struct pc_linear { /* linear.comp */
    vk_addr x, w, b, y, gx, gw, gb, gy;
    int32_t n, f, k, flags;
} pc_linear;
typedef struct pc_rownorm { /* rownorm.comp */
    vk_addr x, y, norm, gx, gy;
    int32_t rows, f;
} pc_rownorm;
typedef struct pc_cosl { /* cosine_linear.comp */
    vk_addr xn, wn, xnorm, wnorm, cosv, sigma, y, gx, gw, gsigma, gy;
    int32_t n, f, k;
} pc_cosl;
typedef struct pc_loss { /* loss.comp */
    vk_addr a, b, save, terms, loss, ga, gloss, hyper;
    int32_t n, f;
} pc_loss;
typedef struct pc_sgd { /* sgd.comp */
    vk_addr p, g, m, hyper;
    int32_t start, count;
} pc_sgd;
#define VK_PUSH_BYTES 128
_Static_assert(sizeof(pc_conv) <= VK_PUSH_BYTES && sizeof(pc_bn) <= VK_PUSH_BYTES &&
                   sizeof(pc_elt) <= VK_PUSH_BYTES && sizeof(pc_pool) <= VK_PUSH_BYTES &&
                   sizeof(pc_chcopy) <= VK_PUSH_BYTES && sizeof(pc_linear) <= VK_PUSH_BYTES &&
                   sizeof(pc_rownorm) <= VK_PUSH_BYTES && sizeof(pc_cosl) <= VK_PUSH_BYTES &&
                   sizeof(pc_loss) <= VK_PUSH_BYTES && sizeof(pc_sgd) <= VK_PUSH_BYTES,
               "a push-constant block is larger than the 128 bytes every device offers");

/* The per-step values shaders read (common.glsl's Hyper): written by the host
 * before a submission, so a recorded command buffer never changes. */
#define VK_MAX_FROZEN 64
typedef struct vk_hyper {
    float lr, momentum, weight_decay;
    int32_t nesterov, n_frozen, pad[3];
    float loss_weight[8];
    uint32_t frozen[2 * VK_MAX_FROZEN]; /* [start, end) pairs */
} vk_hyper;

/* ---- the device ---- */

typedef struct vk_device {
    VkPhysicalDevice pd;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    uint32_t queue_family;
    uint32_t timestamp_bits; /* 0: the queue has no timestamps (no profiling) */
    VkDevice dev;
    VkQueue queue;
    VkPipelineLayout layout; /* push constants only */
    VkPipelineCache cache;
    VkPipeline pipe[VK_SH_COUNT_]; /* created on first use */
    uint32_t wg;                   /* workgroup size, a power of two */
    VkDeviceSize max_alloc;        /* the largest single allocation (maxMemoryAllocationSize) */
    int index;                     /* in vkEnumeratePhysicalDevices' order */
} vk_device;

/* The pipeline of shader s, created on first use; VK_NULL_HANDLE with err set when it cannot be. */
VkPipeline vk_pipeline(vk_device *d, vk_shader s, cs_error *err);
/* "VK_ERROR_..." in a message naming what failed. */
int vk_fail(cs_error *err, VkResult r, const char *what);

/* ---- the plan ---- */

/* Device buffers (device-local unless noted). */
enum {
    VB_ACT = 0,  /* inputs and activations, at their cs_tensor offsets */
    VB_DACT,     /* their gradients, same layout */
    VB_PARAMS,   /* the six arenas of backend.h */
    VB_GRADS,
    VB_MOMENTUM,
    VB_BUFFERS,
    VB_FPARAMS,
    VB_FBUFFERS,
    VB_SAVE,     /* what forwards save for backwards: statistics, argmax, probabilities */
    VB_WORK,     /* scratch one node uses at a time: partial sums of convolution weight gradients */
    VB_HYPER,    /* host-visible: vk_hyper */
    VB_INPUT,    /* host-visible: the inputs as set_input left them, uploaded by each forward */
    VB_SCALARS,  /* host-visible: every one-value activation (the losses) after each forward */
    VB_STAGE,    /* host-visible: staging for read, write and read_tensor */
    VB_COUNT_
};

typedef struct vk_buffer {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size; /* bytes */
    vk_addr addr;      /* device address (0 for staging-only buffers) */
    void *map;         /* host-visible ones */
} vk_buffer;

/* What a recorded command buffer does. */
typedef enum vk_kind {
    VK_REC_FWD_TRAIN = 0,
    VK_REC_FWD_EVAL,
    VK_REC_FWD_FROZEN,
    VK_REC_BWD,
    VK_REC_UPDATE,
    VK_REC_STEP, /* forward (train), backward, update */
    VK_REC_KINDS_
} vk_kind;

/* A command buffer recorded once and submitted again for every batch of n rows. */
typedef struct vk_rec {
    vk_kind kind;
    int n;
    VkCommandBuffer cb;
    VkQueryPool queries; /* profiling: a timestamp after each labelled segment */
    int n_marks;
    int32_t *mark; /* what ended at timestamp i (i >= 1): a profile slot (plan.c) */
    unsigned dispatches, barriers;
} vk_rec;

#define VK_MAX_RECS 24

typedef struct vk_plan {
    vk_device *d;
    const cs_graph *g;
    vk_buffer b[VB_COUNT_];
    int64_t *save_at;     /* per node: its save area in VB_SAVE (floats), or -1 */
    int64_t *input_at;    /* per tensor: INPUT tensors' place in VB_INPUT (floats), else -1 */
    int *scalar_at;       /* per tensor: one-value activations' place in VB_SCALARS, else -1 */
    int n_scalars;
    unsigned char *grad_live; /* per tensor: backward gives it a gradient (the CPU's has_grad, static) */
    VkCommandPool pool;
    VkCommandBuffer xfer; /* one-off copies */
    VkFence fence;
    vk_rec rec[VK_MAX_RECS];
    int n_recs;
    vk_rec *inflight; /* submitted, not yet waited for */
    int xfer_inflight;
    int lost;            /* a submission failed: the plan's device state is unknown */
    cs_error lost_err;
    /* profiling */
    int profiling;
    int64_t n_slots;     /* 2 per node (forward, backward) + the VK_SLOT_* extras */
    double *slot_ns;
    int64_t *slot_calls;
    int64_t profiled_submits;
} vk_plan;

/* Profile slots besides the nodes' (2 i: forward of node i, 2 i + 1: its backward). */
enum { VK_SLOT_UPLOAD = 0, VK_SLOT_SCALARS, VK_SLOT_ZERO_SEED, VK_SLOT_SGD, VK_SLOT_EXTRAS_ };

/* check.c: the graph is one the backend can run (shapes, kinds, offsets), else an error naming the node. */

/* record.c: records (kind, n) into r->cb (allocated, not begun); fills the marks when profiling. */
int vk_record(vk_plan *p, vk_rec *r, cs_error *err);
/* record.c: records a one-off copy of floats between a device buffer and a host-visible one. */
int vk_record_copy(vk_plan *p, VkCommandBuffer cb, int src, VkDeviceSize src_off, int dst, VkDeviceSize dst_off,
                   VkDeviceSize bytes, cs_error *err);
/* record.c: floats of VB_WORK node i needs (0 for most). */
int64_t vk_work_size(const cs_graph *g, int i);
/* Floats of tensor t over n rows (all of it when it has no batch dimension). */
int64_t vk_rows_size(const cs_tensor *t, int n);

/* plan.c entry points */
int vk_prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err);
void vk_release(void *plan);
int vk_write(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err);
int vk_read(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err);
int vk_set_input(void *plan, int tensor, const float *src, int n, cs_error *err);
int vk_read_tensor(void *plan, int tensor, float *dst, int n, cs_error *err);
int vk_forward(void *plan, int n, int flags, cs_error *err);
int vk_backward(void *plan, int n, cs_error *err);
int vk_update(void *plan, const cs_sgd *opt, cs_error *err);
int vk_step(void *plan, int n, const cs_sgd *opt, cs_error *err);
int vk_profile(void *plan, char *report, size_t size, cs_error *err);

#endif
