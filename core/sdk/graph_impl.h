/* graph_impl.h: the graph's container, private to the SDK (graph.c,
 * graph_check.c). Plugins and the runtime read a graph only through graph.h's
 * accessors; white-box tests may include this to build broken graphs. */
#ifndef CILSCALE_SDK_GRAPH_IMPL_H
#define CILSCALE_SDK_GRAPH_IMPL_H

#include "cilscale/graph.h"

#define CS_MAX_LOSSES 8

struct cs_graph {
    cs_tensor *tensors;
    int n_tensors, cap_tensors;
    cs_node *nodes; /* in execution order: the builder adds them topologically */
    int n_nodes, cap_nodes;
    int batch;
    int64_t n_params, n_buffers, n_acts; /* arena sizes, in floats */
    int losses[CS_MAX_LOSSES];        /* loss tensors; the total loss is sum weight_i * loss_i */
    float loss_weights[CS_MAX_LOSSES];
    int n_losses;
    cs_error err;         /* the first builder error; later builder calls do nothing */
    int failed;
    char scope[CS_NAME_MAX]; /* prefix for names: "layer1.0" */
};

/* ops.c, for graph_check.c: a node's failure, "who: node i 'name' (op): what",
 * and node i's shapes checked by its op's rule. */
int cs_node_fail(const char *who, cs_error *err, const cs_graph *g, int i, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int cs_op_check_shapes(const char *who, const cs_graph *g, int i, cs_error *err);

#endif
