/* plan.c: a graph prepared on a Vulkan device: its buffers, copies in and out, submitting the
 * recorded command buffers, and the profile their timestamps give. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

static const int arena_buffer[CS_ARENA_COUNT_] = {VB_PARAMS, VB_GRADS,   VB_MOMENTUM,
                                                  VB_BUFFERS, VB_FPARAMS, VB_FBUFFERS};
static const char *const buffer_names[VB_COUNT_] = {
    "activation", "activation gradient", "parameter", "gradient", "momentum", "buffer", "frozen parameter",
    "frozen buffer", "saved-state", "workspace", "hyper", "input staging", "loss readback", "staging",
};

/* ---- device state: waiting, submitting, losing the device ---- */

static int lost(vk_plan *p, cs_error *err)
{
    if (err)
        *err = p->lost_err;
    return p->lost_err.status ? p->lost_err.status : CS_ERR;
}

static int lose(vk_plan *p, VkResult r, const char *what, cs_error *err)
{
    p->lost = 1;
    vk_fail(&p->lost_err, r, what);
    return lost(p, err);
}

static void collect_profile(vk_plan *p, const vk_rec *r);

/* Waits for what was submitted last (the fence), and takes its timestamps. */
static int sync_plan(vk_plan *p, cs_error *err)
{
    if (p->lost)
        return lost(p, err);
    if (!p->inflight && !p->xfer_inflight)
        return CS_OK;
    VkResult r = vkf.vkWaitForFences(p->d->dev, 1, &p->fence, VK_TRUE, UINT64_MAX);
    vk_rec *rec = p->inflight;
    p->inflight = NULL;
    p->xfer_inflight = 0;
    if (r != VK_SUCCESS)
        return lose(p, r, "waiting for the device", err);
    if (rec && rec->queries && p->profiling)
        collect_profile(p, rec);
    return CS_OK;
}

static int submit(vk_plan *p, VkCommandBuffer cb, vk_rec *rec, cs_error *err)
{
    VkResult r = vkf.vkResetFences(p->d->dev, 1, &p->fence);
    const VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb};
    if (r == VK_SUCCESS)
        r = vkf.vkQueueSubmit(p->d->queue, 1, &si, p->fence);
    if (r != VK_SUCCESS)
        return lose(p, r, "vkQueueSubmit", err);
    p->inflight = rec;
    p->xfer_inflight = rec == NULL;
    return CS_OK;
}

/* One copy between buffers, waited for. */
static int transfer(vk_plan *p, int src, VkDeviceSize src_off, int dst, VkDeviceSize dst_off, VkDeviceSize bytes,
                    cs_error *err)
{
    int rc = sync_plan(p, err);
    if (rc)
        return rc;
    VkResult r = vkf.vkResetCommandBuffer(p->xfer, 0);
    if (r != VK_SUCCESS)
        return lose(p, r, "vkResetCommandBuffer", err);
    if ((rc = vk_record_copy(p, p->xfer, src, src_off, dst, dst_off, bytes, err)) ||
        (rc = submit(p, p->xfer, NULL, err)))
        return rc;
    return sync_plan(p, err);
}

/* ---- buffers ---- */

/* A memory type in bits with every flag of want, preferring one with prefer too; -1 if none. */
static int memory_type(const vk_device *d, uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer)
{
    int fallback = -1;
    for (uint32_t i = 0; i < d->mem.memoryTypeCount; i++) {
        const VkMemoryPropertyFlags f = d->mem.memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & want) != want)
            continue;
        if ((f & prefer) == prefer)
            return (int)i;
        if (fallback < 0)
            fallback = (int)i;
    }
    return fallback;
}

static int make_buffer(vk_plan *p, int id, int64_t floats, int host, cs_error *err)
{
    const vk_device *d = p->d;
    vk_buffer *b = &p->b[id];
    VkDeviceSize bytes = (VkDeviceSize)(floats > 4 ? floats : 4) * 4;
    bytes = (bytes + 15) & ~(VkDeviceSize)15;
    if (d->max_alloc && bytes > d->max_alloc)
        return cs_error_set(err, CS_ERR_NOMEM,
                            "vulkan backend: the %s buffer needs %.1f MiB, more than the device's largest allocation "
                            "(%.0f MiB): use a smaller batch or network",
                            buffer_names[id], (double)bytes / 1048576.0, (double)d->max_alloc / 1048576.0);
    const VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkf.vkCreateBuffer(d->dev, &bci, NULL, &b->buf);
    if (r != VK_SUCCESS) {
        b->buf = VK_NULL_HANDLE;
        return vk_fail(err, r, "vkCreateBuffer");
    }
    b->size = bytes;
    VkMemoryRequirements req;
    vkf.vkGetBufferMemoryRequirements(d->dev, b->buf, &req);
    /* staging read back by the host prefers cached memory; the rest of the host's, coherent memory */
    const int type = host ? memory_type(d, req.memoryTypeBits,
                                        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                        id == VB_STAGE || id == VB_SCALARS ? VK_MEMORY_PROPERTY_HOST_CACHED_BIT : 0)
                          : memory_type(d, req.memoryTypeBits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type < 0)
        return cs_error_set(err, CS_ERR, "vulkan backend: the device has no %s memory for the %s buffer",
                            host ? "host-visible coherent" : "usable", buffer_names[id]);
    const VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                             .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
    const VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &flags,
                                      .allocationSize = req.size, .memoryTypeIndex = (uint32_t)type};
    r = vkf.vkAllocateMemory(d->dev, &mai, NULL, &b->mem);
    if (r != VK_SUCCESS) {
        b->mem = VK_NULL_HANDLE;
        const uint32_t heap = d->mem.memoryTypes[type].heapIndex;
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return cs_error_set(err, CS_ERR_NOMEM,
                                "vulkan backend: device memory exhausted: the %s buffer needs %.1f MiB (memory heap "
                                "%u holds %.0f MiB in all): use a smaller batch or network",
                                buffer_names[id], (double)req.size / 1048576.0, heap,
                                (double)d->mem.memoryHeaps[heap].size / 1048576.0);
        return vk_fail(err, r, "vkAllocateMemory");
    }
    if ((r = vkf.vkBindBufferMemory(d->dev, b->buf, b->mem, 0)) != VK_SUCCESS)
        return vk_fail(err, r, "vkBindBufferMemory");
    if (host) {
        if ((r = vkf.vkMapMemory(d->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map)) != VK_SUCCESS) {
            b->map = NULL;
            return vk_fail(err, r, "vkMapMemory");
        }
        memset(b->map, 0, (size_t)bytes);
    }
    const VkBufferDeviceAddressInfo ai = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->buf};
    b->addr = vkf.vkGetBufferDeviceAddress(d->dev, &ai);
    return CS_OK;
}

static void free_rec(vk_plan *p, vk_rec *r)
{
    if (r->cb)
        vkf.vkFreeCommandBuffers(p->d->dev, p->pool, 1, &r->cb);
    if (r->queries)
        vkf.vkDestroyQueryPool(p->d->dev, r->queries, NULL);
    free(r->mark);
    memset(r, 0, sizeof *r);
}

static void drop_recs(vk_plan *p)
{
    for (int i = 0; i < p->n_recs; i++)
        free_rec(p, &p->rec[i]);
    p->n_recs = 0;
}

void vk_release(void *plan)
{
    vk_plan *p = plan;
    if (!p)
        return;
    VkDevice dev = p->d->dev;
    if (p->inflight || p->xfer_inflight)
        vkf.vkWaitForFences(dev, 1, &p->fence, VK_TRUE, UINT64_MAX);
    drop_recs(p);
    if (p->xfer)
        vkf.vkFreeCommandBuffers(dev, p->pool, 1, &p->xfer);
    if (p->pool)
        vkf.vkDestroyCommandPool(dev, p->pool, NULL);
    if (p->fence)
        vkf.vkDestroyFence(dev, p->fence, NULL);
    for (int b = 0; b < VB_COUNT_; b++) {
        if (p->b[b].map)
            vkf.vkUnmapMemory(dev, p->b[b].mem);
        if (p->b[b].buf)
            vkf.vkDestroyBuffer(dev, p->b[b].buf, NULL);
        if (p->b[b].mem)
            vkf.vkFreeMemory(dev, p->b[b].mem, NULL);
    }
    free(p->save_at);
    free(p->input_at);
    free(p->scalar_at);
    free(p->grad_live);
    free(p->slot_ns);
    free(p->slot_calls);
    free(p);
}

/* Floats node i saves for its backward (besides its input and output tensors), at the graph's batch. */
static int64_t save_size(const cs_graph *g, int i)
{
    const cs_node *nd = cs_graph_node(g, i);
    const cs_tensor *x = cs_graph_tensor(g, nd->in[0]), *y = cs_graph_tensor(g, nd->out);
    const int64_t b = cs_graph_batch(g);
    switch (nd->op) {
    case CS_OP_BATCHNORM: return 2 * (int64_t)x->shape[1];         /* mean, invstd */
    case CS_OP_MAXPOOL: return y->size;                             /* argmax */
    case CS_OP_COSINE_LINEAR: {                                     /* xn, wn, |x|, |w|, cos */
        const int64_t f = x->shape[1], k = y->shape[1];
        return (b + k) * f + b + k + b * k;
    }
    case CS_OP_L2NORM: return b;                                    /* norms */
    case CS_OP_SOFTMAX_XENT: return b * x->shape[1] + b;            /* probabilities, row terms */
    case CS_OP_COSINE_EMBED: return 4 * b;                          /* |a|, |b|, cos, row terms */
    default: return 0;
    }
}

int vk_prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err)
{
    vk_device *d = ctx;
    if (!d || !g || !plan)
        return cs_error_set(err, CS_ERR_ARG,
                            "vulkan backend: prepare needs a device, a graph and a place for the plan");
    *plan = NULL;
    int rc = CS_OK; /* the front door has checked the graph (cs_graph_check) */
    /* shaders index with 32-bit integers */
    const int64_t limit = INT32_MAX;
    if (cs_graph_n_acts(g) > limit || cs_graph_n_params(g) > limit || cs_graph_n_buffers(g) > limit)
        return cs_error_set(err, CS_ERR_ARG,
                            "vulkan backend: arenas of %lld activations, %lld parameters, %lld buffer values: the "
                            "backend indexes at most %lld floats per arena (use a smaller batch)",
                            (long long)cs_graph_n_acts(g), (long long)cs_graph_n_params(g), (long long)cs_graph_n_buffers(g), (long long)limit);
    vk_plan *p = calloc(1, sizeof *p);
    if (!p)
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: out of memory preparing the plan");
    p->d = d;
    p->g = g;
    const int nt = cs_graph_n_tensors(g) > 0 ? cs_graph_n_tensors(g) : 1, nn = cs_graph_n_nodes(g) > 0 ? cs_graph_n_nodes(g) : 1;
    p->save_at = calloc((size_t)nn, sizeof *p->save_at);
    p->input_at = calloc((size_t)nt, sizeof *p->input_at);
    p->scalar_at = calloc((size_t)nt, sizeof *p->scalar_at);
    p->grad_live = calloc((size_t)nt, 1);
    p->n_slots = 2 * (int64_t)cs_graph_n_nodes(g) + VK_SLOT_EXTRAS_;
    p->slot_ns = calloc((size_t)p->n_slots, sizeof *p->slot_ns);
    p->slot_calls = calloc((size_t)p->n_slots, sizeof *p->slot_calls);
    if (!p->save_at || !p->input_at || !p->scalar_at || !p->grad_live || !p->slot_ns || !p->slot_calls) {
        vk_release(p);
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: out of memory preparing the plan");
    }
    int64_t save_total = 0, input_total = 0, largest = 1024, work = 0;
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        const int64_t s = save_size(g, i), w = vk_work_size(g, i);
        p->save_at[i] = s ? save_total : -1;
        save_total += s;
        work = w > work ? w : work;
    }
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        p->input_at[t] = p->scalar_at[t] = -1;
        if (x->kind == CS_TENSOR_INPUT) {
            p->input_at[t] = input_total;
            input_total += x->size;
        }
        if (x->kind == CS_TENSOR_ACT && !x->batched && x->size == 1)
            p->scalar_at[t] = p->n_scalars++;
    }
    if (save_total > limit)
        rc = cs_error_set(err, CS_ERR_ARG, "vulkan backend: %lld floats of saved state: more than %lld",
                          (long long)save_total, (long long)limit);
    const int64_t sizes[CS_ARENA_COUNT_] = {cs_graph_n_params(g), cs_graph_n_params(g), cs_graph_n_params(g),
                                            cs_graph_n_buffers(g), cs_graph_n_params(g), cs_graph_n_buffers(g)};
    for (int a = 0; a < CS_ARENA_COUNT_; a++) {
        if (rc == CS_OK)
            rc = make_buffer(p, arena_buffer[a], sizes[a], 0, err);
        largest = sizes[a] > largest ? sizes[a] : largest;
    }
    largest = cs_graph_n_acts(g) > largest ? cs_graph_n_acts(g) : largest;
    const int64_t stage = largest < (1 << 22) ? largest : (1 << 22); /* 16 MiB at most; copies go in chunks */
    if (rc == CS_OK && !(rc = make_buffer(p, VB_ACT, cs_graph_n_acts(g), 0, err)) &&
        !(rc = make_buffer(p, VB_DACT, cs_graph_n_acts(g), 0, err)) && !(rc = make_buffer(p, VB_SAVE, save_total, 0, err)) &&
        !(rc = make_buffer(p, VB_WORK, work, 0, err)) &&
        !(rc = make_buffer(p, VB_HYPER, sizeof(vk_hyper) / 4, 1, err)) &&
        !(rc = make_buffer(p, VB_INPUT, input_total, 1, err)) &&
        !(rc = make_buffer(p, VB_SCALARS, p->n_scalars, 1, err)))
        rc = make_buffer(p, VB_STAGE, stage, 1, err);
    if (rc) {
        vk_release(p);
        return rc;
    }
    const VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                         .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                         .queueFamilyIndex = d->queue_family};
    const VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkResult r = vkf.vkCreateCommandPool(d->dev, &cpi, NULL, &p->pool);
    if (r == VK_SUCCESS) {
        const VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                                 .commandPool = p->pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                                 .commandBufferCount = 1};
        r = vkf.vkAllocateCommandBuffers(d->dev, &cai, &p->xfer);
    } else {
        p->pool = VK_NULL_HANDLE;
    }
    if (r == VK_SUCCESS)
        r = vkf.vkCreateFence(d->dev, &fci, NULL, &p->fence);
    if (r != VK_SUCCESS) {
        vk_release(p);
        return vk_fail(err, r, "creating the command pool");
    }
    /* every device arena starts zeroed */
    const VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                            .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if ((r = vkf.vkBeginCommandBuffer(p->xfer, &begin)) == VK_SUCCESS) {
        for (int b = 0; b < VB_COUNT_; b++)
            if (!p->b[b].map)
                vkf.vkCmdFillBuffer(p->xfer, p->b[b].buf, 0, VK_WHOLE_SIZE, 0);
        r = vkf.vkEndCommandBuffer(p->xfer);
    }
    if (r != VK_SUCCESS || (rc = submit(p, p->xfer, NULL, err)) || (rc = sync_plan(p, err))) {
        vk_release(p);
        return rc ? rc : vk_fail(err, r, "zeroing the arenas");
    }
    *plan = p;
    return CS_OK;
}

/* ---- copies ---- */

/* Floats [offset, offset + count) of device buffer buf from or to host memory, through the staging buffer. */
static int copy_host(vk_plan *p, int buf, int64_t offset, int64_t count, float *host, int to_device, cs_error *err)
{
    const int64_t chunk = (int64_t)(p->b[VB_STAGE].size / 4);
    for (int64_t done = 0; done < count;) {
        const int64_t k = count - done < chunk ? count - done : chunk;
        const VkDeviceSize at = (VkDeviceSize)(offset + done) * 4, bytes = (VkDeviceSize)k * 4;
        int rc;
        if (to_device) {
            if ((rc = sync_plan(p, err)))
                return rc;
            memcpy(p->b[VB_STAGE].map, host + done, (size_t)bytes);
            rc = transfer(p, VB_STAGE, 0, buf, at, bytes, err);
        } else {
            if (!(rc = transfer(p, buf, at, VB_STAGE, 0, bytes, err)))
                memcpy(host + done, p->b[VB_STAGE].map, (size_t)bytes);
        }
        if (rc)
            return rc;
        done += k;
    }
    return CS_OK;
}

int vk_write(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err)
{
    return copy_host(plan, arena_buffer[a], offset, count, (float *)src, 1, err);
}

int vk_read(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err)
{
    return copy_host(plan, arena_buffer[a], offset, count, dst, 0, err);
}

int vk_set_input(void *plan, int tensor, const float *src, int n, cs_error *err)
{
    vk_plan *p = plan;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    int rc;
    /* the submission in flight may still be uploading the inputs */
    if ((rc = sync_plan(p, err)))
        return rc;
    memcpy((float *)p->b[VB_INPUT].map + p->input_at[tensor], src, (size_t)vk_rows_size(t, n) * sizeof *src);
    return CS_OK;
}

int vk_read_tensor(void *plan, int tensor, float *dst, int n, cs_error *err)
{
    vk_plan *p = plan;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    int rc;
    if ((rc = sync_plan(p, err)))
        return rc;
    const int64_t count = vk_rows_size(t, n);
    if (p->scalar_at[tensor] >= 0) /* a loss: each forward copied it back already */
        dst[0] = ((const float *)p->b[VB_SCALARS].map)[p->scalar_at[tensor]];
    else if (p->input_at[tensor] >= 0)
        memcpy(dst, (const float *)p->b[VB_INPUT].map + p->input_at[tensor], (size_t)count * sizeof *dst);
    else
        rc = copy_host(p, VB_ACT, t->offset, count, dst, 0, err);
    return rc;
}

/* ---- running ---- */

/* The recorded command buffer for (kind, n), recorded now if it is not yet. */
static int get_rec(vk_plan *p, vk_kind kind, int n, vk_rec **out, cs_error *err)
{
    for (int i = 0; i < p->n_recs; i++)
        if (p->rec[i].kind == kind && p->rec[i].n == n) {
            *out = &p->rec[i];
            return CS_OK;
        }
    if (p->n_recs == VK_MAX_RECS) { /* many row counts: forget the oldest (nothing is in flight here) */
        free_rec(p, &p->rec[0]);
        memmove(&p->rec[0], &p->rec[1], (size_t)(VK_MAX_RECS - 1) * sizeof p->rec[0]);
        memset(&p->rec[VK_MAX_RECS - 1], 0, sizeof p->rec[0]);
        p->n_recs--;
    }
    vk_rec *r = &p->rec[p->n_recs];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->n = n;
    const VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                             .commandPool = p->pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                             .commandBufferCount = 1};
    VkResult vr = vkf.vkAllocateCommandBuffers(p->d->dev, &cai, &r->cb);
    if (vr != VK_SUCCESS) {
        r->cb = VK_NULL_HANDLE;
        return vk_fail(err, vr, "vkAllocateCommandBuffers");
    }
    if (p->profiling) {
        const uint32_t marks = 2 * (uint32_t)cs_graph_n_nodes(p->g) + 8;
        const VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                           .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = marks};
        r->mark = calloc(marks, sizeof *r->mark);
        if (!r->mark) {
            free_rec(p, r);
            return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: out of memory for the profile");
        }
        if ((vr = vkf.vkCreateQueryPool(p->d->dev, &qci, NULL, &r->queries)) != VK_SUCCESS) {
            r->queries = VK_NULL_HANDLE;
            free_rec(p, r);
            return vk_fail(err, vr, "vkCreateQueryPool");
        }
    }
    int rc = vk_record(p, r, err);
    if (rc) {
        free_rec(p, r);
        return rc;
    }
    p->n_recs++;
    *out = r;
    return CS_OK;
}

static int run(vk_plan *p, vk_kind kind, int n, cs_error *err)
{
    vk_rec *r = NULL;
    int rc = get_rec(p, kind, n, &r, err);
    return rc ? rc : submit(p, r->cb, r, err);
}

static int node_fail(cs_error *err, const cs_graph *g, int i, const char *what)
{
    return cs_error_set(err, CS_ERR_ARG, "vulkan backend: node %d '%s' (%s): %s", i, cs_graph_node(g, i)->name,
                        cs_op_name(cs_graph_node(g, i)->op), what);
}

/* What the CPU backend refuses while running a forward, refused before submitting it (in node order). */
static int check_forward(vk_plan *p, int n, int train, cs_error *err)
{
    const cs_graph *g = p->g;
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        const cs_node *nd = cs_graph_node(g, i);
        const cs_tensor *x = cs_graph_tensor(g, nd->in[0]);
        if (nd->op == CS_OP_BATCHNORM && train && (int64_t)n * x->shape[2] * x->shape[3] < 2) {
            char what[160];
            snprintf(what, sizeof what, "training needs more than one value per channel (%d rows of %dx%d)", n,
                     x->shape[2], x->shape[3]);
            return node_fail(err, g, i, what);
        }
        if (nd->op == CS_OP_SOFTMAX_XENT) {
            const int k = x->shape[1], lt = nd->in[1];
            const float *labels = (const float *)p->b[VB_INPUT].map + p->input_at[lt];
            for (int r = 0; r < n; r++)
                if (!(labels[r] >= 0 && labels[r] < k && labels[r] == floorf(labels[r]))) {
                    char what[400];
                    snprintf(what, sizeof what, "label %g in row %d of %s is not a class id in [0, %d)", labels[r], r,
                             cs_graph_tensor(g, lt)->name, k);
                    return node_fail(err, g, i, what);
                }
        }
    }
    return CS_OK;
}

int vk_forward(void *plan, int n, int flags, cs_error *err)
{
    vk_plan *p = plan;
    const int train = flags & CS_FWD_TRAIN, frozen = flags & CS_FWD_FROZEN;
    int rc;
    if ((rc = sync_plan(p, err)) || (rc = check_forward(p, n, train, err)) ||
        (rc = run(p, train ? VK_REC_FWD_TRAIN : frozen ? VK_REC_FWD_FROZEN : VK_REC_FWD_EVAL, n, err)))
        return rc;
    return CS_OK;
}

/* The loss weights (re-read from the graph for every backward) and, with opt, the SGD settings. */
static int write_hyper(vk_plan *p, const cs_sgd *opt, cs_error *err)
{
    vk_hyper *h = p->b[VB_HYPER].map;
    for (int l = 0; l < cs_graph_n_losses(p->g); l++)
        h->loss_weight[l] = cs_graph_loss_weight(p->g, l);
    if (!opt)
        return CS_OK;
    /* the front door has checked the settings and that every frozen range lies in the arena */
    int nf = 0;
    for (int f = 0; f < opt->n_frozen; f++) {
        const int64_t s = opt->frozen[f][0], c = opt->frozen[f][1];
        if (!c)
            continue;
        /* merged into the ranges so far, which stay disjoint */
        uint32_t lo = (uint32_t)s, hi = (uint32_t)(s + c);
        int w = 0;
        for (int j = 0; j < nf; j++) {
            const uint32_t a = h->frozen[2 * j], b = h->frozen[2 * j + 1];
            if (b < lo || a > hi) {
                h->frozen[2 * w] = a;
                h->frozen[2 * w++ + 1] = b;
            } else {
                lo = a < lo ? a : lo;
                hi = b > hi ? b : hi;
            }
        }
        if (w == VK_MAX_FROZEN)
            return cs_error_set(err, CS_ERR_ARG, "vulkan backend: SGD: more than %d disjoint frozen ranges",
                                VK_MAX_FROZEN);
        h->frozen[2 * w] = lo;
        h->frozen[2 * w + 1] = hi;
        nf = w + 1;
    }
    h->n_frozen = nf;
    h->lr = opt->lr;
    h->momentum = opt->momentum;
    h->weight_decay = opt->weight_decay;
    h->nesterov = opt->nesterov != 0;
    return CS_OK;
}

int vk_backward(void *plan, int n, cs_error *err)
{
    vk_plan *p = plan; /* the front door allows backward only after a training forward of these n rows */
    int rc;
    if ((rc = sync_plan(p, err)) || (rc = write_hyper(p, NULL, err)))
        return rc;
    return run(p, VK_REC_BWD, n, err);
}

int vk_update(void *plan, const cs_sgd *opt, cs_error *err)
{
    vk_plan *p = plan;
    int rc = sync_plan(p, err);
    if (rc || (rc = write_hyper(p, opt, err)))
        return rc;
    return run(p, VK_REC_UPDATE, 0, err);
}

int vk_step(void *plan, int n, const cs_sgd *opt, cs_error *err)
{
    vk_plan *p = plan;
    int rc;
    if ((rc = sync_plan(p, err)) || (rc = write_hyper(p, opt, err)) || (rc = check_forward(p, n, 1, err)) ||
        (rc = run(p, VK_REC_STEP, n, err)))
        return rc;
    return CS_OK;
}

/* ---- profiling ---- */

static void collect_profile(vk_plan *p, const vk_rec *r)
{
    if (r->n_marks < 2)
        return;
    uint64_t ts[2 * 4096 + 8];
    uint64_t *t = (size_t)r->n_marks <= sizeof ts / sizeof ts[0] ? ts : malloc((size_t)r->n_marks * sizeof *t);
    if (!t)
        return;
    VkResult vr = vkf.vkGetQueryPoolResults(p->d->dev, r->queries, 0, (uint32_t)r->n_marks,
                                            (size_t)r->n_marks * sizeof *t, t, sizeof *t,
                                            VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (vr == VK_SUCCESS) {
        const uint32_t bits = p->d->timestamp_bits;
        const uint64_t mask = bits >= 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
        const double period = p->d->props.limits.timestampPeriod;
        for (int i = 1; i < r->n_marks; i++)
            if (r->mark[i] >= 0 && r->mark[i] < p->n_slots) {
                p->slot_ns[r->mark[i]] += (double)((t[i] - t[i - 1]) & mask) * period;
                p->slot_calls[r->mark[i]]++;
            }
        p->profiled_submits++;
    }
    if (t != ts)
        free(t);
}

typedef struct prof_row {
    char what[64];
    const char *pass;
    int nodes;
    int64_t calls;
    double ns;
} prof_row;

static int by_time(const void *a, const void *b)
{
    const double x = ((const prof_row *)a)->ns, y = ((const prof_row *)b)->ns;
    return (x < y) - (x > y);
}

int vk_profile(void *plan, char *report, size_t size, cs_error *err)
{
    vk_plan *p = plan;
    if (!p->d->timestamp_bits)
        return cs_error_set(err, CS_ERR, "vulkan backend: the device's compute queue has no timestamps: no profile");
    int rc = sync_plan(p, err);
    if (rc)
        return rc;
    const cs_graph *g = p->g;
    if (!report || !size) {
        /* start: re-record with timestamps */
        drop_recs(p);
        p->profiling = 1;
        memset(p->slot_ns, 0, (size_t)p->n_slots * sizeof *p->slot_ns);
        memset(p->slot_calls, 0, (size_t)p->n_slots * sizeof *p->slot_calls);
        p->profiled_submits = 0;
        return CS_OK;
    }
    if (!p->profiling)
        return cs_error_set(err, CS_ERR_ARG, "vulkan backend: profile: start it first (report NULL)");
    /* one row per op and pass, plus the extras */
    prof_row rows[2 * CS_OP_COUNT_ + VK_SLOT_EXTRAS_];
    memset(rows, 0, sizeof rows);
    for (int op = 1; op < CS_OP_COUNT_; op++)
        for (int pass = 0; pass < 2; pass++) {
            prof_row *r = &rows[2 * op + pass];
            snprintf(r->what, sizeof r->what, "%s", cs_op_name((cs_op)op));
            r->pass = pass ? "backward" : "forward";
        }
    static const char *const extra_names[VK_SLOT_EXTRAS_] = {"upload inputs", "read back losses",
                                                             "zero grads, seed", "sgd update"};
    for (int e = 0; e < VK_SLOT_EXTRAS_; e++) {
        prof_row *r = &rows[2 * CS_OP_COUNT_ + e];
        snprintf(r->what, sizeof r->what, "%s", extra_names[e]);
        r->pass = "";
        r->ns = p->slot_ns[2 * cs_graph_n_nodes(g) + e];
        r->calls = p->slot_calls[2 * cs_graph_n_nodes(g) + e];
    }
    double total = 0;
    for (int64_t s = 0; s < p->n_slots; s++)
        total += p->slot_ns[s];
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        for (int pass = 0; pass < 2; pass++) {
            prof_row *r = &rows[2 * cs_graph_node(g, i)->op + pass];
            r->ns += p->slot_ns[2 * i + pass];
            r->calls += p->slot_calls[2 * i + pass];
            r->nodes += p->slot_calls[2 * i + pass] > 0;
        }
    const int nrows = (int)(sizeof rows / sizeof rows[0]);
    qsort(rows, (size_t)nrows, sizeof rows[0], by_time);
    size_t u = 0;
#define OUT(...) \
    do { \
        if (u < size) \
            u += (size_t)snprintf(report + u, size - u, __VA_ARGS__); \
    } while (0)
    OUT("device time per op (Vulkan timestamps): %lld timed submissions, %.3f ms in all\n",
        (long long)p->profiled_submits, total / 1e6);
    OUT("  %-18s %-9s %6s %8s %11s %12s %7s\n", "op", "pass", "nodes", "calls", "total ms", "per call us", "share");
    for (int i = 0; i < nrows; i++)
        if (rows[i].calls)
            OUT("  %-18s %-9s %6d %8lld %11.3f %12.1f %6.1f%%\n", rows[i].what, rows[i].pass, rows[i].nodes,
                (long long)rows[i].calls, rows[i].ns / 1e6, rows[i].ns / 1e3 / (double)rows[i].calls,
                total > 0 ? 100 * rows[i].ns / total : 0.0);
    /* the slowest nodes */
    OUT("slowest nodes:\n");
    for (int shown = 0; shown < 10; shown++) {
        int64_t best = -1;
        for (int64_t s = 0; s < 2 * (int64_t)cs_graph_n_nodes(g); s++)
            if (p->slot_calls[s] > 0 && p->slot_ns[s] >= 0 && (best < 0 || p->slot_ns[s] > p->slot_ns[best]))
                best = s;
        if (best < 0)
            break;
        const cs_node *nd = cs_graph_node(g, best / 2);
        OUT("  %6.1f%%  %10.3f ms  %s (%s) %s\n", total > 0 ? 100 * p->slot_ns[best] / total : 0.0,
            p->slot_ns[best] / 1e6, nd->name, cs_op_name(nd->op), best % 2 ? "backward" : "forward");
        p->slot_ns[best] = -p->slot_ns[best] - 1; /* shown; restored below */
    }
    for (int64_t s = 0; s < 2 * (int64_t)cs_graph_n_nodes(g); s++)
        if (p->slot_ns[s] < 0)
            p->slot_ns[s] = -p->slot_ns[s] - 1;
#undef OUT
    return CS_OK;
}
