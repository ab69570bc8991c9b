/* graph.h: the static network graph architectures build, and the builder API they build it with. */
#ifndef CILSCALE_GRAPH_H
#define CILSCALE_GRAPH_H

#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CS_NAME_MAX 96
#define CS_MAX_INPUTS 5 /* batch norm: x, weight, bias, running_mean, running_var */

/* Tensors are float32, row-major; activations are NCHW with N the batch the
 * graph was built for (a run may use fewer rows), or [N, F] after flatten,
 * or [1] for a loss. */
typedef enum cs_tensor_kind {
    CS_TENSOR_INPUT = 0,  /* fed each batch: images [N,C,H,W], labels [N] (class ids as floats), targets */
    CS_TENSOR_PARAM = 1,  /* trainable; lives in the parameter arena, with a gradient and momentum */
    CS_TENSOR_BUFFER = 2, /* state that is not trained (batch-norm running mean / var) */
    CS_TENSOR_ACT = 3,    /* produced by a node */
} cs_tensor_kind;

/* How a parameter starts (the same rules as torchvision's constructors). */
typedef enum cs_init {
    CS_INIT_ZERO = 0,
    CS_INIT_ONE,
    CS_INIT_KAIMING_OUT, /* normal(0, sqrt(2 / fan_out)): conv, mode='fan_out', relu */
    CS_INIT_UNIFORM_FAN_IN, /* uniform(+-1/sqrt(fan_in)): nn.Linear's default (weight and bias) */
    CS_INIT_NORMAL_001,  /* normal(0, 0.01): MobileNetV2's classifier */
    CS_INIT_CONST,       /* init_value (the cosine classifier's scale) */
} cs_init;

typedef struct cs_tensor {
    char name[CS_NAME_MAX]; /* torchvision state_dict name for parameters: "layer1.0.conv1.weight" */
    cs_tensor_kind kind;
    int ndim;
    int shape[4];
    int64_t size;    /* elements */
    int64_t offset;  /* elements from the start of its arena (params, buffers or activations) */
    int producer;    /* node index, or -1 */
    int needs_grad;  /* a gradient flows into it (params: trainable) */
    int batched;     /* dim 0 is the batch: a run over n rows touches n * (size / shape[0]) */
    cs_init init;
    float init_value;
    int fan_in, fan_out; /* for the initialisers */
} cs_tensor;

/* The ops, defined once: enum name, id (stable: part of the ABI), printed
 * name, inputs (at least, at most).
 * The enum, cs_op_name, the graph check, the FLOP counts (ops.c) and every
 * backend's kernel table follow this list; docs/design.md ("Adding an op")
 * lists what a new line needs elsewhere.
 *   CONV2D         in: x, weight[, bias]; attrs: k, stride, pad, groups
 *   BATCHNORM      in: x, weight, bias, running_mean, running_var; attrs: eps, momentum
 *   RELU, RELU6    in: x
 *   ADD            in: a, b (same shape)
 *   MAXPOOL        in: x; attrs: k, stride, pad
 *   AVGPOOL        global average pool: [N,C,H,W] -> [N,C]
 *   SLICE          channels [start, start + count)
 *   CONCAT         channel concat of a and b
 *   SHUFFLE        channel shuffle with attrs.groups (ShuffleNet)
 *   LINEAR         in: x[N,F], weight[K,F][, bias[K]] -> [N,K]
 *   COSINE_LINEAR  in: x[N,F], weight[K,F], scale[1] -> scale * cos(x, w_k)
 *   L2NORM         rows of [N,F] to unit length
 *   SOFTMAX_XENT   in: logits[N,K], labels[N] -> mean cross-entropy [1]
 *   COSINE_EMBED   in: a[N,F], b[N,F] -> mean(1 - cos(a_i, b_i)) [1]; b gets no gradient */
#define CS_OP_LIST(X)                           \
    X(CONV2D, 1, "conv2d", 2, 3)                \
    X(BATCHNORM, 2, "batchnorm", 5, 5)          \
    X(RELU, 3, "relu", 1, 1)                    \
    X(RELU6, 4, "relu6", 1, 1)                  \
    X(ADD, 5, "add", 2, 2)                      \
    X(MAXPOOL, 6, "maxpool", 1, 1)              \
    X(AVGPOOL, 7, "avgpool", 1, 1)              \
    X(SLICE, 8, "slice", 1, 1)                  \
    X(CONCAT, 9, "concat", 2, 2)                \
    X(SHUFFLE, 10, "shuffle", 1, 1)             \
    X(LINEAR, 11, "linear", 2, 3)               \
    X(COSINE_LINEAR, 12, "cosine_linear", 3, 3) \
    X(L2NORM, 13, "l2norm", 1, 1)               \
    X(SOFTMAX_XENT, 14, "softmax_xent", 2, 2)   \
    X(COSINE_EMBED, 15, "cosine_embed", 2, 2)

#define CS_OP_ENUM_(id, num, name, min_in, max_in) CS_OP_##id = num,
typedef enum cs_op {
    CS_OP_LIST(CS_OP_ENUM_)
    CS_OP_COUNT_ /* one past the last: ids are 1 .. CS_OP_COUNT_ - 1 */
} cs_op;
#undef CS_OP_ENUM_

typedef struct cs_node {
    cs_op op;
    char name[CS_NAME_MAX];
    int in[CS_MAX_INPUTS];
    int n_in;
    int out;
    struct {
        int k, stride, pad, groups; /* conv, pools, shuffle (groups) */
        int start, count;           /* slice */
        float eps, momentum;        /* batch norm */
    } a;
} cs_node;

/* The graph is opaque: plugins read it through the accessors below and build
 * it through the builder calls, so its container can change without an ABI
 * bump. The records it hands out (cs_tensor, cs_node) are part of the ABI. */
typedef struct cs_graph cs_graph;

cs_graph *cs_graph_new(int batch);
void cs_graph_free(cs_graph *g);
/* 0 when every builder call succeeded, else the first error (copied to err). */
int cs_graph_status(const cs_graph *g, cs_error *err);

/* Name scope: cs_graph_scope(g, "layer%d.%d", s, b) ... cs_graph_scope(g, NULL) */
void cs_graph_scope(cs_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- builder: each returns the output tensor id, or -1 (and records why) ----
 * Any input id of -1 makes the call return -1 silently, so a builder can run
 * to its end and check cs_graph_status once. Names are relative to the scope. */
int cs_input(cs_graph *g, const char *name, int c, int h, int w); /* [N,C,H,W] */
int cs_input_vec(cs_graph *g, const char *name, int f);           /* [N,F] (f = 0: labels [N]) */
int cs_conv2d(cs_graph *g, const char *name, int x, int out_c, int k, int stride, int pad, int groups, int bias);
int cs_batchnorm(cs_graph *g, const char *name, int x);
int cs_relu(cs_graph *g, int x);
int cs_relu6(cs_graph *g, int x);
int cs_add(cs_graph *g, int a, int b);
int cs_maxpool(cs_graph *g, int x, int k, int stride, int pad);
int cs_avgpool(cs_graph *g, int x);
int cs_slice(cs_graph *g, int x, int start, int count);
int cs_concat(cs_graph *g, int a, int b);
int cs_shuffle(cs_graph *g, int x, int groups);
int cs_linear(cs_graph *g, const char *name, int x, int out_f, int bias, cs_init init);
int cs_cosine_linear(cs_graph *g, const char *name, int x, int out_f, float scale0);
int cs_l2norm(cs_graph *g, int x);
int cs_softmax_xent(cs_graph *g, int logits, int labels);
int cs_cosine_embed(cs_graph *g, int a, int b);
/* Marks a [1] tensor as a loss term with a weight (changeable later). */
int cs_graph_add_loss(cs_graph *g, int t, float weight);
int cs_graph_set_loss_weight(cs_graph *g, int t, float weight);

/* ---- reading a graph (every plugin reads it this way) ---- */
int cs_graph_batch(const cs_graph *g);       /* the batch it was built for */
int cs_graph_n_tensors(const cs_graph *g);
int cs_graph_n_nodes(const cs_graph *g);     /* nodes are in execution order */
/* Tensor id / node index in range, else NULL. */
const cs_tensor *cs_graph_tensor(const cs_graph *g, int id);
const cs_node *cs_graph_node(const cs_graph *g, int i);
/* Arena sizes, in floats: parameters (and their gradients and momentum),
 * buffers (batch-norm statistics), activations. */
int64_t cs_graph_n_params(const cs_graph *g);
int64_t cs_graph_n_buffers(const cs_graph *g);
int64_t cs_graph_n_acts(const cs_graph *g);
/* The loss terms: tensor id and weight of term i (the total loss is the
 * weighted sum), or -1 / 0 when i is out of range. */
int cs_graph_n_losses(const cs_graph *g);
int cs_graph_loss(const cs_graph *g, int i);
float cs_graph_loss_weight(const cs_graph *g, int i);
/* Marks a parameter as fixed (no gradient, no update) or trainable again. */
int cs_graph_set_trainable(cs_graph *g, int t, int trainable);

/* Lookups */
int cs_graph_find(const cs_graph *g, const char *name); /* tensor id or -1 */
int64_t cs_graph_param_count(const cs_graph *g);       /* trainable elements */
const char *cs_op_name(cs_op op); /* "conv2d", or "?" for no op */
/* Inputs op takes (at least, at most); 0 for no op. */
int cs_op_min_inputs(cs_op op);
int cs_op_max_inputs(cs_op op);
/* Forward multiply-adds x 2 of node i per image (one row of the batch):
 * convolutions and linear layers; 0 for the other ops. */
double cs_node_flops(const cs_graph *g, int i);

/* What a backend checks in prepare before it trusts a graph: every tensor
 * consistent with its arena, every node's inputs, attributes and output
 * shape, the losses. Messages start with who ("cpu backend") and name the
 * node. */
int cs_graph_check(const cs_graph *g, const char *who, cs_error *err);

/* Forward multiply-adds x 2 per image of the convolutions and linear layers
 * (what "GFLOP/s" in benchmarks counts; the rest is a few percent). */
double cs_graph_flops_per_image(const cs_graph *g);

/* Elements of one row of a batched tensor (size / shape[0]), or size. */
int64_t cs_tensor_row(const cs_tensor *t);

/* Initialises every parameter and buffer as its cs_init says, into arenas of
 * g->n_params and g->n_buffers floats. Each tensor draws from its own stream,
 * keyed by its name, so adding a tensor (a bigger classifier) leaves the
 * others' values unchanged. */
void cs_graph_init(const cs_graph *g, uint64_t seed, float *params, float *buffers);

/* Output height/width of a conv or pool, as PyTorch computes it. */
int cs_conv_out(int in, int k, int stride, int pad);

#ifdef __cplusplus
}
#endif
#endif
