/* plan.c: running a graph on the CPU: arenas, what each node saves for its backward, forward, backward and SGD. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/clock.h"
#include "dnnl_conv.h"
#include "kernels.h"
#include "plan.h"

/* What one node keeps from its forward for its backward. */
typedef struct node_state {
    float *save;     /* batch-norm statistics, probabilities, norms: kernels.h's *_save_size */
    int32_t *argmax; /* maxpool: where each output came from */
    conv_geom geom;  /* conv2d and maxpool at the graph's batch; n is set per run */
    dconv *dc;       /* conv2d on oneDNN, or NULL for the own kernels */
    /* batchnorm / add: a relu or relu6 fused in (CPU_ACT_*) and the tensor it
     * writes, the relu's output; the relu node itself is then skipped */
    int act, act_out;
    int fused; /* this relu runs inside the node before it */
    /* conv2d: the batch norm (node index) folded into it at inference, or -1;
     * that batch norm then skips inference forwards (skip_eval) */
    int fold_bn, skip_eval;
} node_state;

typedef struct cpu_plan {
    const cs_graph *g;
    int threads;
    float *arena[CS_ARENA_COUNT_]; /* backend.h's arenas */
    float *act;      /* inputs and activations, cs_graph_n_acts(g) floats at their tensors' offsets */
    float *act_grad; /* their gradients, same layout; a tensor's rows are zeroed when it first receives one */
    unsigned char *has_grad; /* per tensor, this backward: its gradient is live (zeroed, accumulating) */
    node_state *node;
    float *save_pool;
    int32_t *argmax_pool;
    float *ws; /* scratch shared by every node (they run one at a time): im2col blocks and the like */
    /* Channel-blocked activations (kernels_blk.c's layout, block `block`):
     * where convolutions run on oneDNN, the tensors between them that only
     * convolutions, batch norm, relu, relu6, add and average pooling touch
     * live here instead of in act / act_grad, at blk_off[t]. */
    int block;            /* 0: none blocked */
    unsigned char *blk;   /* per tensor */
    int64_t *blk_off;     /* per tensor */
    float *bact, *bgrad;
    unsigned char *elided; /* per tensor: not kept (a fused relu's input) */
    unsigned char *elided_eval; /* per tensor: not computed at inference (a folded convolution's output) */
    int last_eval;              /* the last forward was an inference one */
    int64_t ws_size;
    /* profiling (cpu_profile): wall time, calls, rows and flops per op and direction */
    int profiling;
    double prof_s[2][CS_OP_COUNT_], prof_flops[2][CS_OP_COUNT_];
    int64_t prof_calls[2][CS_OP_COUNT_];
    /* one rank of a data-parallel run (cpu_set_comm): the comm, and per
     * node i the parameters whose gradient is final once its backward has
     * run, ready[ready_at[i] .. ready_at[i + 1]) (tensor ids; built at the
     * first set_comm, kept until release) */
    int has_comm;
    cs_comm comm;
    int *ready_at, *ready;
} cpu_plan;

/* The comm's allreduce as the sync kernels call it. */
typedef struct comm_call {
    const cs_comm *comm;
    cs_error *err;
    int failed;
} comm_call;

static int comm_reduce(void *ctx, double *buf, int count)
{
    comm_call *c = ctx;
    if (c->comm->allreduce(c->comm->ctx, buf, count, c->err)) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

static int node_fail(cs_error *err, const cs_graph *g, int i, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int node_fail(cs_error *err, const cs_graph *g, int i, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cs_error_set(err, CS_ERR_ARG, "cpu backend: node %d '%s' (%s): %s", i, cs_graph_node(g, i)->name,
                        cs_op_name(cs_graph_node(g, i)->op), what);
}

/* ---- checking the graph at prepare ---- */

/* The graph is taken as the builder makes it; these checks make sure that a
 * hand-made or damaged one is refused with a message rather than read out of
 * bounds. */

void cpu_release(void *plan)
{
    cpu_plan *p = plan;
    if (!p)
        return;
    free(p->ready_at);
    free(p->ready);
    for (int a = 0; a < CS_ARENA_COUNT_; a++)
        free(p->arena[a]);
    free(p->act);
    free(p->act_grad);
    free(p->has_grad);
    for (int i = 0; p->node && i < cs_graph_n_nodes(p->g); i++)
        dconv_free(p->node[i].dc);
    free(p->node);
    free(p->save_pool);
    free(p->argmax_pool);
    free(p->ws);
    free(p->blk);
    free(p->blk_off);
    free(p->bact);
    free(p->bgrad);
    free(p->elided);
    free(p->elided_eval);
    free(p);
}

/* calloc of count elements, at least one so that empty arenas are valid pointers. */
static void *zalloc(int64_t count, size_t elem) { return calloc(count > 0 ? (size_t)count : 1, elem); }

const char *cpu_conv_family_name(cpu_conv_family f)
{
    return f == CPU_CONV_DNNL ? "dnnl" : f == CPU_CONV_IM2COL ? "im2col" : "auto";
}

/* The rule (no timing, so a resumed run makes the same choice): oneDNN for
 * every convolution where it is built in, depthwise ones too (faster than the
 * own direct kernel on all three nets, docs/benchmarks.md); conv=im2col
 * forces the own kernels. */
static int conv_on_dnnl(cpu_conv_family f)
{
    if (f == CPU_CONV_IM2COL || !dconv_available())
        return f == CPU_CONV_DNNL; /* dnnl without oneDNN: dconv_create says why */
    return 1;
}

/* union-find root */
static int root(int *up, int t)
{
    while (up[t] != t)
        t = up[t] = up[up[t]];
    return t;
}

/* Which activations are stored channel-blocked: groups of 4-D tensors joined
 * by the layout-keeping ops (batch norm, relu, relu6, add), blocked when every
 * member is made by a convolution or one of those ops and read only by them,
 * a convolution or average pooling. The graph's inputs stay plain, and so does
 * everything else. Returns 0, or -1 out of memory. */
static int assign_layouts(cpu_plan *p, const cpu_device *dev)
{
    const cs_graph *g = p->g;
    const int nt = cs_graph_n_tensors(g);
    p->block = 0;
    if (dev->plain_layout || dev->conv == CPU_CONV_IM2COL || !dconv_available() || !dconv_block())
        return 0;
    int *up = zalloc(nt, sizeof *up);
    unsigned char *ok = zalloc(nt, 1);
    p->blk = zalloc(nt, 1);
    p->blk_off = zalloc(nt, sizeof *p->blk_off);
    if (!up || !ok || !p->blk || !p->blk_off) {
        free(up);
        free(ok);
        return -1;
    }
    for (int t = 0; t < nt; t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        up[t] = t;
        ok[t] = x->kind == CS_TENSOR_ACT && x->ndim == 4 && x->batched;
    }
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        const cs_node *nd = cs_graph_node(g, i);
        switch (nd->op) {
        case CS_OP_CONV2D: break; /* reads and writes either layout */
        case CS_OP_AVGPOOL: break; /* reads either; its output is 2-D */
        case CS_OP_BATCHNORM:
        case CS_OP_RELU:
        case CS_OP_RELU6:
        case CS_OP_ADD:
            for (int j = 0; j < (nd->op == CS_OP_ADD ? 2 : 1); j++)
                up[root(up, nd->in[j])] = root(up, nd->out);
            break;
        default:
            for (int j = 0; j < nd->n_in; j++)
                ok[nd->in[j]] = 0;
            ok[nd->out] = 0;
            break;
        }
    }
    /* a group is blocked when all its members may be */
    unsigned char *group_ok = zalloc(nt, 1);
    if (!group_ok) {
        free(up);
        free(ok);
        return -1;
    }
    for (int t = 0; t < nt; t++)
        group_ok[t] = 1;
    for (int t = 0; t < nt; t++)
        if (!ok[t])
            group_ok[root(up, t)] = 0;
    const int b = cs_graph_batch(g);
    int64_t total = 0;
    for (int t = 0; t < nt; t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (!ok[t] || !group_ok[root(up, t)])
            continue;
        p->blk[t] = 1;
        p->blk_off[t] = total;
        total += (blk_size(b, x->shape[1], x->shape[2] * x->shape[3], dconv_block()) + 15) / 16 * 16;
    }
    free(up);
    free(ok);
    free(group_ok);
    if (!total)
        return 0;
    p->block = dconv_block();
    p->bact = zalloc(total, sizeof(float));
    p->bgrad = zalloc(total, sizeof(float));
    return p->bact && p->bgrad ? 0 : -1;
}

/* Fuses a relu / relu6 into the batch norm or add before it when it is that
 * op's only reader; its input tensor is then not kept. 0, or -1 out of memory. */
static int fuse_relus(cpu_plan *p, const cpu_device *dev)
{
    const cs_graph *g = p->g;
    const int nt = cs_graph_n_tensors(g), nn = cs_graph_n_nodes(g);
    int *readers = zalloc(nt, sizeof *readers), *reader = zalloc(nt, sizeof *reader);
    p->elided = zalloc(nt, 1);
    p->elided_eval = zalloc(nt, 1);
    if (!readers || !reader || !p->elided || !p->elided_eval) {
        free(readers);
        free(reader);
        return -1;
    }
    for (int i = 0; i < nn; i++) {
        const cs_node *nd = cs_graph_node(g, i);
        for (int j = 0; j < nd->n_in; j++) {
            readers[nd->in[j]]++;
            reader[nd->in[j]] = i;
        }
        p->node[i].act_out = -1;
        p->node[i].fold_bn = -1;
    }
    for (int l = 0; l < cs_graph_n_losses(g); l++)
        readers[cs_graph_loss(g, l)]++;
    for (int i = 0; i < nn && !dev->no_fuse; i++) {
        const cs_node *nd = cs_graph_node(g, i);
        if (nd->op != CS_OP_BATCHNORM && nd->op != CS_OP_ADD)
            continue;
        if (readers[nd->out] != 1)
            continue;
        const int r = reader[nd->out];
        const cs_node *rn = cs_graph_node(g, r);
        if (rn->op != CS_OP_RELU && rn->op != CS_OP_RELU6)
            continue;
        p->node[i].act = rn->op == CS_OP_RELU ? CPU_ACT_RELU : CPU_ACT_RELU6;
        p->node[i].act_out = rn->out;
        p->node[r].fused = 1;
        p->elided[nd->out] = 1;
    }
    /* a batch norm that is the only reader of a convolution's output folds
     * into it at inference (where the convolution runs on oneDNN: cpu_prepare
     * drops the rest) */
    for (int i = 0; i < nn && !dev->no_fuse; i++) {
        const cs_node *nd = cs_graph_node(g, i);
        if (nd->op != CS_OP_CONV2D || readers[nd->out] != 1)
            continue;
        const cs_node *bn = cs_graph_node(g, reader[nd->out]);
        if (bn->op == CS_OP_BATCHNORM && bn->in[0] == nd->out)
            p->node[i].fold_bn = reader[nd->out];
    }
    free(readers);
    free(reader);
    return 0;
}

/* Is tensor t stored channel-blocked? */
static int is_blk(const cpu_plan *p, int t) { return p->block && p->blk[t]; }

int cpu_prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err)
{
    const cpu_device *dev = ctx;
    if (!dev || !g || !plan)
        return cs_error_set(err, CS_ERR_ARG, "cpu backend: prepare needs a device, a graph and a place for the plan");
    *plan = NULL;
    /* the front door has checked the graph (cs_graph_check) */
    cpu_plan *p = calloc(1, sizeof *p);
    if (!p)
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory preparing the plan");
    p->g = g;
    p->threads = dev->threads;
    const int64_t sizes[CS_ARENA_COUNT_] = {cs_graph_n_params(g), cs_graph_n_params(g), cs_graph_n_params(g),
                                            cs_graph_n_buffers(g), cs_graph_n_params(g), cs_graph_n_buffers(g)};
    int ok = 1;
    for (int a = 0; a < CS_ARENA_COUNT_; a++) {
        ok &= (p->arena[a] = zalloc(sizes[a], sizeof(float))) != NULL;
    }
    p->act = zalloc(cs_graph_n_acts(g), sizeof(float));
    p->act_grad = zalloc(cs_graph_n_acts(g), sizeof(float));
    p->has_grad = zalloc(cs_graph_n_tensors(g), 1);
    p->node = zalloc(cs_graph_n_nodes(g), sizeof *p->node);
    ok &= p->act && p->act_grad && p->has_grad && p->node;
    if (!ok) {
        cpu_release(p);
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory for the arenas (%lld activations)",
                            (long long)cs_graph_n_acts(g));
    }

    if (assign_layouts(p, dev) || fuse_relus(p, dev)) {
        cpu_release(p);
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory for the blocked activations");
    }

    /* What each node saves, and the largest workspace any needs, at the full batch. */
    int64_t save_total = 0, argmax_total = 0, ws = 0;
    int64_t *save_at = zalloc(cs_graph_n_nodes(g), sizeof *save_at), *argmax_at = zalloc(cs_graph_n_nodes(g), sizeof *argmax_at);
    if (!save_at || !argmax_at) {
        free(save_at);
        free(argmax_at);
        cpu_release(p);
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory preparing the plan");
    }
    const int b = cs_graph_batch(g);
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        const cs_node *nd = cs_graph_node(g, i);
        const cs_tensor *x = cs_graph_tensor(g, nd->in[0]), *y = cs_graph_tensor(g, nd->out);
        node_state *st = &p->node[i];
        int64_t save = 0, need = 0;
        if (nd->op == CS_OP_CONV2D || nd->op == CS_OP_MAXPOOL) {
            st->geom = (conv_geom){.n = b, .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                                   .oc = y->shape[1], .k = nd->a.k, .stride = nd->a.stride, .pad = nd->a.pad,
                                   .groups = nd->op == CS_OP_CONV2D ? nd->a.groups : 1};
            conv_geom_finish(&st->geom);
        }
        switch (nd->op) {
        case CS_OP_CONV2D: {
            need = fast_conv2d_workspace(&st->geom, p->threads);
            if (!conv_on_dnnl(dev->conv)) {
                st->fold_bn = -1;
                break;
            }
            char why[256];
            int64_t dws = 0;
            if (dconv_create(&st->dc, &st->geom, nd->n_in > 2, is_blk(p, nd->in[0]) ? p->block : 0,
                             is_blk(p, nd->out) ? p->block : 0, !dev->no_wino,
                             st->fold_bn >= 0 ? p->node[st->fold_bn].act : -1, p->threads, &dws, why, sizeof why)) {
                free(save_at);
                free(argmax_at);
                cpu_release(p);
                return node_fail(err, g, i, "%s", why);
            }
            need = dws > need ? dws : need;
            break;
        }
        case CS_OP_BATCHNORM: save = batchnorm_save_size(x->shape[1]); break;
        case CS_OP_MAXPOOL:
            argmax_at[i] = argmax_total;
            argmax_total += y->size;
            break;
        case CS_OP_COSINE_LINEAR:
            save = cosine_linear_save_size(b, x->shape[1], y->shape[1]);
            need = fast_cosine_linear_workspace(b, x->shape[1], y->shape[1]);
            break;
        case CS_OP_L2NORM: save = l2norm_save_size(b); break;
        case CS_OP_SOFTMAX_XENT: save = softmax_xent_save_size(b, x->shape[1]); break;
        case CS_OP_COSINE_EMBED: save = cosine_embed_save_size(b); break;
        default: break;
        }
        save_at[i] = save ? save_total : -1;
        save_total += save;
        ws = need > ws ? need : ws;
    }
    p->save_pool = zalloc(save_total, sizeof(float));
    p->argmax_pool = zalloc(argmax_total, sizeof(int32_t));
    p->ws = zalloc(ws, sizeof(float));
    p->ws_size = ws;
    if (!p->save_pool || !p->argmax_pool || !p->ws) {
        free(save_at);
        free(argmax_at);
        cpu_release(p);
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory for %lld floats of scratch",
                            (long long)(save_total + argmax_total + ws));
    }
    for (int i = 0; i < cs_graph_n_nodes(g); i++) {
        if (save_at[i] >= 0)
            p->node[i].save = p->save_pool + save_at[i];
        if (cs_graph_node(g, i)->op == CS_OP_MAXPOOL)
            p->node[i].argmax = p->argmax_pool + argmax_at[i];
    }
    free(save_at);
    free(argmax_at);
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        if (p->node[i].fold_bn >= 0) {
            p->node[p->node[i].fold_bn].skip_eval = 1;
            p->elided_eval[cs_graph_node(g, i)->out] = 1;
        }
    *plan = p;
    return CS_OK;
}

/* ---- copies ---- */

int cpu_write(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err)
{
    (void)err;
    cpu_plan *p = plan;
    memcpy(p->arena[a] + offset, src, (size_t)count * sizeof *src);
    return CS_OK;
}

int cpu_read(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err)
{
    (void)err;
    cpu_plan *p = plan;
    memcpy(dst, p->arena[a] + offset, (size_t)count * sizeof *dst);
    return CS_OK;
}

/* Floats of tensor t over n rows (a tensor without a batch dimension: all of it). */
static int64_t rows_size(const cs_tensor *t, int n) { return t->batched ? n * cs_tensor_row(t) : t->size; }

/* The same for tensor id as this plan stores it (blocked: padding included). */
static int64_t stored_size(const cpu_plan *p, int id, int n)
{
    const cs_tensor *t = cs_graph_tensor(p->g, id);
    if (!is_blk(p, id))
        return rows_size(t, n);
    return blk_size(n, t->shape[1], t->shape[2] * t->shape[3], p->block);
}

static float *act_of(cpu_plan *p, int id)
{
    return is_blk(p, id) ? p->bact + p->blk_off[id] : p->act + cs_graph_tensor(p->g, id)->offset;
}

/* Where activation id's gradient is stored (the same layout as act_of). */
static float *grad_at(cpu_plan *p, int id)
{
    return is_blk(p, id) ? p->bgrad + p->blk_off[id] : p->act_grad + cs_graph_tensor(p->g, id)->offset;
}

int cpu_set_input(void *plan, int tensor, const float *src, int n, cs_error *err)
{
    (void)err;
    cpu_plan *p = plan;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    memcpy(p->act + t->offset, src, (size_t)rows_size(t, n) * sizeof *src);
    return CS_OK;
}

int cpu_read_tensor(void *plan, int tensor, float *dst, int n, cs_error *err)
{
    cpu_plan *p = plan;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    if (p->elided[tensor])
        return cs_error_set(err, CS_ERR_ARG, "cpu backend: tensor '%s' is not kept: the relu after it runs fused "
                            "(device option fuse=off keeps it)", t->name);
    if (p->last_eval && p->elided_eval[tensor])
        return cs_error_set(err, CS_ERR_ARG, "cpu backend: tensor '%s' is not computed at inference: the batch norm "
                            "after it is folded into its convolution (device option fuse=off keeps it)", t->name);
    if (is_blk(p, tensor)) {
        const cpu_par par = {p->threads, p->ws, p->ws_size};
        blk_to_plain(&par, dst, act_of(p, tensor), n, t->shape[1], t->shape[2] * t->shape[3], p->block);
        return CS_OK;
    }
    memcpy(dst, p->act + t->offset, (size_t)rows_size(t, n) * sizeof *dst);
    return CS_OK;
}

/* ---- forward ---- */

static float *tensor_data(cpu_plan *p, int id, float *params, float *buffers)
{
    const cs_tensor *t = cs_graph_tensor(p->g, id);
    switch (t->kind) {
    case CS_TENSOR_PARAM: return params + t->offset;
    case CS_TENSOR_BUFFER: return buffers + t->offset;
    default: return act_of(p, id);
    }
}

static int check_labels(const cpu_plan *p, int i, const float *labels, int n, int k, cs_error *err)
{
    for (int r = 0; r < n; r++)
        if (!(labels[r] >= 0 && labels[r] < k && labels[r] == floorf(labels[r])))
            return node_fail(err, p->g, i, "label %g in row %d of %s is not a class id in [0, %d)", labels[r], r,
                             cs_graph_tensor(p->g, cs_graph_node(p->g, i)->in[1])->name, k);
    return CS_OK;
}

/* A oneDNN convolution on n rows (a partial batch) may need more workspace
 * than the planned batch: the plan's workspace grows to fit before the call. */
static int fit_workspace(cpu_plan *p, const node_state *st, int n, cs_error *err)
{
    if (!st->dc)
        return CS_OK;
    int64_t need = dconv_ws_for(st->dc, n);
    if (need <= p->ws_size)
        return CS_OK; /* fits, or cannot be made: the call says why */
    float *ws = zalloc(need, sizeof(float));
    if (!ws)
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory (workspace of %lld floats)", (long long)need);
    free(p->ws);
    p->ws = ws;
    p->ws_size = need;
    return CS_OK;
}

static int node_forward(cpu_plan *p, int i, int n, int train, float *params, float *buffers, cs_error *err)
{
    if (cs_graph_node(p->g, i)->op == CS_OP_CONV2D && fit_workspace(p, &p->node[i], n, err))
        return CS_ERR_NOMEM;
    const cs_graph *g = p->g;
    const cs_node *nd = cs_graph_node(g, i);
    node_state *st = &p->node[i];
    const cpu_par par = {p->threads, p->ws, p->ws_size};
    float *in[CS_MAX_INPUTS] = {0};
    for (int j = 0; j < nd->n_in; j++)
        in[j] = tensor_data(p, nd->in[j], params, buffers);
    const cs_tensor *x = cs_graph_tensor(g, nd->in[0]), *y = cs_graph_tensor(g, nd->out);
    float *out = act_of(p, st->act ? st->act_out : nd->out);
    const int64_t count = stored_size(p, nd->in[0], n);
    const int blk = is_blk(p, nd->in[0]);
    const int hw = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    conv_geom geom = st->geom;
    geom.n = n;
    switch (nd->op) {
    case CS_OP_CONV2D:
        if (st->dc && !train && st->fold_bn >= 0) {
            const cs_node *bn = cs_graph_node(g, st->fold_bn);
            const node_state *bs = &p->node[st->fold_bn];
            float *bn_in[5];
            for (int j = 1; j < 5; j++)
                bn_in[j] = tensor_data(p, bn->in[j], params, buffers);
            char why[256];
            if (dconv_forward_folded(st->dc, &par, act_of(p, bs->act ? bs->act_out : bn->out), in[0], in[1],
                                     nd->n_in > 2 ? in[2] : NULL, bn_in[1], bn_in[2], bn_in[3], bn_in[4], bn->a.eps, n,
                                     why, sizeof why))
                return node_fail(err, g, i, "%s", why);
            break;
        }
        if (st->dc) {
            char why[256];
            if (dconv_forward(st->dc, &par, out, in[0], in[1], nd->n_in > 2 ? in[2] : NULL, n, why, sizeof why))
                return node_fail(err, g, i, "%s", why);
            break;
        }
        fast_conv2d_forward(&par, out, in[0], in[1], nd->n_in > 2 ? in[2] : NULL, &geom);
        break;
    case CS_OP_BATCHNORM:
        if (blk && !train) {
            blk_batchnorm_forward_eval(&par, out, in[0], in[1], in[2], in[3], in[4], n, x->shape[1], hw, p->block,
                                       nd->a.eps, st->act);
            break;
        }
        if (!train) {
            fast_batchnorm_forward_eval_act(&par, out, in[0], in[1], in[2], in[3], in[4], n, x->shape[1], hw,
                                            nd->a.eps, st->act);
            break;
        }
        if (p->has_comm && p->comm.sync_bn) {
            comm_call cc = {&p->comm, err, 0};
            if (sync_batchnorm_forward_train(&par, comm_reduce, &cc, out, st->save, in[3], in[4], in[0], in[1], in[2],
                                             n, x->shape[1], hw, blk ? p->block : 0, nd->a.eps, nd->a.momentum,
                                             st->act))
                return cc.failed ? CS_ERR : node_fail(err, g, i, "out of memory for synchronised batch norm");
            break;
        }
        if ((int64_t)n * hw < 2)
            return node_fail(err, g, i, "training needs more than one value per channel (%d rows of %dx%d)", n,
                             x->shape[2], x->shape[3]);
        if (blk)
            blk_batchnorm_forward_train(&par, out, st->save, in[3], in[4], in[0], in[1], in[2], n, x->shape[1], hw,
                                        p->block, nd->a.eps, nd->a.momentum, st->act);
        else
            fast_batchnorm_forward_train_act(&par, out, st->save, in[3], in[4], in[0], in[1], in[2], n, x->shape[1],
                                             hw, nd->a.eps, nd->a.momentum, st->act);
        break;
    case CS_OP_RELU: fast_relu_forward(&par, out, in[0], count); break;
    case CS_OP_RELU6: fast_relu6_forward(&par, out, in[0], count); break;
    case CS_OP_ADD: fast_add_forward_act(&par, out, in[0], in[1], count, st->act); break;
    case CS_OP_MAXPOOL: fast_maxpool_forward(&par, out, st->argmax, in[0], &geom); break;
    case CS_OP_AVGPOOL:
        if (blk)
            blk_avgpool_forward(&par, out, in[0], n, x->shape[1], hw, p->block);
        else
            fast_avgpool_forward(&par, out, in[0], n, x->shape[1], hw);
        break;
    case CS_OP_SLICE: fast_slice_forward(&par, out, in[0], n, x->shape[1], hw, nd->a.start, nd->a.count); break;
    case CS_OP_CONCAT:
        fast_concat_forward(&par, out, in[0], in[1], n, x->shape[1], cs_graph_tensor(g, nd->in[1])->shape[1], hw);
        break;
    case CS_OP_SHUFFLE: fast_shuffle_forward(&par, out, in[0], n, x->shape[1], hw, nd->a.groups); break;
    case CS_OP_LINEAR:
        fast_linear_forward(&par, out, in[0], in[1], nd->n_in > 2 ? in[2] : NULL, n, x->shape[1], y->shape[1]);
        break;
    case CS_OP_COSINE_LINEAR:
        fast_cosine_linear_forward(&par, out, st->save, in[0], in[1], in[2], n, x->shape[1], y->shape[1]);
        break;
    case CS_OP_L2NORM: fast_l2norm_forward(&par, out, st->save, in[0], n, x->shape[1]); break;
    case CS_OP_SOFTMAX_XENT: {
        int rc = check_labels(p, i, in[1], n, x->shape[1], err);
        if (rc)
            return rc;
        fast_softmax_xent_forward(&par, out, st->save, in[0], in[1], n, x->shape[1]);
        break;
    }
    case CS_OP_COSINE_EMBED: fast_cosine_embed_forward(&par, out, st->save, in[0], in[1], n, x->shape[1]); break;
    case CS_OP_COUNT_: break;
    }
    return CS_OK;
}

int cpu_forward(void *plan, int n, int flags, cs_error *err)
{
    cpu_plan *p = plan;
    int rc;
    const int train = flags & CS_FWD_TRAIN, frozen = flags & CS_FWD_FROZEN;
    float *params = p->arena[frozen ? CS_ARENA_FROZEN_PARAMS : CS_ARENA_PARAMS];
    float *buffers = p->arena[frozen ? CS_ARENA_FROZEN_BUFFERS : CS_ARENA_BUFFERS];
    p->last_eval = !train;
    for (int i = 0; i < cs_graph_n_nodes(p->g); i++) {
        if (p->node[i].fused || (!train && p->node[i].skip_eval))
            continue; /* ran inside the node before it */
        double t0 = p->profiling ? cs_now_s() : 0;
        if ((rc = node_forward(p, i, n, train, params, buffers, err)))
            return rc;
        if (p->profiling) {
            cs_op op = cs_graph_node(p->g, i)->op;
            p->prof_s[0][op] += cs_now_s() - t0;
            p->prof_calls[0][op]++;
            p->prof_flops[0][op] += n * cs_node_flops(p->g, i);
        }
    }
    return CS_OK;
}

/* ---- backward ---- */

/* Where the gradient of tensor id accumulates, or NULL when it needs none;
 * an activation's n rows are zeroed the first time it is asked for. */
static float *grad_of(cpu_plan *p, int id, int n)
{
    const cs_tensor *t = cs_graph_tensor(p->g, id);
    if (!t->needs_grad || t->kind == CS_TENSOR_BUFFER)
        return NULL;
    if (t->kind == CS_TENSOR_PARAM)
        return p->arena[CS_ARENA_GRADS] + t->offset;
    float *d = grad_at(p, id);
    if (!p->has_grad[id]) {
        const cpu_par par = {p->threads, p->ws, p->ws_size};
        fast_zero(&par, d, stored_size(p, id, n));
        p->has_grad[id] = 1;
    }
    return d;
}

static int node_backward(cpu_plan *p, int i, int n, cs_error *err)
{
    if (cs_graph_node(p->g, i)->op == CS_OP_CONV2D && fit_workspace(p, &p->node[i], n, err))
        return CS_ERR_NOMEM;
    const cs_graph *g = p->g;
    const cs_node *nd = cs_graph_node(g, i);
    node_state *st = &p->node[i];
    const cpu_par par = {p->threads, p->ws, p->ws_size};
    float *in[CS_MAX_INPUTS] = {0}, *din[CS_MAX_INPUTS] = {0};
    for (int j = 0; j < nd->n_in; j++) {
        in[j] = tensor_data(p, nd->in[j], p->arena[CS_ARENA_PARAMS], p->arena[CS_ARENA_BUFFERS]);
        din[j] = grad_of(p, nd->in[j], n);
    }
    const cs_tensor *x = cs_graph_tensor(g, nd->in[0]), *y = cs_graph_tensor(g, nd->out);
    const int eff = st->act ? st->act_out : nd->out; /* whose gradient flows in */
    const float *out = act_of(p, eff);
    const float *dout = grad_at(p, eff);
    const int64_t count = stored_size(p, nd->in[0], n);
    const int blk = is_blk(p, nd->in[0]);
    const int hw = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    conv_geom geom = st->geom;
    geom.n = n;
    switch (nd->op) {
    case CS_OP_CONV2D:
        if (st->dc) {
            char why[256];
            if (dconv_backward(st->dc, &par, din[0], din[1], nd->n_in > 2 ? din[2] : NULL, dout, in[0], in[1], n, why,
                               sizeof why))
                return node_fail(err, g, i, "%s", why);
            break;
        }
        fast_conv2d_backward(&par, din[0], din[1], nd->n_in > 2 ? din[2] : NULL, dout, in[0], in[1], &geom);
        break;
    case CS_OP_BATCHNORM:
        if (p->has_comm && p->comm.sync_bn) {
            comm_call cc = {&p->comm, err, 0};
            if (sync_batchnorm_backward(&par, comm_reduce, &cc, din[0], din[1], din[2], dout, in[0], st->save, in[1], n,
                                        x->shape[1], hw, blk ? p->block : 0, out, st->act))
                return cc.failed ? CS_ERR : node_fail(err, g, i, "out of memory for synchronised batch norm");
            break;
        }
        if (blk)
            blk_batchnorm_backward(&par, din[0], din[1], din[2], dout, in[0], st->save, in[1], n, x->shape[1], hw,
                                   p->block, out, st->act);
        else
            fast_batchnorm_backward_act(&par, din[0], din[1], din[2], dout, in[0], st->save, in[1], n, x->shape[1],
                                        hw, out, st->act);
        break;
    case CS_OP_RELU:
        if (din[0])
            fast_relu_backward(&par, din[0], dout, in[0], count);
        break;
    case CS_OP_RELU6:
        if (din[0])
            fast_relu6_backward(&par, din[0], dout, in[0], count);
        break;
    case CS_OP_ADD: fast_add_backward_act(&par, din[0], din[1], dout, out, count, st->act); break;
    case CS_OP_MAXPOOL:
        if (din[0])
            fast_maxpool_backward(&par, din[0], dout, st->argmax, &geom);
        break;
    case CS_OP_AVGPOOL:
        if (din[0] && blk)
            blk_avgpool_backward(&par, din[0], dout, n, x->shape[1], hw, p->block);
        else if (din[0])
            fast_avgpool_backward(&par, din[0], dout, n, x->shape[1], hw);
        break;
    case CS_OP_SLICE:
        if (din[0])
            fast_slice_backward(&par, din[0], dout, n, x->shape[1], hw, nd->a.start, nd->a.count);
        break;
    case CS_OP_CONCAT:
        fast_concat_backward(&par, din[0], din[1], dout, n, x->shape[1], cs_graph_tensor(g, nd->in[1])->shape[1], hw);
        break;
    case CS_OP_SHUFFLE:
        if (din[0])
            fast_shuffle_backward(&par, din[0], dout, n, x->shape[1], hw, nd->a.groups);
        break;
    case CS_OP_LINEAR:
        fast_linear_backward(&par, din[0], din[1], nd->n_in > 2 ? din[2] : NULL, dout, in[0], in[1], n, x->shape[1],
                             y->shape[1]);
        break;
    case CS_OP_COSINE_LINEAR:
        fast_cosine_linear_backward(&par, din[0], din[1], din[2], dout, st->save, in[2], n, x->shape[1],
                                    y->shape[1]);
        break;
    case CS_OP_L2NORM:
        if (din[0])
            fast_l2norm_backward(&par, din[0], dout, out, st->save, n, x->shape[1]);
        break;
    case CS_OP_SOFTMAX_XENT:
        if (din[0])
            fast_softmax_xent_backward(&par, din[0], dout[0], st->save, in[1], n, x->shape[1]);
        break;
    case CS_OP_COSINE_EMBED:
        if (din[0])
            fast_cosine_embed_backward(&par, din[0], dout[0], st->save, in[0], in[1], n, x->shape[1]);
        break;
    case CS_OP_COUNT_: break;
    }
    return CS_OK;
}

/* Tells the comm the gradients node i's backward finished. */
static void grads_ready_after(cpu_plan *p, int i)
{
    for (int k = p->ready_at[i]; k < p->ready_at[i + 1]; k++) {
        const cs_tensor *x = cs_graph_tensor(p->g, p->ready[k]);
        p->comm.grads_ready(p->comm.ctx, p->arena[CS_ARENA_GRADS] + x->offset, x->offset, x->size);
    }
}

int cpu_backward(void *plan, int n, cs_error *err)
{
    /* the front door allows backward only after a training forward of these n rows */
    cpu_plan *p = plan;
    const cs_graph *g = p->g;
    const cpu_par par = {p->threads, p->ws, p->ws_size};
    fast_zero(&par, p->arena[CS_ARENA_GRADS], cs_graph_n_params(g));
    memset(p->has_grad, 0, (size_t)cs_graph_n_tensors(g));
    for (int l = 0; l < cs_graph_n_losses(g); l++) {
        float *d = grad_of(p, cs_graph_loss(g, l), n);
        if (d && p->has_comm)
            d[0] += cs_graph_loss_weight(g, l) * p->comm.loss_scale;
        else if (d)
            d[0] += cs_graph_loss_weight(g, l);
    }
    /* A node whose output no gradient reached (a branch no loss depends on) is skipped. */
    for (int i = cs_graph_n_nodes(g) - 1; i >= 0; i--) {
        const node_state *st = &p->node[i];
        if (p->has_comm && p->comm.grads_ready && i + 1 < cs_graph_n_nodes(g))
            grads_ready_after(p, i + 1); /* every node from i + 1 on is done */
        if (st->fused || !p->has_grad[st->act ? st->act_out : cs_graph_node(g, i)->out])
            continue;
        double t0 = p->profiling ? cs_now_s() : 0;
        int rc = node_backward(p, i, n, err);
        if (rc)
            return rc;
        if (p->profiling) {
            cs_op op = cs_graph_node(g, i)->op;
            p->prof_s[1][op] += cs_now_s() - t0;
            p->prof_calls[1][op]++;
            /* the data and weight gradients: twice the forward's work */
            p->prof_flops[1][op] += 2 * n * cs_node_flops(g, i);
        }
    }
    if (p->has_comm && p->comm.grads_ready && cs_graph_n_nodes(g) > 0)
        grads_ready_after(p, 0);
    return CS_OK;
}

/* Per node, the parameters whose gradient is final after its backward:
 * after the backward of the first node (in execution order) that reads
 * them, as backward runs the nodes last to first. */
static int build_ready(cpu_plan *p, cs_error *err)
{
    const cs_graph *g = p->g;
    const int nn = cs_graph_n_nodes(g), nt = cs_graph_n_tensors(g);
    int *first = malloc(sizeof(int) * (size_t)(nt + 1));
    int *fill = calloc((size_t)nn + 1, sizeof(int));
    p->ready_at = calloc((size_t)nn + 2, sizeof(int));
    p->ready = malloc(sizeof(int) * (size_t)(nt + 1));
    if (!first || !fill || !p->ready_at || !p->ready) {
        free(first);
        free(fill);
        free(p->ready_at);
        free(p->ready);
        p->ready_at = p->ready = NULL;
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory in set_comm");
    }
    for (int t = 0; t < nt; t++)
        first[t] = -1;
    for (int i = nn - 1; i >= 0; i--) {
        const cs_node *nd = cs_graph_node(g, i);
        for (int j = 0; j < nd->n_in; j++)
            first[nd->in[j]] = i;
    }
    for (int t = 0; t < nt; t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind == CS_TENSOR_PARAM && x->needs_grad && first[t] >= 0)
            p->ready_at[first[t] + 1]++;
    }
    for (int i = 0; i < nn; i++)
        p->ready_at[i + 1] += p->ready_at[i];
    for (int t = 0; t < nt; t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind == CS_TENSOR_PARAM && x->needs_grad && first[t] >= 0)
            p->ready[p->ready_at[first[t]] + fill[first[t]]++] = t;
    }
    free(fill);
    free(first);
    return CS_OK;
}

int cpu_set_comm(void *plan, const cs_comm *comm, cs_error *err)
{
    cpu_plan *p = plan;
    p->has_comm = 0;
    if (!comm)
        return CS_OK;
    /* the runtime calls this every step: the tables once (the graph is the plan's for life) */
    if (!p->ready_at && build_ready(p, err))
        return CS_ERR_NOMEM;
    p->comm = *comm;
    p->has_comm = 1;
    return CS_OK;
}

/* ---- update ---- */

typedef struct sgd_pass {
    cpu_par par;
    float *param, *grad, *mom;
    const cs_sgd *opt;
    const int64_t (*frozen)[2]; /* sorted by offset */
    int n_frozen;
} sgd_pass;

/* SGD on [start, end) of the parameter arena, less the frozen ranges. */
static void sgd_run(const sgd_pass *s, int64_t start, int64_t end)
{
    int64_t at = start;
    for (int f = 0; f < s->n_frozen && at < end; f++) {
        const int64_t fs = s->frozen[f][0], fe = fs + s->frozen[f][1];
        if (fe <= at || fs >= end)
            continue;
        if (fs > at)
            fast_sgd_update(&s->par, s->param + at, s->grad + at, s->mom + at, fs - at, s->opt->lr,
                            s->opt->momentum, s->opt->weight_decay, s->opt->nesterov);
        at = fe;
    }
    if (at < end)
        fast_sgd_update(&s->par, s->param + at, s->grad + at, s->mom + at, end - at, s->opt->lr, s->opt->momentum,
                        s->opt->weight_decay, s->opt->nesterov);
}

static int by_offset(const void *a, const void *b)
{
    const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

int cpu_update(void *plan, const cs_sgd *opt, cs_error *err)
{
    cpu_plan *p = plan; /* the front door has checked opt and its frozen ranges */
    int64_t(*frozen)[2] = NULL;
    if (opt->n_frozen > 0) {
        frozen = malloc((size_t)opt->n_frozen * sizeof *frozen);
        if (!frozen)
            return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory in the SGD update");
        memcpy(frozen, opt->frozen, (size_t)opt->n_frozen * sizeof *frozen);
        qsort(frozen, (size_t)opt->n_frozen, sizeof *frozen, by_offset);
    }
    const sgd_pass s = {
        .par = {p->threads, p->ws, p->ws_size},
        .param = p->arena[CS_ARENA_PARAMS],
        .grad = p->arena[CS_ARENA_GRADS],
        .mom = p->arena[CS_ARENA_MOMENTUM],
        .opt = opt,
        .frozen = (const int64_t(*)[2])frozen,
        .n_frozen = opt->n_frozen,
    };
    /* one pass per run of adjacent trainable tensors (usually all of them) */
    int64_t start = 0, end = 0;
    for (int t = 0; t <= cs_graph_n_tensors(p->g); t++) {
        const cs_tensor *x = t < cs_graph_n_tensors(p->g) ? cs_graph_tensor(p->g, t) : NULL;
        if (x && (x->kind != CS_TENSOR_PARAM || !x->needs_grad))
            continue;
        if (x && x->offset == end) {
            end += x->size;
            continue;
        }
        sgd_run(&s, start, end);
        if (x) {
            start = x->offset;
            end = x->offset + x->size;
        }
    }
    free(frozen);
    return CS_OK;
}

int cpu_step(void *plan, int n, const cs_sgd *opt, cs_error *err)
{
    int rc = cpu_forward(plan, n, CS_FWD_TRAIN, err);
    if (rc == CS_OK)
        rc = cpu_backward(plan, n, err);
    if (rc == CS_OK)
        rc = cpu_update(plan, opt, err);
    return rc;
}

/* oneDNN's implementation names for the first convolution on it. */
static const char *first_impl(const cpu_plan *p)
{
    for (int i = 0; i < cs_graph_n_nodes(p->g); i++)
        if (p->node[i].dc)
            return dconv_impl(p->node[i].dc);
    return "none";
}

int cpu_profile(void *plan, char *report, size_t size, cs_error *err)
{
    (void)err;
    cpu_plan *p = plan;
    if (!report) {
        p->profiling = 1;
        memset(p->prof_s, 0, sizeof p->prof_s);
        memset(p->prof_calls, 0, sizeof p->prof_calls);
        memset(p->prof_flops, 0, sizeof p->prof_flops);
        return CS_OK;
    }
    double total = 0;
    for (int d = 0; d < 2; d++)
        for (int op = 0; op < CS_OP_COUNT_; op++)
            total += p->prof_s[d][op];
    size_t u = (size_t)snprintf(report, size, "%-14s %-8s %8s %10s %6s %9s\n", "op", "pass", "calls", "ms", "%",
                                "GFLOP/s");
    for (int d = 0; d < 2; d++)
        for (int op = 1; op < CS_OP_COUNT_ && u < size; op++) {
            if (!p->prof_calls[d][op])
                continue;
            double ms = 1e3 * p->prof_s[d][op];
            u += (size_t)snprintf(report + u, size - u, "%-14s %-8s %8lld %10.1f %6.1f", cs_op_name((cs_op)op),
                                  d ? "backward" : "forward", (long long)p->prof_calls[d][op], ms,
                                  total > 0 ? 100 * p->prof_s[d][op] / total : 0);
            if (u < size && p->prof_flops[d][op] > 0 && p->prof_s[d][op] > 0)
                u += (size_t)snprintf(report + u, size - u, " %9.1f", p->prof_flops[d][op] / p->prof_s[d][op] / 1e9);
            if (u < size)
                u += (size_t)snprintf(report + u, size - u, "\n");
        }
    if (u < size)
        u += (size_t)snprintf(report + u, size - u,
                              "wall time per op on the host (%d thread%s); the update step is not counted\n",
                              p->threads, p->threads == 1 ? "" : "s");
    int n4 = 0, nb = 0, nd = 0;
    for (int t = 0; t < cs_graph_n_tensors(p->g); t++) {
        const cs_tensor *x = cs_graph_tensor(p->g, t);
        n4 += x->kind == CS_TENSOR_ACT && x->ndim == 4;
        nb += is_blk(p, t);
    }
    for (int i = 0; i < cs_graph_n_nodes(p->g); i++)
        nd += p->node[i].dc != NULL;
    if (u < size && nd)
        u += (size_t)snprintf(report + u, size - u, "convolutions on oneDNN: %d (first: %s)\n", nd, first_impl(p));
    if (u < size)
        snprintf(report + u, size - u, "activations channel-blocked (nChw%dc): %d of %d 4-D\n", p->block, nb, n4);
    return CS_OK;
}
