/* ops.c: the op table (graph.h's CS_OP_LIST): each op's name and input count,
 * its shape rule (what cs_graph_check accepts for its inputs, attributes and
 * output) and its FLOP count (what benchmarks and profiles count). */
#include <stdarg.h>
#include <stdio.h>

#include "cilscale/graph.h"
#include "sdk/graph_impl.h"

#define CS_OP_INFO_(id, num, nm, lo, hi) [CS_OP_##id] = {nm, lo, hi},
static const struct {
    const char *name;
    int min_in, max_in;
} op_info[CS_OP_COUNT_] = {CS_OP_LIST(CS_OP_INFO_)};
#undef CS_OP_INFO_

static int known(cs_op op) { return (int)op > 0 && op < CS_OP_COUNT_; }
const char *cs_op_name(cs_op op) { return known(op) ? op_info[op].name : "?"; }
int cs_op_min_inputs(cs_op op) { return known(op) ? op_info[op].min_in : 0; }
int cs_op_max_inputs(cs_op op) { return known(op) ? op_info[op].max_in : 0; }

/* "who: node 3 'layer1.0.conv1' (conv2d): what" */
int cs_node_fail(const char *who, cs_error *err, const cs_graph *g, int i, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cs_error_set(err, CS_ERR_ARG, "%s: node %d '%s' (%s): %s", who, i, g->nodes[i].name,
                        cs_op_name(g->nodes[i].op), what);
}

/* ---- shape rules ---- */

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

int cs_op_check_shapes(const char *who, const cs_graph *g, int i, cs_error *err)
{
    const cs_node *nd = &g->nodes[i];
    const cs_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const cs_tensor *in1 = nd->n_in > 1 ? &g->tensors[nd->in[1]] : NULL;
    const int b = g->batch;
    const char *shapes = "input and output shapes do not fit the op";
    switch (nd->op) {
    case CS_OP_CONV2D: {
        const int k = nd->a.k, s = nd->a.stride, p = nd->a.pad, grp = nd->a.groups;
        if (k < 1 || s < 1 || p < 0 || grp < 1)
            return cs_node_fail(who, err, g, i, "k %d, stride %d, pad %d, groups %d: expected positive (pad >= 0)", k, s, p,
                             grp);
        if (!is_act(g, x, 4) || !is_act(g, y, 4))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        const int c = x->shape[1], oc = y->shape[1];
        if (c % grp || oc % grp)
            return cs_node_fail(who, err, g, i, "%d input and %d output channels are not both divisible by %d groups", c, oc,
                             grp);
        if (!has_shape(y, 4, b, oc, cs_conv_out(x->shape[2], k, s, p), cs_conv_out(x->shape[3], k, s, p)) ||
            !is_param(in1) || !has_shape(in1, 4, oc, c / grp, k, k) ||
            (nd->n_in == 3 && (!is_param(&g->tensors[nd->in[2]]) || !has_shape(&g->tensors[nd->in[2]], 1, oc, 0, 0, 0))))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_BATCHNORM: {
        if (!is_act(g, x, 4) || !has_shape(y, 4, b, x->shape[1], x->shape[2], x->shape[3]))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        for (int j = 1; j < 5; j++) {
            const cs_tensor *t = &g->tensors[nd->in[j]];
            if (t->kind != (j < 3 ? CS_TENSOR_PARAM : CS_TENSOR_BUFFER) || t->size != x->shape[1])
                return cs_node_fail(who, err, g, i, "%s is not a %s of %d values", t->name, j < 3 ? "parameter" : "buffer",
                                 x->shape[1]);
        }
        break;
    }
    case CS_OP_RELU:
    case CS_OP_RELU6:
        if (!is_act(g, x, x->ndim) || !is_act(g, y, y->ndim) || x->size != y->size)
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_ADD:
        if (!is_act(g, x, x->ndim) || !is_act(g, in1, in1->ndim) || !is_act(g, y, y->ndim) || x->size != y->size ||
            in1->size != y->size)
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_MAXPOOL: {
        const int k = nd->a.k, s = nd->a.stride, p = nd->a.pad;
        if (k < 1 || s < 1 || p < 0 || 2 * p > k)
            return cs_node_fail(who, err, g, i, "k %d, stride %d, pad %d: expected k, stride >= 1 and pad <= k/2", k, s, p);
        if (!is_act(g, x, 4) ||
            !has_shape(y, 4, b, x->shape[1], cs_conv_out(x->shape[2], k, s, p), cs_conv_out(x->shape[3], k, s, p)))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_AVGPOOL:
        if (!is_act(g, x, 4) || !has_shape(y, 2, b, x->shape[1], 0, 0))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SLICE:
        if (!is_act(g, x, 4) || nd->a.start < 0 || nd->a.count < 1 || nd->a.start + nd->a.count > x->shape[1] ||
            !has_shape(y, 4, b, nd->a.count, x->shape[2], x->shape[3]))
            return cs_node_fail(who, err, g, i, "channels [%d, %d) of %s: %s", nd->a.start, nd->a.start + nd->a.count,
                             x->name, shapes);
        break;
    case CS_OP_CONCAT:
        if (!is_act(g, x, 4) || !is_act(g, in1, 4) || x->shape[2] != in1->shape[2] ||
            x->shape[3] != in1->shape[3] ||
            !has_shape(y, 4, b, x->shape[1] + in1->shape[1], x->shape[2], x->shape[3]))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SHUFFLE:
        if (!is_act(g, x, 4) || nd->a.groups < 1 || x->shape[1] % nd->a.groups ||
            !has_shape(y, 4, b, x->shape[1], x->shape[2], x->shape[3]))
            return cs_node_fail(who, err, g, i, "%d channels in %d groups: %s", x->shape[1], nd->a.groups, shapes);
        break;
    case CS_OP_LINEAR:
    case CS_OP_COSINE_LINEAR: {
        if (!is_act(g, x, 2) || !is_act(g, y, 2))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        const int f = x->shape[1], k = y->shape[1];
        const cs_tensor *third = nd->n_in > 2 ? &g->tensors[nd->in[2]] : NULL;
        if (!is_param(in1) || !has_shape(in1, 2, k, f, 0, 0) ||
            (third && (!is_param(third) || third->size != (nd->op == CS_OP_LINEAR ? k : 1))))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    }
    case CS_OP_L2NORM:
        if (!is_act(g, x, 2) || !has_shape(y, 2, b, x->shape[1], 0, 0))
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_SOFTMAX_XENT:
        if (!is_act(g, x, 2) || in1->kind != CS_TENSOR_INPUT || !has_shape(in1, 1, b, 0, 0, 0) || y->size != 1 ||
            y->batched)
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_COSINE_EMBED:
        if (!is_act(g, x, 2) || !is_act(g, in1, 2) || x->shape[1] != in1->shape[1] || y->size != 1 || y->batched)
            return cs_node_fail(who, err, g, i, "%s", shapes);
        break;
    case CS_OP_COUNT_: break;
    }
    return CS_OK;
}


/* ---- FLOPs ---- */

double cs_node_flops(const cs_graph *g, int i)
{
    if (i < 0 || i >= g->n_nodes)
        return 0;
    const cs_node *n = &g->nodes[i];
    const cs_tensor *out = &g->tensors[n->out];
    switch (n->op) {
    case CS_OP_CONV2D: {
        const cs_tensor *w = &g->tensors[n->in[1]];
        /* each output element: Ci/groups * k * k multiply-adds */
        return 2.0 * (double)cs_tensor_row(out) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
    }
    case CS_OP_LINEAR:
    case CS_OP_COSINE_LINEAR: {
        const cs_tensor *w = &g->tensors[n->in[1]];
        return 2.0 * (double)w->shape[0] * (double)w->shape[1];
    }
    default: return 0;
    }
}
