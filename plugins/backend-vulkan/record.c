/* record.c: recording a graph's forward, backward and update into a command buffer, with the
 * buffer memory barriers that the data dependencies between dispatches need (and no others). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

/* ---- the recorder: dispatches, copies, fills, and the hazards between them ----
 *
 * Every command declares the float ranges of the buffers it reads and writes.
 * Ranges touched since the last barrier are kept; a command that reads what
 * is pending a write, or writes what is pending a read or a write, gets a
 * barrier first: an execution dependency from everything before, plus a
 * buffer memory barrier for each buffer with pending writes. Independent
 * dispatches (a convolution's data and weight gradients, the two halves of a
 * concat, the SGD runs) stay unordered and may overlap on the device. */

#define MAX_PENDING 512
#define MAX_ACCESS 16

typedef struct range {
    int buf;
    uint64_t lo, hi; /* floats */
} range;

typedef struct recorder {
    vk_plan *p;
    VkCommandBuffer cb;
    vk_rec *rec; /* NULL for one-off copies */
    int frozen;  /* parameters and buffers come from the frozen arenas */
    int n;       /* rows */
    range pw[MAX_PENDING], pr[MAX_PENDING]; /* pending writes, reads */
    int npw, npr;
    VkPipelineStageFlags wstage, rstage;
    VkAccessFlags waccess[VB_COUNT_];
    range acc[MAX_ACCESS];
    int accw[MAX_ACCESS];
    int nacc;
    VkPipeline bound;
    int max_marks;
    cs_error *err;
    int failed;
} recorder;

static void rec_init(recorder *R, vk_plan *p, VkCommandBuffer cb, vk_rec *rec, cs_error *err)
{
    memset(R, 0, sizeof *R);
    R->p = p;
    R->cb = cb;
    R->rec = rec;
    R->err = err;
    /* The previous submission wrote any device buffer: the first command that
     * touches one waits for it and sees its writes. */
    for (int b = 0; b < VB_COUNT_; b++) {
        R->pw[R->npw++] = (range){b, 0, UINT64_MAX};
        R->waccess[b] = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    }
    R->wstage = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
}

static int overlaps(const range *a, const range *b) { return a->buf == b->buf && a->lo < b->hi && b->lo < a->hi; }

static void barrier(recorder *R)
{
    VkBufferMemoryBarrier bm[VB_COUNT_];
    uint32_t nb = 0;
    for (int b = 0; b < VB_COUNT_; b++)
        if (R->waccess[b])
            bm[nb++] = (VkBufferMemoryBarrier){
                .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER,
                .srcAccessMask = R->waccess[b],
                .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                 VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
                .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
                .buffer = R->p->b[b].buf,
                .offset = 0,
                .size = VK_WHOLE_SIZE,
            };
    const VkPipelineStageFlags src = R->wstage | R->rstage;
    if (src)
        vkf.vkCmdPipelineBarrier(R->cb, src, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                                 0, NULL, nb, bm, 0, NULL);
    if (R->rec)
        R->rec->barriers++;
    R->npw = R->npr = 0;
    R->wstage = R->rstage = 0;
    memset(R->waccess, 0, sizeof R->waccess);
}

/* Declares an access of the next command: floats [off, off + count) of buffer buf. */
static void access(recorder *R, int buf, int64_t off, int64_t count, int write)
{
    if (R->nacc == MAX_ACCESS || count <= 0)
        return; /* (MAX_ACCESS is above what any command declares) */
    R->acc[R->nacc] = (range){buf, (uint64_t)off, (uint64_t)(off + count)};
    R->accw[R->nacc++] = write;
}

/* Orders the declared accesses after the pending ones where they conflict, then makes them pending. */
static void commit(recorder *R, VkPipelineStageFlags stage, VkAccessFlags write_access)
{
    int conflict = R->npw + R->nacc > MAX_PENDING || R->npr + R->nacc > MAX_PENDING;
    for (int i = 0; i < R->nacc && !conflict; i++) {
        for (int j = 0; j < R->npw && !conflict; j++)
            conflict = overlaps(&R->acc[i], &R->pw[j]);
        for (int j = 0; R->accw[i] && j < R->npr && !conflict; j++)
            conflict = overlaps(&R->acc[i], &R->pr[j]);
    }
    if (conflict)
        barrier(R);
    for (int i = 0; i < R->nacc; i++) {
        if (R->accw[i]) {
            R->pw[R->npw++] = R->acc[i];
            R->waccess[R->acc[i].buf] |= write_access;
            R->wstage |= stage;
        } else {
            R->pr[R->npr++] = R->acc[i];
            R->rstage |= stage;
        }
    }
    R->nacc = 0;
}

static uint32_t groups_for(const recorder *R, int64_t items, int per_group)
{
    int64_t g = per_group ? (items + R->p->d->wg - 1) / R->p->d->wg : items;
    return g < 1 ? 1 : g > 65535 ? 65535 : (uint32_t)g;
}

/* One dispatch of shader s with push constants pc (its accesses declared before). */
static void dispatch(recorder *R, vk_shader s, const void *pc, size_t size, uint32_t groups)
{
    if (R->failed)
        return;
    VkPipeline pipe = vk_pipeline(R->p->d, s, R->err);
    if (!pipe) {
        R->failed = 1;
        return;
    }
    commit(R, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT);
    if (pipe != R->bound) {
        vkf.vkCmdBindPipeline(R->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
        R->bound = pipe;
    }
    vkf.vkCmdPushConstants(R->cb, R->p->d->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, (uint32_t)size, pc);
    vkf.vkCmdDispatch(R->cb, groups, 1, 1);
    if (R->rec)
        R->rec->dispatches++;
}

static void copy(recorder *R, int src, int64_t src_off, int dst, int64_t dst_off, int64_t count)
{
    if (count <= 0)
        return;
    access(R, src, src_off, count, 0);
    access(R, dst, dst_off, count, 1);
    commit(R, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    const VkBufferCopy region = {(VkDeviceSize)src_off * 4, (VkDeviceSize)dst_off * 4, (VkDeviceSize)count * 4};
    vkf.vkCmdCopyBuffer(R->cb, R->p->b[src].buf, R->p->b[dst].buf, 1, &region);
}

static void fill_zero(recorder *R, int buf)
{
    access(R, buf, 0, (int64_t)(R->p->b[buf].size / 4), 1);
    commit(R, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    vkf.vkCmdFillBuffer(R->cb, R->p->b[buf].buf, 0, VK_WHOLE_SIZE, 0);
}

/* Makes the transfer writes to a host-visible buffer visible to the host after the fence. */
static void host_barrier(recorder *R, int buf)
{
    const VkBufferMemoryBarrier bm = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .buffer = R->p->b[buf].buf,
        .offset = 0,
        .size = VK_WHOLE_SIZE,
    };
    vkf.vkCmdPipelineBarrier(R->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL, 1, &bm,
                             0, NULL);
}

/* Profiling: a timestamp once everything recorded so far is done, charged to slot. */
static void mark(recorder *R, int32_t slot)
{
    vk_rec *r = R->rec;
    if (!r || !r->queries || r->n_marks >= R->max_marks)
        return;
    vkf.vkCmdWriteTimestamp(R->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, r->queries, (uint32_t)r->n_marks);
    r->mark[r->n_marks++] = slot;
}

/* ---- tensors as operands ---- */

int64_t vk_rows_size(const cs_tensor *t, int n) { return t->batched ? n * cs_tensor_row(t) : t->size; }

typedef struct opnd {
    int buf;
    int64_t off, count; /* floats */
} opnd;

/* Tensor id's values over the run's rows. */
static opnd val(const recorder *R, int id)
{
    const cs_tensor *t = cs_graph_tensor(R->p->g, id);
    int buf = VB_ACT;
    if (t->kind == CS_TENSOR_PARAM)
        buf = R->frozen ? VB_FPARAMS : VB_PARAMS;
    else if (t->kind == CS_TENSOR_BUFFER)
        buf = R->frozen ? VB_FBUFFERS : VB_BUFFERS;
    return (opnd){buf, t->offset, vk_rows_size(t, R->n)};
}

/* Where tensor id's gradient accumulates (the caller checked has_grad). */
static opnd grad(const recorder *R, int id)
{
    const cs_tensor *t = cs_graph_tensor(R->p->g, id);
    return (opnd){t->kind == CS_TENSOR_PARAM ? VB_GRADS : VB_DACT, t->offset, vk_rows_size(t, R->n)};
}

/* Floats [at, at + count) of node i's save area. */
static opnd saved(const recorder *R, int i, int64_t at, int64_t count)
{
    return (opnd){VB_SAVE, R->p->save_at[i] + at, count};
}

/* Operand o of the next command, which reads it (in) or writes it (out; a write is ordered after
 * every pending access, so it also serves a command that reads and writes o): declares the access
 * and gives the device address, in one call, so that no address reaches a shader without the
 * barrier its access needs. */
static vk_addr opnd_addr(const recorder *R, opnd o) { return R->p->b[o.buf].addr + (vk_addr)o.off * 4; }
static vk_addr in(recorder *R, opnd o)
{
    access(R, o.buf, o.off, o.count, 0);
    return opnd_addr(R, o);
}
static vk_addr out(recorder *R, opnd o)
{
    access(R, o.buf, o.off, o.count, 1);
    return opnd_addr(R, o);
}
/* out(R, o) where the command writes o, else 0 (the shader's flags say it is absent). */
static vk_addr out_if(recorder *R, int writes, opnd o) { return writes ? out(R, o) : 0; }
/* The vk_hyper block: the host writes it before a submission and no command writes it, so
 * reading it needs no barrier and declares no access. */
static vk_addr hyper(const recorder *R) { return R->p->b[VB_HYPER].addr; }

/* A gradient flows into tensor id (the CPU backend's grad_of is not NULL). */
static int has_grad(const vk_plan *p, int id)
{
    const cs_tensor *t = cs_graph_tensor(p->g, id);
    return t->needs_grad && t->kind != CS_TENSOR_BUFFER;
}

/* ---- convolution weight gradients: register tiles, and chunks of the positions ---- */

/* Tiles of conv2d node i's weight gradient (output channels x taps, per group). */
static int64_t conv_weight_tiles(const cs_graph *g, int i)
{
    const cs_node *nd = cs_graph_node(g, i);
    const int grp = nd->a.groups, cg = cs_graph_tensor(g, nd->in[0])->shape[1] / grp, og = cs_graph_tensor(g, nd->out)->shape[1] / grp;
    const int dw = og < 4, tm = dw ? 1 : VK_CONV_WEIGHT_TM, tn = dw ? VK_CONV_DW_TN : VK_CONV_WEIGHT_TN;
    const int r = cg * nd->a.k * nd->a.k;
    return (int64_t)grp * ((og + tm - 1) / tm) * ((r + tn - 1) / tn);
}

/* How many chunks the n * oh * ow positions of node i's weight gradient are summed in: enough
 * tiles x chunks to keep a GPU busy (about 8192 invocations), each chunk at least 256 positions,
 * the partial sums at most 4M floats. */
static int conv_chunks(const cs_graph *g, int i, int n)
{
    const cs_node *nd = cs_graph_node(g, i);
    const cs_tensor *y = cs_graph_tensor(g, nd->out);
    const int64_t m = (int64_t)n * y->shape[2] * y->shape[3], tiles = conv_weight_tiles(g, i);
    const int64_t wsize = cs_graph_tensor(g, nd->in[1])->size;
    int64_t chunks = (8192 + tiles - 1) / tiles;
    if (chunks > m / 256)
        chunks = m / 256;
    if (chunks * wsize > (4 << 20))
        chunks = (4 << 20) / wsize;
    return chunks < 2 ? 1 : (int)chunks;
}

int64_t vk_work_size(const cs_graph *g, int i)
{
    const cs_node *nd = cs_graph_node(g, i);
    if (nd->op != CS_OP_CONV2D)
        return 0;
    const int chunks = conv_chunks(g, i, cs_graph_batch(g));
    return chunks > 1 ? (int64_t)chunks * cs_graph_tensor(g, nd->in[1])->size : 0;
}

/* ---- each op's forward and backward ---- */

/* Node i as its steps see it. */
typedef struct step {
    int i;
    const cs_node *nd;
    const cs_tensor *x, *y; /* the first input, the output */
    opnd X, I1, I2, Y;      /* values of the first three inputs (X for one the node lacks) and the output */
    opnd GY;                /* backward: the output's gradient */
    int gin[CS_MAX_INPUTS]; /* backward: input j gets a gradient, in G[j] (X where it gets none) */
    opnd G[CS_MAX_INPUTS];
    int n, hw;              /* rows; values per channel of the first input (1 unless it is 4-D) */
    int train;              /* forward: a training one */
} step;

static step node_step(const recorder *R, int i, int train)
{
    const cs_graph *g = R->p->g;
    const cs_node *nd = cs_graph_node(g, i);
    step s = {.i = i, .nd = nd, .x = cs_graph_tensor(g, nd->in[0]), .y = cs_graph_tensor(g, nd->out),
              .X = val(R, nd->in[0]), .Y = val(R, nd->out), .GY = grad(R, nd->out), .n = R->n, .train = train};
    s.I1 = nd->n_in > 1 ? val(R, nd->in[1]) : s.X;
    s.I2 = nd->n_in > 2 ? val(R, nd->in[2]) : s.X;
    s.hw = s.x->ndim == 4 ? s.x->shape[2] * s.x->shape[3] : 1;
    for (int j = 0; j < nd->n_in; j++) {
        s.gin[j] = has_grad(R->p, nd->in[j]);
        s.G[j] = s.gin[j] ? grad(R, nd->in[j]) : s.X;
    }
    return s;
}

/* Channels [src_c0, src_c0 + count) of src (src_c channels) to [dst_c0, ...) of dst (dst_c channels);
 * with groups > 1 shuffled, on the destination's side (perm_side 1) or the source's (2). */
static void chcopy(recorder *R, vk_shader sh, const step *s, opnd src, int src_c, int src_c0, opnd dst, int dst_c,
                   int dst_c0, int count, int groups, int perm_side)
{
    const pc_chcopy pc = {in(R, src), out(R, dst), R->n, s->hw, count, src_c, src_c0, dst_c, dst_c0, groups, perm_side};
    dispatch(R, sh, &pc, sizeof pc, groups_for(R, (int64_t)R->n * count * s->hw, 1));
}

/* conv2d.comp's sizes for node s; each dispatch adds the operands it reads and writes. */
static pc_conv conv_shape(const step *s, int chunks)
{
    const cs_tensor *x = s->x, *y = s->y;
    return (pc_conv){.n = s->n, .c = x->shape[1], .ih = x->shape[2], .iw = x->shape[3], .oc = y->shape[1],
                     .oh = y->shape[2], .ow = y->shape[3], .k = s->nd->a.k, .stride = s->nd->a.stride,
                     .pad = s->nd->a.pad, .groups = s->nd->a.groups, .flags = s->nd->n_in > 2, .chunks = chunks};
}

static void conv_forward(recorder *R, const step *s)
{
    const int bias = s->nd->n_in > 2, grp = s->nd->a.groups, og = s->y->shape[1] / grp, dw = og < 4;
    pc_conv pc = conv_shape(s, 0);
    pc.x = in(R, s->X);
    pc.w = in(R, s->I1);
    pc.b = bias ? in(R, s->I2) : 0;
    pc.y = out(R, s->Y);
    const int tm = dw ? 1 : VK_CONV_FWD_TM, tn = dw ? VK_CONV_DW_TN : VK_CONV_FWD_TN;
    const int64_t tiles =
        (int64_t)grp * ((og + tm - 1) / tm) * (((int64_t)s->n * s->y->shape[2] * s->y->shape[3] + tn - 1) / tn);
    dispatch(R, dw ? VK_SH_conv2d_fwd_dw : VK_SH_conv2d_fwd, &pc, sizeof pc, groups_for(R, tiles, 1));
}

static void conv_backward_data(recorder *R, const step *s)
{
    const int grp = s->nd->a.groups, cg = s->x->shape[1] / grp, dw = cg < 4;
    const int tm = dw ? 1 : VK_CONV_DATA_TM, tn = dw ? VK_CONV_DW_TN : VK_CONV_DATA_TN;
    const int64_t tiles =
        (int64_t)grp * ((cg + tm - 1) / tm) * (((int64_t)s->n * s->x->shape[2] * s->x->shape[3] + tn - 1) / tn);
    pc_conv pc = conv_shape(s, conv_chunks(R->p->g, s->i, s->n));
    pc.gy = in(R, s->GY);
    pc.w = in(R, s->I1);
    pc.gx = out(R, s->G[0]);
    const vk_shader by_stride[2][3] = {
        {VK_SH_conv2d_bwd_data, VK_SH_conv2d_bwd_data_s1, VK_SH_conv2d_bwd_data_s2},
        {VK_SH_conv2d_bwd_data_dw, VK_SH_conv2d_bwd_data_dw_s1, VK_SH_conv2d_bwd_data_dw_s2}};
    const int st = s->nd->a.stride;
    dispatch(R, by_stride[dw][st == 1 ? 1 : st == 2 ? 2 : 0], &pc, sizeof pc, groups_for(R, tiles, 1));
}

/* With more than one chunk, the chunks' partial sums go to VB_WORK, then one dispatch adds them up. */
static void conv_backward_weight(recorder *R, const step *s)
{
    const cs_graph *g = R->p->g;
    const int grp = s->nd->a.groups, cg = s->x->shape[1] / grp, dw = s->y->shape[1] / grp < 4, k = s->nd->a.k;
    const int chunks = conv_chunks(g, s->i, s->n);
    const opnd part = {VB_WORK, 0, chunks > 1 ? (int64_t)chunks * s->y->shape[1] * cg * k * k : 0};
    pc_conv pc = conv_shape(s, chunks);
    pc.gy = in(R, s->GY);
    pc.x = in(R, s->X);
    if (chunks > 1)
        pc.part = out(R, part);
    else
        pc.gw = out(R, s->G[1]);
    dispatch(R, dw ? VK_SH_conv2d_bwd_weight_dw : VK_SH_conv2d_bwd_weight, &pc, sizeof pc,
             groups_for(R, conv_weight_tiles(g, s->i) * chunks, 1));
    if (chunks > 1) {
        pc = conv_shape(s, chunks);
        pc.part = in(R, part);
        pc.gw = out(R, s->G[1]);
        dispatch(R, VK_SH_conv2d_reduce_chunks, &pc, sizeof pc, groups_for(R, s->G[1].count, 1));
    }
}

static void conv_backward(recorder *R, const step *s)
{
    if (s->gin[0])
        conv_backward_data(R, s);
    if (s->gin[1])
        conv_backward_weight(R, s);
    if (s->nd->n_in > 2 && s->gin[2]) {
        pc_conv pc = conv_shape(s, conv_chunks(R->p->g, s->i, s->n));
        pc.gy = in(R, s->GY);
        pc.gb = out(R, s->G[2]);
        dispatch(R, VK_SH_conv2d_bwd_bias, &pc, sizeof pc, groups_for(R, s->y->shape[1], 1));
    }
}

/* Training updates the running statistics and saves the batch's; evaluation reads the running ones. */
static void batchnorm_forward(recorder *R, const step *s)
{
    const int c = s->x->shape[1], train = s->train;
    const opnd rm = val(R, s->nd->in[3]), rv = val(R, s->nd->in[4]);
    const pc_bn pc = {.x = in(R, s->X), .y = out(R, s->Y), .gamma = in(R, s->I1), .beta = in(R, s->I2),
                      .rmean = train ? out(R, rm) : in(R, rm), .rvar = train ? out(R, rv) : in(R, rv),
                      .save = out_if(R, train, saved(R, s->i, 0, 2 * c)), .n = s->n, .c = c, .hw = s->hw,
                      .eps = s->nd->a.eps, .momentum = s->nd->a.momentum};
    const int serial = (int64_t)s->n * s->hw <= VK_SERIAL_SUM_MAX;
    if (train)
        dispatch(R, serial ? VK_SH_bn_train_serial : VK_SH_bn_train, &pc, sizeof pc, groups_for(R, c, serial));
    else
        dispatch(R, VK_SH_bn_eval, &pc, sizeof pc, groups_for(R, s->Y.count, 1));
}

static void batchnorm_backward(recorder *R, const step *s)
{
    const int c = s->x->shape[1], *gin = s->gin;
    if (!gin[0] && !gin[1] && !gin[2])
        return;
    const pc_bn pc = {.x = in(R, s->X), .gamma = in(R, s->I1), .save = in(R, saved(R, s->i, 0, 2 * c)),
                      .gx = out_if(R, gin[0], s->G[0]), .gy = in(R, s->GY), .ggamma = out_if(R, gin[1], s->G[1]),
                      .gbeta = out_if(R, gin[2], s->G[2]), .n = s->n, .c = c, .hw = s->hw,
                      .flags = gin[0] | gin[1] << 1 | gin[2] << 2};
    const int serial = (int64_t)s->n * s->hw <= VK_SERIAL_SUM_MAX;
    dispatch(R, serial ? VK_SH_bn_bwd_serial : VK_SH_bn_bwd, &pc, sizeof pc, groups_for(R, c, serial));
}

/* relu, relu6, add */
static void eltwise_forward(recorder *R, const step *s)
{
    const int add = s->nd->op == CS_OP_ADD;
    const pc_elt pc = {.a = in(R, s->X), .b = add ? in(R, s->I1) : 0, .y = out(R, s->Y), .count = (int32_t)s->Y.count};
    dispatch(R, add ? VK_SH_add_fwd : s->nd->op == CS_OP_RELU ? VK_SH_relu_fwd : VK_SH_relu6_fwd, &pc, sizeof pc,
             groups_for(R, s->Y.count, 1));
}

/* relu, relu6 */
static void relu_backward(recorder *R, const step *s)
{
    if (!s->gin[0])
        return;
    const pc_elt pc = {.a = in(R, s->X), .ga = out(R, s->G[0]), .gy = in(R, s->GY), .count = (int32_t)s->X.count};
    dispatch(R, s->nd->op == CS_OP_RELU ? VK_SH_relu_bwd : VK_SH_relu6_bwd, &pc, sizeof pc,
             groups_for(R, s->X.count, 1));
}

static void add_backward(recorder *R, const step *s)
{
    if (!s->gin[0] && !s->gin[1])
        return;
    const pc_elt pc = {.ga = out_if(R, s->gin[0], s->G[0]), .gb = out_if(R, s->gin[1], s->G[1]), .gy = in(R, s->GY),
                       .count = (int32_t)s->GY.count, .flags = s->gin[0] | s->gin[1] << 1};
    dispatch(R, VK_SH_add_bwd, &pc, sizeof pc, groups_for(R, s->GY.count, 1));
}

/* pool.comp's sizes (the global average pool's output is 1 x 1); maxpool saves its argmax */
static pc_pool pool_shape(const step *s)
{
    const int maxp = s->nd->op == CS_OP_MAXPOOL;
    return (pc_pool){.n = s->n, .c = s->x->shape[1], .ih = s->x->shape[2], .iw = s->x->shape[3],
                     .oh = maxp ? s->y->shape[2] : 1, .ow = maxp ? s->y->shape[3] : 1, .k = s->nd->a.k,
                     .stride = s->nd->a.stride, .pad = s->nd->a.pad};
}

static void pool_forward(recorder *R, const step *s)
{
    const int maxp = s->nd->op == CS_OP_MAXPOOL;
    pc_pool pc = pool_shape(s);
    pc.x = in(R, s->X);
    pc.y = out(R, s->Y);
    pc.save = out_if(R, maxp, saved(R, s->i, 0, s->Y.count));
    dispatch(R, maxp ? VK_SH_maxpool_fwd : VK_SH_avgpool_fwd, &pc, sizeof pc, groups_for(R, s->Y.count, 1));
}

static void pool_backward(recorder *R, const step *s)
{
    if (!s->gin[0])
        return;
    const int maxp = s->nd->op == CS_OP_MAXPOOL;
    pc_pool pc = pool_shape(s);
    pc.save = maxp ? in(R, saved(R, s->i, 0, s->GY.count)) : 0;
    pc.gx = out(R, s->G[0]);
    pc.gy = in(R, s->GY);
    dispatch(R, maxp ? VK_SH_maxpool_bwd : VK_SH_avgpool_bwd, &pc, sizeof pc, groups_for(R, s->X.count, 1));
}

static void slice_forward(recorder *R, const step *s)
{
    const int c = s->x->shape[1], at = s->nd->a.start, count = s->nd->a.count;
    chcopy(R, VK_SH_chcopy_fwd, s, s->X, c, at, s->Y, count, 0, count, 1, 0);
}

static void slice_backward(recorder *R, const step *s)
{
    const int c = s->x->shape[1], at = s->nd->a.start, count = s->nd->a.count;
    if (s->gin[0])
        chcopy(R, VK_SH_chcopy_bwd, s, s->GY, count, 0, s->G[0], c, at, count, 1, 0);
}

/* the channels of the second input follow the first's */
static void concat_forward(recorder *R, const step *s)
{
    const int ca = s->x->shape[1], cb = cs_graph_tensor(R->p->g, s->nd->in[1])->shape[1];
    chcopy(R, VK_SH_chcopy_fwd, s, s->X, ca, 0, s->Y, ca + cb, 0, ca, 1, 0);
    chcopy(R, VK_SH_chcopy_fwd, s, s->I1, cb, 0, s->Y, ca + cb, ca, cb, 1, 0);
}

static void concat_backward(recorder *R, const step *s)
{
    const int ca = s->x->shape[1], cb = cs_graph_tensor(R->p->g, s->nd->in[1])->shape[1];
    if (s->gin[0])
        chcopy(R, VK_SH_chcopy_bwd, s, s->GY, ca + cb, 0, s->G[0], ca, 0, ca, 1, 0);
    if (s->gin[1])
        chcopy(R, VK_SH_chcopy_bwd, s, s->GY, ca + cb, ca, s->G[1], cb, 0, cb, 1, 0);
}

static void shuffle_forward(recorder *R, const step *s)
{
    const int c = s->x->shape[1];
    chcopy(R, VK_SH_chcopy_fwd, s, s->X, c, 0, s->Y, c, 0, c, s->nd->a.groups, 1);
}

static void shuffle_backward(recorder *R, const step *s)
{
    const int c = s->x->shape[1];
    if (s->gin[0])
        chcopy(R, VK_SH_chcopy_bwd, s, s->GY, c, 0, s->G[0], c, 0, c, s->nd->a.groups, 2);
}

static pc_linear linear_shape(const step *s)
{
    return (pc_linear){.n = s->n, .f = s->x->shape[1], .k = s->y->shape[1], .flags = s->nd->n_in > 2};
}

static void linear_forward(recorder *R, const step *s)
{
    pc_linear pc = linear_shape(s);
    pc.x = in(R, s->X);
    pc.w = in(R, s->I1);
    pc.b = pc.flags ? in(R, s->I2) : 0;
    pc.y = out(R, s->Y);
    dispatch(R, VK_SH_linear_fwd, &pc, sizeof pc, groups_for(R, s->Y.count, 1));
}

/* data, weight and bias gradients: three dispatches, unordered among themselves */
static void linear_backward(recorder *R, const step *s)
{
    const int f = s->x->shape[1], k = s->y->shape[1];
    pc_linear pc;
    if (s->gin[0]) {
        pc = linear_shape(s);
        pc.gy = in(R, s->GY);
        pc.w = in(R, s->I1);
        pc.gx = out(R, s->G[0]);
        dispatch(R, VK_SH_linear_bwd_data, &pc, sizeof pc, groups_for(R, s->X.count, 1));
    }
    if (s->gin[1]) {
        pc = linear_shape(s);
        pc.gy = in(R, s->GY);
        pc.x = in(R, s->X);
        pc.gw = out(R, s->G[1]);
        dispatch(R, VK_SH_linear_bwd_weight, &pc, sizeof pc, groups_for(R, (int64_t)k * f, 1));
    }
    if (s->nd->n_in > 2 && s->gin[2]) {
        pc = linear_shape(s);
        pc.gy = in(R, s->GY);
        pc.gb = out(R, s->G[2]);
        dispatch(R, VK_SH_linear_bwd_bias, &pc, sizeof pc, groups_for(R, k, 1));
    }
}

/* What the cosine-linear forward saves: the normalized rows of x [n, f] and of w [k, f], their
 * norms [n], [k], and the cosines [n, k] (x's parts sized for the whole batch). */
typedef struct cosl_save {
    opnd xn, wn, xnorm, wnorm, cosv;
} cosl_save;

static cosl_save cosl_saved(const recorder *R, const step *s)
{
    const int64_t b = cs_graph_batch(R->p->g), n = s->n, f = s->x->shape[1], k = s->y->shape[1];
    return (cosl_save){saved(R, s->i, 0, n * f), saved(R, s->i, b * f, k * f), saved(R, s->i, (b + k) * f, n),
                       saved(R, s->i, (b + k) * f + b, k), saved(R, s->i, (b + k) * f + b + k, n * k)};
}

static void cosine_linear_forward(recorder *R, const step *s)
{
    const int n = s->n, f = s->x->shape[1], k = s->y->shape[1];
    const cosl_save S = cosl_saved(R, s);
    pc_rownorm rn = {.x = in(R, s->X), .y = out(R, S.xn), .norm = out(R, S.xnorm), .rows = n, .f = f};
    dispatch(R, VK_SH_rownorm_fwd, &rn, sizeof rn, groups_for(R, n, 0));
    rn = (pc_rownorm){.x = in(R, s->I1), .y = out(R, S.wn), .norm = out(R, S.wnorm), .rows = k, .f = f};
    dispatch(R, VK_SH_rownorm_fwd, &rn, sizeof rn, groups_for(R, k, 0));
    const pc_cosl pc = {.xn = in(R, S.xn), .wn = in(R, S.wn), .cosv = out(R, S.cosv), .sigma = in(R, s->I2),
                        .y = out(R, s->Y), .n = n, .f = f, .k = k};
    dispatch(R, VK_SH_cosine_linear_fwd, &pc, sizeof pc, groups_for(R, s->Y.count, 1));
}

/* What the data and the weight gradients of a cosine-linear node both read. */
static pc_cosl cosl_backward_reads(recorder *R, const step *s, const cosl_save *S)
{
    return (pc_cosl){.gy = in(R, s->GY), .cosv = in(R, S->cosv), .wn = in(R, S->wn), .xn = in(R, S->xn),
                     .sigma = in(R, s->I2), .n = s->n, .f = s->x->shape[1], .k = s->y->shape[1]};
}

/* the scale's, the data's and the weight's gradients */
static void cosine_linear_backward(recorder *R, const step *s)
{
    const int n = s->n, f = s->x->shape[1], k = s->y->shape[1];
    const cosl_save S = cosl_saved(R, s);
    pc_cosl pc;
    if (s->gin[2]) {
        pc = (pc_cosl){.gy = in(R, s->GY), .cosv = in(R, S.cosv), .gsigma = out(R, s->G[2]), .n = n, .f = f, .k = k};
        dispatch(R, VK_SH_cosine_linear_bwd_sigma, &pc, sizeof pc, 1);
    }
    if (s->gin[0]) {
        pc = cosl_backward_reads(R, s, &S);
        pc.xnorm = in(R, S.xnorm);
        pc.gx = out(R, s->G[0]);
        dispatch(R, VK_SH_cosine_linear_bwd_data, &pc, sizeof pc, groups_for(R, (int64_t)n * f, 1));
    }
    if (s->gin[1]) {
        pc = cosl_backward_reads(R, s, &S);
        pc.wnorm = in(R, S.wnorm);
        pc.gw = out(R, s->G[1]);
        dispatch(R, VK_SH_cosine_linear_bwd_weight, &pc, sizeof pc, groups_for(R, (int64_t)k * f, 1));
    }
}

/* saves the rows' norms */
static void l2norm_forward(recorder *R, const step *s)
{
    const pc_rownorm pc = {.x = in(R, s->X), .y = out(R, s->Y), .norm = out(R, saved(R, s->i, 0, s->n)),
                           .rows = s->n, .f = s->x->shape[1]};
    dispatch(R, VK_SH_rownorm_fwd, &pc, sizeof pc, groups_for(R, s->n, 0));
}

static void l2norm_backward(recorder *R, const step *s)
{
    if (!s->gin[0])
        return;
    const pc_rownorm pc = {.y = in(R, s->Y), .norm = in(R, saved(R, s->i, 0, s->n)), .gx = out(R, s->G[0]),
                           .gy = in(R, s->GY), .rows = s->n, .f = s->x->shape[1]};
    dispatch(R, VK_SH_rownorm_bwd, &pc, sizeof pc, groups_for(R, s->n, 0));
}

/* softmax_xent's save: the probabilities [n, f]; cosine_embed's: |a|, |b|, cos [n each] */
static opnd loss_saved(const recorder *R, const step *s)
{
    const int64_t n = s->n;
    return saved(R, s->i, 0, s->nd->op == CS_OP_SOFTMAX_XENT ? n * s->x->shape[1] : 3 * n);
}

/* softmax_xent, cosine_embed: the row terms (saved after the rest, sized for the whole batch), then their mean */
static void loss_forward(recorder *R, const step *s)
{
    const int xent = s->nd->op == CS_OP_SOFTMAX_XENT, b = cs_graph_batch(R->p->g), f = s->x->shape[1];
    const int64_t terms_at = xent ? (int64_t)b * f : 3 * (int64_t)b;
    const opnd T = saved(R, s->i, terms_at, s->n);
    const pc_loss pc = {.a = in(R, s->X), .b = in(R, s->I1), .save = out(R, loss_saved(R, s)), .terms = out(R, T),
                        .n = s->n, .f = f};
    dispatch(R, xent ? VK_SH_xent_fwd : VK_SH_cosine_embed_fwd, &pc, sizeof pc, groups_for(R, s->n, 0));
    const pc_loss mean = {.terms = in(R, T), .loss = out(R, s->Y), .n = s->n};
    dispatch(R, VK_SH_loss_mean, &mean, sizeof mean, 1);
}

static void loss_backward(recorder *R, const step *s)
{
    if (!s->gin[0])
        return;
    const int xent = s->nd->op == CS_OP_SOFTMAX_XENT;
    const pc_loss pc = {.a = in(R, s->X), .b = in(R, s->I1), .save = in(R, loss_saved(R, s)), .ga = out(R, s->G[0]),
                        .gloss = in(R, s->GY), .n = s->n, .f = s->x->shape[1]};
    dispatch(R, xent ? VK_SH_xent_bwd : VK_SH_cosine_embed_bwd, &pc, sizeof pc, groups_for(R, s->X.count, 1));
}

typedef void (*step_fn)(recorder *R, const step *s);
/* Each op's forward and backward recording. The table is built from graph.h's
 * CS_OP_LIST, so an op added there without a VK_STEPS_<ID> line here stops the
 * build ("'VK_STEPS_...' undeclared") instead of running as a silent no-op. */
#define VK_STEPS_CONV2D {conv_forward, conv_backward}
#define VK_STEPS_BATCHNORM {batchnorm_forward, batchnorm_backward}
#define VK_STEPS_RELU {eltwise_forward, relu_backward}
#define VK_STEPS_RELU6 {eltwise_forward, relu_backward}
#define VK_STEPS_ADD {eltwise_forward, add_backward}
#define VK_STEPS_MAXPOOL {pool_forward, pool_backward}
#define VK_STEPS_AVGPOOL {pool_forward, pool_backward}
#define VK_STEPS_SLICE {slice_forward, slice_backward}
#define VK_STEPS_CONCAT {concat_forward, concat_backward}
#define VK_STEPS_SHUFFLE {shuffle_forward, shuffle_backward}
#define VK_STEPS_LINEAR {linear_forward, linear_backward}
#define VK_STEPS_COSINE_LINEAR {cosine_linear_forward, cosine_linear_backward}
#define VK_STEPS_L2NORM {l2norm_forward, l2norm_backward}
#define VK_STEPS_SOFTMAX_XENT {loss_forward, loss_backward}
#define VK_STEPS_COSINE_EMBED {loss_forward, loss_backward}
#define VK_OP_STEPS_(id, num, name, min_in, max_in) [CS_OP_##id] = VK_STEPS_##id,
static const struct {
    step_fn forward, backward;
} op_steps[CS_OP_COUNT_] = {CS_OP_LIST(VK_OP_STEPS_)};
#undef VK_OP_STEPS_

static void node_forward(recorder *R, int i, int train)
{
    const step s = node_step(R, i, train);
    if (s.nd->op > 0 && s.nd->op < CS_OP_COUNT_ && op_steps[s.nd->op].forward)
        op_steps[s.nd->op].forward(R, &s);
}

static void node_backward(recorder *R, int i)
{
    const step s = node_step(R, i, 0);
    if (s.nd->op > 0 && s.nd->op < CS_OP_COUNT_ && op_steps[s.nd->op].backward)
        op_steps[s.nd->op].backward(R, &s);
}

/* ---- whole passes ---- */

static void record_forward(recorder *R, int train)
{
    vk_plan *p = R->p;
    const cs_graph *g = p->g;
    const int64_t extras = 2 * (int64_t)cs_graph_n_nodes(g);
    /* the inputs as set_input left them */
    for (int t = 0; t < cs_graph_n_tensors(g); t++)
        if (p->input_at[t] >= 0)
            copy(R, VB_INPUT, p->input_at[t], VB_ACT, cs_graph_tensor(g, t)->offset, vk_rows_size(cs_graph_tensor(g, t), R->n));
    mark(R, (int32_t)(extras + VK_SLOT_UPLOAD));
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        node_forward(R, i, train);
        mark(R, 2 * i);
    }
    /* every one-value activation (the losses), for read_tensor without another submission */
    for (int t = 0; t < cs_graph_n_tensors(g); t++)
        if (p->scalar_at[t] >= 0)
            copy(R, VB_ACT, cs_graph_tensor(g, t)->offset, VB_SCALARS, p->scalar_at[t], 1);
    if (p->n_scalars)
        host_barrier(R, VB_SCALARS);
    mark(R, (int32_t)(extras + VK_SLOT_SCALARS));
}

static void record_backward(recorder *R)
{
    vk_plan *p = R->p;
    const cs_graph *g = p->g;
    /* Which tensors get a gradient: the CPU backend's has_grad, which only the graph decides. */
    memset(p->grad_live, 0, (size_t)cs_graph_n_tensors(g));
    for (int l = 0; l < cs_graph_n_losses(g); l++)
        if (has_grad(p, cs_graph_loss(g, l)))
            p->grad_live[cs_graph_loss(g, l)] = 1;
    for (int i = cs_graph_n_nodes(g) - 1; i >= 0; i--)
        if (p->grad_live[cs_graph_node(g, i)->out])
            for (int j = 0; j < cs_graph_node(g, i)->n_in; j++)
                if (has_grad(p, cs_graph_node(g, i)->in[j]))
                    p->grad_live[cs_graph_node(g, i)->in[j]] = 1;

    fill_zero(R, VB_GRADS);
    fill_zero(R, VB_DACT);
    for (int l = 0; l < cs_graph_n_losses(g); l++)
        if (has_grad(p, cs_graph_loss(g, l))) {
            const opnd gl = grad(R, cs_graph_loss(g, l));
            const pc_loss pc = {.ga = out(R, gl), .hyper = hyper(R), .n = l};
            dispatch(R, VK_SH_loss_seed, &pc, sizeof pc, 1);
        }
    mark(R, (int32_t)(2 * (int64_t)cs_graph_n_nodes(g) + VK_SLOT_ZERO_SEED));
    for (int i = cs_graph_n_nodes(g) - 1; i >= 0; i--)
        if (p->grad_live[cs_graph_node(g, i)->out]) {
            node_backward(R, i);
            mark(R, 2 * i + 1);
        }
}

static void sgd_run(recorder *R, int64_t start, int64_t end)
{
    if (end <= start)
        return;
    const opnd params = {VB_PARAMS, start, end - start}, grads = {VB_GRADS, start, end - start};
    const opnd momentum = {VB_MOMENTUM, start, end - start};
    const pc_sgd pc = {out(R, params), in(R, grads), out(R, momentum), hyper(R), (int32_t)start,
                       (int32_t)(end - start)};
    dispatch(R, VK_SH_sgd, &pc, sizeof pc, groups_for(R, end - start, 1));
}

static void record_update(recorder *R)
{
    const cs_graph *g = R->p->g;
    /* one dispatch per run of adjacent trainable tensors (usually one for all) */
    int64_t start = 0, end = 0;
    for (int t = 0; t <= cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = t < cs_graph_n_tensors(g) ? cs_graph_tensor(g, t) : NULL;
        if (x && (x->kind != CS_TENSOR_PARAM || !x->needs_grad))
            continue;
        if (x && x->offset == end) {
            end += x->size;
            continue;
        }
        sgd_run(R, start, end);
        if (x) {
            start = x->offset;
            end = x->offset + x->size;
        }
    }
    mark(R, (int32_t)(2 * (int64_t)cs_graph_n_nodes(g) + VK_SLOT_SGD));
}

int vk_record(vk_plan *p, vk_rec *r, cs_error *err)
{
    recorder *R = malloc(sizeof *R);
    if (!R)
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: out of memory recording a command buffer");
    rec_init(R, p, r->cb, r, err);
    R->frozen = r->kind == VK_REC_FWD_FROZEN;
    R->n = r->n;
    R->max_marks = 2 * cs_graph_n_nodes(p->g) + 8;
    const VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VkResult vr = vkf.vkBeginCommandBuffer(r->cb, &begin);
    if (vr != VK_SUCCESS) {
        free(R);
        return vk_fail(err, vr, "vkBeginCommandBuffer");
    }
    if (r->queries) {
        vkf.vkCmdResetQueryPool(r->cb, r->queries, 0, (uint32_t)R->max_marks);
        mark(R, -1);
    }
    switch (r->kind) {
    case VK_REC_FWD_TRAIN: record_forward(R, 1); break;
    case VK_REC_FWD_EVAL:
    case VK_REC_FWD_FROZEN: record_forward(R, 0); break;
    case VK_REC_BWD: record_backward(R); break;
    case VK_REC_UPDATE: record_update(R); break;
    case VK_REC_STEP:
        record_forward(R, 1);
        record_backward(R);
        record_update(R);
        break;
    case VK_REC_KINDS_: break;
    }
    const int failed = R->failed;
    free(R);
    vr = vkf.vkEndCommandBuffer(r->cb);
    if (failed)
        return err ? err->status : CS_ERR;
    return vr == VK_SUCCESS ? CS_OK : vk_fail(err, vr, "vkEndCommandBuffer");
}

int vk_record_copy(vk_plan *p, VkCommandBuffer cb, int src, VkDeviceSize src_off, int dst, VkDeviceSize dst_off,
                   VkDeviceSize bytes, cs_error *err)
{
    recorder R;
    rec_init(&R, p, cb, NULL, err);
    const VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                            .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult vr = vkf.vkBeginCommandBuffer(cb, &begin);
    if (vr != VK_SUCCESS)
        return vk_fail(err, vr, "vkBeginCommandBuffer");
    copy(&R, src, (int64_t)(src_off / 4), dst, (int64_t)(dst_off / 4), (int64_t)(bytes / 4));
    if (p->b[dst].map)
        host_barrier(&R, dst);
    vr = vkf.vkEndCommandBuffer(cb);
    return vr == VK_SUCCESS ? CS_OK : vk_fail(err, vr, "vkEndCommandBuffer");
}
