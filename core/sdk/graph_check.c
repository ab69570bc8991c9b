/* graph_check.c: cs_graph_check (graph.h), what the front door checks before a
 * backend prepares a graph: tensors consistent with their arenas, each node's
 * inputs and output, its shapes by the op table's rule (ops.c), the losses. */
#include <stdio.h>

#include "cilscale/graph.h"
#include "sdk/graph_impl.h"

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

static int check_node(const char *who, const cs_graph *g, int i, cs_error *err)
{
    const cs_node *nd = &g->nodes[i];
    const int min_in = cs_op_min_inputs(nd->op), max_in = cs_op_max_inputs(nd->op);
    if (!min_in)
        return cs_node_fail(who, err, g, i, "op %d is not one %s runs", (int)nd->op, who);
    if (nd->n_in < min_in || nd->n_in > max_in)
        return cs_node_fail(who, err, g, i, "%d inputs, expected %d%s", nd->n_in, min_in,
                            max_in > min_in ? " or 3" : "");
    for (int j = 0; j < nd->n_in; j++) {
        const int id = nd->in[j];
        if (id < 0 || id >= g->n_tensors)
            return cs_node_fail(who, err, g, i, "input %d is tensor %d, not one of the graph's %d", j, id,
                                g->n_tensors);
        const cs_tensor *t = &g->tensors[id];
        if (t->kind == CS_TENSOR_ACT && (t->producer < 0 || t->producer >= i))
            return cs_node_fail(who, err, g, i, "input %s is not produced by an earlier node", t->name);
    }
    if (nd->out < 0 || nd->out >= g->n_tensors || g->tensors[nd->out].kind != CS_TENSOR_ACT ||
        g->tensors[nd->out].producer != i)
        return cs_node_fail(who, err, g, i, "its output is not an activation it produces");
    return cs_op_check_shapes(who, g, i, err);
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
