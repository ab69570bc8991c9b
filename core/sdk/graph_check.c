/* graph_check.c: what every backend checks before it runs a graph: tensors consistent with their arenas, each node's inputs, attributes and output shape. */
#include <stdarg.h>
#include <stdio.h>

#include "cilscale/graph.h"
#include "sdk/graph_impl.h"

static int node_fail(const char *who, cs_error *err, const cs_graph *g, int i, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int node_fail(const char *who, cs_error *err, const cs_graph *g, int i, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cs_error_set(err, CS_ERR_ARG, "%s: node %d '%s' (%s): %s", who, i, g->nodes[i].name,
                        cs_op_name(g->nodes[i].op), what);
}

/* ---- checking the graph at prepare ---- */

/* The graph is taken as the builder makes it; these checks make sure that a
 * hand-made or damaged one is refused with a message rather than read out of
 * bounds. */

static int64_t kind_arena_size(const cs_graph *g, cs_tensor_kind kind)
{
    switch (kind) {
    case CS_TENSOR_PARAM: return g->n_params;
    case CS_TENSOR_BUFFER: return g->n_buffers;
    case CS_TENSOR_INPUT:
    case CS_TENSOR_ACT: return g->n_acts;
    }
    return -1;
}

static int check_tensors(const char *who, const cs_graph *g, cs_error *err)
{
    for (int t = 0; t < g->n_tensors; t++) {
        const cs_tensor *x = &g->tensors[t];
        int64_t size = 1;
        int ok = x->ndim >= 1 && x->ndim <= 4;
        for (int d = 0; ok && d < x->ndim; d++) {
            ok = x->shape[d] >= 0;
            size *= x->shape[d];
        }
        const int64_t arena = kind_arena_size(g, x->kind);
        if (!ok || size != x->size || size < 1 || arena < 0 || x->offset < 0 || x->offset + x->size > arena ||
            (x->batched && x->shape[0] != g->batch))
            return cs_error_set(err, CS_ERR_ARG,
                                "%s: tensor %d '%s': its kind, shape, size or offset is inconsistent "
                                "(a graph not made by the builder?)",
                                who, t, x->name);
    }
    return CS_OK;
}

/* t is an activation (or input) of ndim dims with dim 0 the batch. */
static int is_act(const cs_graph *g, const cs_tensor *t, int ndim)
{
    return (t->kind == CS_TENSOR_ACT || t->kind == CS_TENSOR_INPUT) && t->batched && t->ndim == ndim &&
           t->shape[0] == g->batch;
}

/* t has the given dims (ndim of them). */
static int has_shape(const cs_tensor *t, int ndim, int s0, int s1, int s2, int s3)
{
    const int want[4] = {s0, s1, s2, s3};
    if (t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != want[d])
            return 0;
    return 1;
}

static int is_param(const cs_tensor *t) { return t->kind == CS_TENSOR_PARAM; }

static int check_node(const char *who, const cs_graph *g, int i, cs_error *err)
{
    const cs_node *nd = &g->nodes[i];
    /* inputs each op takes: at least, at most */
    static const int min_in[CS_OP_COUNT_] = {
        [CS_OP_CONV2D] = 2, [CS_OP_BATCHNORM] = 5, [CS_OP_RELU] = 1, [CS_OP_RELU6] = 1, [CS_OP_ADD] = 2,
        [CS_OP_MAXPOOL] = 1, [CS_OP_AVGPOOL] = 1, [CS_OP_SLICE] = 1, [CS_OP_CONCAT] = 2, [CS_OP_SHUFFLE] = 1,
        [CS_OP_LINEAR] = 2, [CS_OP_COSINE_LINEAR] = 3, [CS_OP_L2NORM] = 1, [CS_OP_SOFTMAX_XENT] = 2,
        [CS_OP_COSINE_EMBED] = 2,
    };
    if ((int)nd->op <= 0 || nd->op >= CS_OP_COUNT_ || !min_in[nd->op])
        return node_fail(who, err, g, i, "op %d is not one %s runs", (int)nd->op, who);
    const int max_in = nd->op == CS_OP_CONV2D || nd->op == CS_OP_LINEAR ? 3 : min_in[nd->op];
    if (nd->n_in < min_in[nd->op] || nd->n_in > max_in)
        return node_fail(who, err, g, i, "%d inputs, expected %d%s", nd->n_in, min_in[nd->op],
                         max_in > min_in[nd->op] ? " or 3" : "");
    for (int j = 0; j < nd->n_in; j++) {
        const int id = nd->in[j];
        if (id < 0 || id >= g->n_tensors)
            return node_fail(who, err, g, i, "input %d is tensor %d, not one of the graph's %d", j, id, g->n_tensors);
        const cs_tensor *t = &g->tensors[id];
        if (t->kind == CS_TENSOR_ACT && (t->producer < 0 || t->producer >= i))
            return node_fail(who, err, g, i, "input %s is not produced by an earlier node", t->name);
    }
    if (nd->out < 0 || nd->out >= g->n_tensors || g->tensors[nd->out].kind != CS_TENSOR_ACT ||
        g->tensors[nd->out].producer != i)
        return node_fail(who, err, g, i, "its output is not an activation it produces");

    const cs_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const cs_tensor *in1 = nd->n_in > 1 ? &g->tensors[nd->in[1]] : NULL;
    const int b = g->batch;
    const char *shapes = "input and output shapes do not fit the op";
    switch (nd->op) {
    case CS_OP_CONV2D: {
        const int k = nd->a.k, s = nd->a.stride, p = nd->a.pad, grp = nd->a.groups;
        if (k < 1 || s < 1 || p < 0 || grp < 1)
            return node_fail(who, err, g, i, "k %d, stride %d, pad %d, groups %d: expected positive (pad >= 0)", k, s, p,
                             grp);
        if (!is_act(g, x, 4) || !is_act(g, y, 4))
            return node_fail(who, err, g, i, "%s", shapes);
        const int c = x->shape[1], oc = y->shape[1];
        if (c % grp || oc % grp)
            return node_fail(who, err, g, i, "%d input and %d output channels are not both divisible by %d groups", c, oc,
                             grp);
        if (!has_shape(y, 4, b, oc, cs_conv_out(x->shape[2], k, s, p), cs_conv_out(x->shape[3], k, s, p)) ||
            !is_param(in1) || !has_shape(in1, 4, oc, c / grp, k, k) ||
            (nd->n_in == 3 && (!is_param(&g->tensors[nd->in[2]]) || !has_shape(&g->tensors[nd->in[2]], 1, oc, 0, 0, 0))))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_BATCHNORM: {
        if (!is_act(g, x, 4) || !has_shape(y, 4, b, x->shape[1], x->shape[2], x->shape[3]))
            return node_fail(who, err, g, i, "%s", shapes);
        for (int j = 1; j < 5; j++) {
            const cs_tensor *t = &g->tensors[nd->in[j]];
            if (t->kind != (j < 3 ? CS_TENSOR_PARAM : CS_TENSOR_BUFFER) || t->size != x->shape[1])
                return node_fail(who, err, g, i, "%s is not a %s of %d values", t->name, j < 3 ? "parameter" : "buffer",
                                 x->shape[1]);
        }
        break;
    }
    case CS_OP_RELU:
    case CS_OP_RELU6:
        if (!is_act(g, x, x->ndim) || !is_act(g, y, y->ndim) || x->size != y->size)
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_ADD:
        if (!is_act(g, x, x->ndim) || !is_act(g, in1, in1->ndim) || !is_act(g, y, y->ndim) || x->size != y->size ||
            in1->size != y->size)
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_MAXPOOL: {
        const int k = nd->a.k, s = nd->a.stride, p = nd->a.pad;
        if (k < 1 || s < 1 || p < 0 || 2 * p > k)
            return node_fail(who, err, g, i, "k %d, stride %d, pad %d: expected k, stride >= 1 and pad <= k/2", k, s, p);
        if (!is_act(g, x, 4) ||
            !has_shape(y, 4, b, x->shape[1], cs_conv_out(x->shape[2], k, s, p), cs_conv_out(x->shape[3], k, s, p)))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_AVGPOOL:
        if (!is_act(g, x, 4) || !has_shape(y, 2, b, x->shape[1], 0, 0))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SLICE:
        if (!is_act(g, x, 4) || nd->a.start < 0 || nd->a.count < 1 || nd->a.start + nd->a.count > x->shape[1] ||
            !has_shape(y, 4, b, nd->a.count, x->shape[2], x->shape[3]))
            return node_fail(who, err, g, i, "channels [%d, %d) of %s: %s", nd->a.start, nd->a.start + nd->a.count,
                             x->name, shapes);
        break;
    case CS_OP_CONCAT:
        if (!is_act(g, x, 4) || !is_act(g, in1, 4) || x->shape[2] != in1->shape[2] ||
            x->shape[3] != in1->shape[3] ||
            !has_shape(y, 4, b, x->shape[1] + in1->shape[1], x->shape[2], x->shape[3]))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SHUFFLE:
        if (!is_act(g, x, 4) || nd->a.groups < 1 || x->shape[1] % nd->a.groups ||
            !has_shape(y, 4, b, x->shape[1], x->shape[2], x->shape[3]))
            return node_fail(who, err, g, i, "%d channels in %d groups: %s", x->shape[1], nd->a.groups, shapes);
        break;
    case CS_OP_LINEAR:
    case CS_OP_COSINE_LINEAR: {
        if (!is_act(g, x, 2) || !is_act(g, y, 2))
            return node_fail(who, err, g, i, "%s", shapes);
        const int f = x->shape[1], k = y->shape[1];
        const cs_tensor *third = nd->n_in > 2 ? &g->tensors[nd->in[2]] : NULL;
        if (!is_param(in1) || !has_shape(in1, 2, k, f, 0, 0) ||
            (third && (!is_param(third) || third->size != (nd->op == CS_OP_LINEAR ? k : 1))))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_L2NORM:
        if (!is_act(g, x, 2) || !has_shape(y, 2, b, x->shape[1], 0, 0))
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SOFTMAX_XENT:
        if (!is_act(g, x, 2) || in1->kind != CS_TENSOR_INPUT || !has_shape(in1, 1, b, 0, 0, 0) || y->size != 1 ||
            y->batched)
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_COSINE_EMBED:
        if (!is_act(g, x, 2) || !is_act(g, in1, 2) || x->shape[1] != in1->shape[1] || y->size != 1 || y->batched)
            return node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_COUNT_: break;
    }
    return CS_OK;
}

int cs_graph_check(const cs_graph *g, const char *who, cs_error *err)
{
    if (g->failed)
        return cs_error_set(err, CS_ERR_ARG, "%s: the graph failed to build: %s", who, g->err.msg);
    if (g->batch < 1 || g->n_losses < 0 || g->n_losses > (int)(sizeof g->losses / sizeof g->losses[0]))
        return cs_error_set(err, CS_ERR_ARG, "%s: graph with batch %d and %d losses: not a built graph",
                            who, g->batch, g->n_losses);
    int rc = check_tensors(who, g, err);
    for (int i = 0; rc == CS_OK && i < g->n_nodes; i++)
        rc = check_node(who, g, i, err);
    for (int l = 0; rc == CS_OK && l < g->n_losses; l++)
        if (g->losses[l] < 0 || g->losses[l] >= g->n_tensors || g->tensors[g->losses[l]].kind != CS_TENSOR_ACT ||
            g->tensors[g->losses[l]].size != 1)
            rc = cs_error_set(err, CS_ERR_ARG, "%s: loss %d is not a one-value activation", who, l);
    return rc;
}
