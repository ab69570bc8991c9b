/* graph.c: building the static graph: tensors, nodes, shape checks, arena layout, initialisation. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/graph.h"
#include "cilscale/rng.h"
#include "sdk/graph_impl.h"

cs_graph *cs_graph_new(int batch)
{
    if (batch < 1)
        return NULL;
    cs_graph *g = calloc(1, sizeof *g);
    if (g)
        g->batch = batch;
    return g;
}

void cs_graph_free(cs_graph *g)
{
    if (!g)
        return;
    free(g->tensors);
    free(g->nodes);
    free(g);
}

int cs_graph_status(const cs_graph *g, cs_error *err)
{
    if (!g)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory building the graph");
    if (g->failed) {
        if (err)
            *err = g->err;
        return g->err.status ? g->err.status : CS_ERR;
    }
    return CS_OK;
}

static int fail(cs_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cs_graph *g, const char *fmt, ...)
{
    if (!g->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
        va_end(ap);
        g->err.status = CS_ERR_ARG;
        g->failed = 1;
    }
    return -1;
}

void cs_graph_scope(cs_graph *g, const char *fmt, ...)
{
    if (!fmt) {
        g->scope[0] = '\0';
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->scope, sizeof g->scope, fmt, ap);
    va_end(ap);
}

static void full_name(cs_graph *g, const char *name, char *out)
{
    int n;
    if (g->scope[0] && name && name[0])
        n = snprintf(out, CS_NAME_MAX, "%s.%s", g->scope, name);
    else
        n = snprintf(out, CS_NAME_MAX, "%s", name && name[0] ? name : g->scope);
    if (n >= CS_NAME_MAX)
        fail(g, "name %s...: longer than %d characters", out, CS_NAME_MAX - 1);
}

int64_t cs_tensor_row(const cs_tensor *t) { return t->batched ? t->size / t->shape[0] : t->size; }

static int add_tensor(cs_graph *g, const char *name, cs_tensor_kind kind, int ndim, const int *shape, int batched)
{
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 64;
        cs_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t)
            return fail(g, "out of memory building the graph");
        g->tensors = t;
        g->cap_tensors = cap;
    }
    cs_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = ndim;
    t->size = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->size *= shape[i];
    }
    t->batched = batched;
    t->producer = -1;
    switch (kind) {
    case CS_TENSOR_PARAM:
        t->offset = g->n_params;
        g->n_params += t->size;
        t->needs_grad = 1;
        break;
    case CS_TENSOR_BUFFER:
        t->offset = g->n_buffers;
        g->n_buffers += t->size;
        break;
    default:
        t->offset = g->n_acts;
        g->n_acts += t->size;
        break;
    }
    return g->n_tensors++;
}

static int add_param(cs_graph *g, const char *layer, const char *suffix, cs_tensor_kind kind, int ndim,
                     const int *shape, cs_init init, int fan_in, int fan_out)
{
    char name[CS_NAME_MAX];
    if (snprintf(name, sizeof name, "%s.%s", layer, suffix) >= (int)sizeof name)
        return fail(g, "%s.%s: name longer than %d characters", layer, suffix, CS_NAME_MAX - 1);
    if (cs_graph_find(g, name) >= 0)
        return fail(g, "%s: a tensor of that name already exists (two layers share a name?)", name);
    int id = add_tensor(g, name, kind, ndim, shape, 0);
    if (id >= 0) {
        g->tensors[id].init = init;
        g->tensors[id].fan_in = fan_in;
        g->tensors[id].fan_out = fan_out;
    }
    return id;
}

/* Adds a node with output tensor of the given shape; returns the output id. */
static int add_node(cs_graph *g, cs_op op, const char *name, const int *in, int n_in, int ndim, const int *shape,
                    int batched)
{
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        cs_node *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n)
            return fail(g, "out of memory building the graph");
        g->nodes = n;
        g->cap_nodes = cap;
    }
    /* Activations are named after their node and its index; a long layer name
     * loses its end here, which only shows in messages. */
    char tname[CS_NAME_MAX + 16];
    snprintf(tname, sizeof tname, "%.*s:%d", CS_NAME_MAX - 13, name, g->n_nodes);
    int out = add_tensor(g, tname, CS_TENSOR_ACT, ndim, shape, batched);
    if (out < 0)
        return -1;
    cs_node *nd = &g->nodes[g->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    snprintf(nd->name, sizeof nd->name, "%s", name);
    nd->n_in = n_in;
    int needs = 0;
    for (int i = 0; i < n_in; i++) {
        nd->in[i] = in[i];
        needs |= g->tensors[in[i]].needs_grad;
    }
    nd->out = out;
    g->tensors[out].producer = g->n_nodes;
    g->tensors[out].needs_grad = needs;
    g->n_nodes++;
    return out;
}

int cs_conv_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* "[N,64,8,8]" */
static const char *shape_str(const cs_tensor *t, char *buf, size_t size)
{
    size_t u = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && u < size; i++)
        u += (size_t)snprintf(buf + u, size - u, i ? ",%d" : "%d", t->shape[i]);
    if (u < size)
        snprintf(buf + u, size - u, "]");
    return buf;
}

static int valid(const cs_graph *g, int x) { return !g->failed && x >= 0 && x < g->n_tensors; }

/* An NCHW activation or input: returns 0, or fails naming the op. */
static int need_4d(cs_graph *g, const char *op, const char *name, int x)
{
    const cs_tensor *t = &g->tensors[x];
    char b[64];
    if (t->ndim != 4 || !t->batched)
        return fail(g, "%s %s: input %s is %s, expected [N,C,H,W]", op, name, t->name, shape_str(t, b, sizeof b));
    return 0;
}

static int need_2d(cs_graph *g, const char *op, const char *name, int x)
{
    const cs_tensor *t = &g->tensors[x];
    char b[64];
    if (t->ndim != 2 || !t->batched)
        return fail(g, "%s %s: input %s is %s, expected [N,F]", op, name, t->name, shape_str(t, b, sizeof b));
    return 0;
}

int cs_input(cs_graph *g, const char *name, int c, int h, int w)
{
    if (g->failed)
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (c < 1 || h < 1 || w < 1)
        return fail(g, "input %s: shape %dx%dx%d, expected positive sizes", full, c, h, w);
    int shape[4] = {g->batch, c, h, w};
    return add_tensor(g, full, CS_TENSOR_INPUT, 4, shape, 1);
}

int cs_input_vec(cs_graph *g, const char *name, int f)
{
    if (g->failed)
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (f < 0)
        return fail(g, "input %s: %d features, expected >= 0", full, f);
    int shape[2] = {g->batch, f};
    return add_tensor(g, full, CS_TENSOR_INPUT, f ? 2 : 1, shape, 1);
}

int cs_conv2d(cs_graph *g, const char *name, int x, int out_c, int k, int stride, int pad, int groups, int bias)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (need_4d(g, "conv2d", full, x))
        return -1;
    const cs_tensor *t = &g->tensors[x];
    int c = t->shape[1], h = t->shape[2], w = t->shape[3];
    if (out_c < 1 || k < 1 || stride < 1 || pad < 0 || groups < 1)
        return fail(g, "conv2d %s: out_c %d, k %d, stride %d, pad %d, groups %d: expected positive (pad >= 0)", full,
                    out_c, k, stride, pad, groups);
    if (c % groups || out_c % groups)
        return fail(g, "conv2d %s: %d input and %d output channels are not both divisible by %d groups", full, c,
                    out_c, groups);
    int ho = cs_conv_out(h, k, stride, pad), wo = cs_conv_out(w, k, stride, pad);
    if (ho < 1 || wo < 1)
        return fail(g, "conv2d %s: a %dx%d input is too small for k=%d stride=%d pad=%d", full, h, w, k, stride, pad);
    int ws[4] = {out_c, c / groups, k, k};
    int wt = add_param(g, full, "weight", CS_TENSOR_PARAM, 4, ws, CS_INIT_KAIMING_OUT, c / groups * k * k,
                       out_c * k * k);
    int bt = -1;
    if (bias) {
        int bs[1] = {out_c};
        bt = add_param(g, full, "bias", CS_TENSOR_PARAM, 1, bs, CS_INIT_ZERO, c / groups * k * k, out_c);
    }
    if (g->failed)
        return -1;
    int in[3] = {x, wt, bt};
    int shape[4] = {g->batch, out_c, ho, wo};
    int out = add_node(g, CS_OP_CONV2D, full, in, bias ? 3 : 2, 4, shape, 1);
    if (out >= 0) {
        cs_node *n = &g->nodes[g->n_nodes - 1];
        n->a.k = k;
        n->a.stride = stride;
        n->a.pad = pad;
        n->a.groups = groups;
    }
    return out;
}

int cs_batchnorm(cs_graph *g, const char *name, int x)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (need_4d(g, "batchnorm", full, x))
        return -1;
    int c = g->tensors[x].shape[1];
    int cs[1] = {c};
    int wt = add_param(g, full, "weight", CS_TENSOR_PARAM, 1, cs, CS_INIT_ONE, 0, 0);
    int bt = add_param(g, full, "bias", CS_TENSOR_PARAM, 1, cs, CS_INIT_ZERO, 0, 0);
    int rm = add_param(g, full, "running_mean", CS_TENSOR_BUFFER, 1, cs, CS_INIT_ZERO, 0, 0);
    int rv = add_param(g, full, "running_var", CS_TENSOR_BUFFER, 1, cs, CS_INIT_ONE, 0, 0);
    if (g->failed)
        return -1;
    int in[5] = {x, wt, bt, rm, rv};
    int shape[4]; /* a copy: add_node may move g->tensors */
    memcpy(shape, g->tensors[x].shape, sizeof shape);
    int out = add_node(g, CS_OP_BATCHNORM, full, in, 5, 4, shape, 1);
    if (out >= 0) {
        g->nodes[g->n_nodes - 1].a.eps = 1e-5f;
        g->nodes[g->n_nodes - 1].a.momentum = 0.1f;
    }
    return out;
}

static int unary(cs_graph *g, cs_op op, int x)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, cs_op_name(op), full);
    const cs_tensor *t = &g->tensors[x];
    int shape[4];
    memcpy(shape, t->shape, sizeof shape);
    return add_node(g, op, full, &x, 1, t->ndim, shape, t->batched);
}

int cs_relu(cs_graph *g, int x) { return unary(g, CS_OP_RELU, x); }
int cs_relu6(cs_graph *g, int x) { return unary(g, CS_OP_RELU6, x); }

int cs_add(cs_graph *g, int a, int b)
{
    if (!valid(g, a) || !valid(g, b))
        return -1;
    char full[CS_NAME_MAX], sa[64], sb[64];
    full_name(g, "add", full);
    const cs_tensor *ta = &g->tensors[a], *tb = &g->tensors[b];
    if (ta->ndim != tb->ndim || memcmp(ta->shape, tb->shape, sizeof(int) * (size_t)ta->ndim) != 0)
        return fail(g, "add %s: shapes %s and %s differ", full, shape_str(ta, sa, sizeof sa),
                    shape_str(tb, sb, sizeof sb));
    int in[2] = {a, b};
    int shape[4];
    memcpy(shape, ta->shape, sizeof shape);
    return add_node(g, CS_OP_ADD, full, in, 2, ta->ndim, shape, ta->batched);
}

int cs_maxpool(cs_graph *g, int x, int k, int stride, int pad)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "maxpool", full);
    if (need_4d(g, "maxpool", full, x))
        return -1;
    const cs_tensor *t = &g->tensors[x];
    if (k < 1 || stride < 1 || pad < 0 || 2 * pad > k)
        return fail(g, "maxpool %s: k %d, stride %d, pad %d: expected k, stride >= 1 and pad <= k/2", full, k, stride,
                    pad);
    int ho = cs_conv_out(t->shape[2], k, stride, pad), wo = cs_conv_out(t->shape[3], k, stride, pad);
    if (ho < 1 || wo < 1)
        return fail(g, "maxpool %s: a %dx%d input is too small for k=%d stride=%d", full, t->shape[2], t->shape[3],
                    k, stride);
    int shape[4] = {g->batch, t->shape[1], ho, wo};
    int out = add_node(g, CS_OP_MAXPOOL, full, &x, 1, 4, shape, 1);
    if (out >= 0) {
        cs_node *n = &g->nodes[g->n_nodes - 1];
        n->a.k = k;
        n->a.stride = stride;
        n->a.pad = pad;
    }
    return out;
}

int cs_avgpool(cs_graph *g, int x)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "avgpool", full);
    if (need_4d(g, "avgpool", full, x))
        return -1;
    int shape[4] = {g->batch, g->tensors[x].shape[1], 0, 0};
    return add_node(g, CS_OP_AVGPOOL, full, &x, 1, 2, shape, 1);
}

int cs_slice(cs_graph *g, int x, int start, int count)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "slice", full);
    if (need_4d(g, "slice", full, x))
        return -1;
    const cs_tensor *t = &g->tensors[x];
    if (start < 0 || count < 1 || start + count > t->shape[1])
        return fail(g, "slice %s: channels [%d, %d) of %d", full, start, start + count, t->shape[1]);
    int shape[4] = {g->batch, count, t->shape[2], t->shape[3]};
    int out = add_node(g, CS_OP_SLICE, full, &x, 1, 4, shape, 1);
    if (out >= 0) {
        g->nodes[g->n_nodes - 1].a.start = start;
        g->nodes[g->n_nodes - 1].a.count = count;
    }
    return out;
}

int cs_concat(cs_graph *g, int a, int b)
{
    if (!valid(g, a) || !valid(g, b))
        return -1;
    char full[CS_NAME_MAX], sa[64], sb[64];
    full_name(g, "concat", full);
    if (need_4d(g, "concat", full, a) || need_4d(g, "concat", full, b))
        return -1;
    const cs_tensor *ta = &g->tensors[a], *tb = &g->tensors[b];
    if (ta->shape[2] != tb->shape[2] || ta->shape[3] != tb->shape[3])
        return fail(g, "concat %s: spatial sizes of %s and %s differ", full, shape_str(ta, sa, sizeof sa),
                    shape_str(tb, sb, sizeof sb));
    int in[2] = {a, b};
    int shape[4] = {g->batch, ta->shape[1] + tb->shape[1], ta->shape[2], ta->shape[3]};
    return add_node(g, CS_OP_CONCAT, full, in, 2, 4, shape, 1);
}

int cs_shuffle(cs_graph *g, int x, int groups)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "shuffle", full);
    if (need_4d(g, "shuffle", full, x))
        return -1;
    const cs_tensor *t = &g->tensors[x];
    if (groups < 1 || t->shape[1] % groups)
        return fail(g, "shuffle %s: %d channels are not divisible by %d groups", full, t->shape[1], groups);
    int shape[4];
    memcpy(shape, t->shape, sizeof shape);
    int out = add_node(g, CS_OP_SHUFFLE, full, &x, 1, 4, shape, 1);
    if (out >= 0)
        g->nodes[g->n_nodes - 1].a.groups = groups;
    return out;
}

int cs_linear(cs_graph *g, const char *name, int x, int out_f, int bias, cs_init init)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (need_2d(g, "linear", full, x))
        return -1;
    if (out_f < 1)
        return fail(g, "linear %s: %d outputs, expected >= 1", full, out_f);
    int f = g->tensors[x].shape[1];
    int ws[2] = {out_f, f};
    int wt = add_param(g, full, "weight", CS_TENSOR_PARAM, 2, ws, init, f, out_f);
    int bt = -1;
    if (bias) {
        int bs[1] = {out_f};
        bt = add_param(g, full, "bias", CS_TENSOR_PARAM, 1, bs, init == CS_INIT_NORMAL_001 ? CS_INIT_ZERO : init, f,
                       out_f);
    }
    if (g->failed)
        return -1;
    int in[3] = {x, wt, bt};
    int shape[2] = {g->batch, out_f};
    return add_node(g, CS_OP_LINEAR, full, in, bias ? 3 : 2, 2, shape, 1);
}

int cs_cosine_linear(cs_graph *g, const char *name, int x, int out_f, float scale0)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, name, full);
    if (need_2d(g, "cosine_linear", full, x))
        return -1;
    if (out_f < 1)
        return fail(g, "cosine_linear %s: %d outputs, expected >= 1", full, out_f);
    int f = g->tensors[x].shape[1];
    int ws[2] = {out_f, f}, ss[1] = {1};
    int wt = add_param(g, full, "weight", CS_TENSOR_PARAM, 2, ws, CS_INIT_UNIFORM_FAN_IN, f, out_f);
    int st = add_param(g, full, "sigma", CS_TENSOR_PARAM, 1, ss, CS_INIT_CONST, 0, 0);
    if (g->failed)
        return -1;
    g->tensors[st].init_value = scale0;
    int in[3] = {x, wt, st};
    int shape[2] = {g->batch, out_f};
    return add_node(g, CS_OP_COSINE_LINEAR, full, in, 3, 2, shape, 1);
}

int cs_l2norm(cs_graph *g, int x)
{
    if (!valid(g, x))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "l2norm", full);
    if (need_2d(g, "l2norm", full, x))
        return -1;
    int shape[2] = {g->batch, g->tensors[x].shape[1]};
    return add_node(g, CS_OP_L2NORM, full, &x, 1, 2, shape, 1);
}

int cs_softmax_xent(cs_graph *g, int logits, int labels)
{
    if (!valid(g, logits) || !valid(g, labels))
        return -1;
    char full[CS_NAME_MAX];
    full_name(g, "softmax_xent", full);
    if (need_2d(g, "softmax_xent", full, logits))
        return -1;
    const cs_tensor *l = &g->tensors[labels];
    if (l->kind != CS_TENSOR_INPUT || l->ndim != 1)
        return fail(g, "softmax_xent %s: labels %s must be an [N] input (cs_input_vec(g, name, 0))", full, l->name);
    int in[2] = {logits, labels};
    int shape[1] = {1};
    return add_node(g, CS_OP_SOFTMAX_XENT, full, in, 2, 1, shape, 0);
}

int cs_cosine_embed(cs_graph *g, int a, int b)
{
    if (!valid(g, a) || !valid(g, b))
        return -1;
    char full[CS_NAME_MAX], sa[64], sb[64];
    full_name(g, "cosine_embed", full);
    if (need_2d(g, "cosine_embed", full, a) || need_2d(g, "cosine_embed", full, b))
        return -1;
    const cs_tensor *ta = &g->tensors[a], *tb = &g->tensors[b];
    if (ta->shape[1] != tb->shape[1])
        return fail(g, "cosine_embed %s: shapes %s and %s differ", full, shape_str(ta, sa, sizeof sa),
                    shape_str(tb, sb, sizeof sb));
    int in[2] = {a, b};
    int shape[1] = {1};
    return add_node(g, CS_OP_COSINE_EMBED, full, in, 2, 1, shape, 0);
}

int cs_graph_add_loss(cs_graph *g, int t, float weight)
{
    if (!valid(g, t))
        return -1;
    const cs_tensor *x = &g->tensors[t];
    if (x->kind != CS_TENSOR_ACT || x->size != 1)
        return fail(g, "loss %s: expected a one-value tensor from a loss op", x->name);
    if (g->n_losses == (int)(sizeof g->losses / sizeof g->losses[0]))
        return fail(g, "loss %s: at most %d loss terms", x->name, (int)(sizeof g->losses / sizeof g->losses[0]));
    g->losses[g->n_losses] = t;
    g->loss_weights[g->n_losses++] = weight;
    return t;
}

int cs_graph_set_loss_weight(cs_graph *g, int t, float weight)
{
    for (int i = 0; i < g->n_losses; i++)
        if (g->losses[i] == t) {
            g->loss_weights[i] = weight;
            return CS_OK;
        }
    return CS_ERR_ARG;
}

int cs_graph_batch(const cs_graph *g) { return g->batch; }
int cs_graph_n_tensors(const cs_graph *g) { return g->n_tensors; }
int cs_graph_n_nodes(const cs_graph *g) { return g->n_nodes; }
const cs_tensor *cs_graph_tensor(const cs_graph *g, int id)
{
    return id >= 0 && id < g->n_tensors ? &g->tensors[id] : NULL;
}
const cs_node *cs_graph_node(const cs_graph *g, int i) { return i >= 0 && i < g->n_nodes ? &g->nodes[i] : NULL; }
int64_t cs_graph_n_params(const cs_graph *g) { return g->n_params; }
int64_t cs_graph_n_buffers(const cs_graph *g) { return g->n_buffers; }
int64_t cs_graph_n_acts(const cs_graph *g) { return g->n_acts; }
int cs_graph_n_losses(const cs_graph *g) { return g->n_losses; }
int cs_graph_loss(const cs_graph *g, int i) { return i >= 0 && i < g->n_losses ? g->losses[i] : -1; }
float cs_graph_loss_weight(const cs_graph *g, int i) { return i >= 0 && i < g->n_losses ? g->loss_weights[i] : 0.0f; }

int cs_graph_set_trainable(cs_graph *g, int t, int trainable)
{
    if (t < 0 || t >= g->n_tensors || g->tensors[t].kind != CS_TENSOR_PARAM)
        return CS_ERR_ARG;
    g->tensors[t].needs_grad = trainable != 0;
    return CS_OK;
}

int cs_graph_find(const cs_graph *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return i;
    return -1;
}

int64_t cs_graph_param_count(const cs_graph *g)
{
    int64_t n = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == CS_TENSOR_PARAM)
            n += g->tensors[i].size;
    return n;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

void cs_graph_init(const cs_graph *g, uint64_t seed, float *params, float *buffers)
{
    for (int i = 0; i < g->n_tensors; i++) {
        const cs_tensor *t = &g->tensors[i];
        if (t->kind != CS_TENSOR_PARAM && t->kind != CS_TENSOR_BUFFER)
            continue;
        float *p = (t->kind == CS_TENSOR_PARAM ? params : buffers) + t->offset;
        cs_rng r;
        cs_rng_seed(&r, seed, fnv1a(t->name));
        for (int64_t j = 0; j < t->size; j++) {
            double v = 0;
            switch (t->init) {
            case CS_INIT_ZERO: v = 0; break;
            case CS_INIT_ONE: v = 1; break;
            case CS_INIT_CONST: v = t->init_value; break;
            case CS_INIT_KAIMING_OUT: v = cs_rng_normal(&r) * sqrt(2.0 / (t->fan_out > 0 ? t->fan_out : 1)); break;
            case CS_INIT_UNIFORM_FAN_IN: {
                double bound = 1.0 / sqrt(t->fan_in > 0 ? t->fan_in : 1);
                v = (2 * cs_rng_uniform(&r) - 1) * bound;
                break;
            }
            case CS_INIT_NORMAL_001: v = 0.01 * cs_rng_normal(&r); break;
            }
            p[j] = (float)v;
        }
    }
}

double cs_graph_flops_per_image(const cs_graph *g)
{
    double f = 0;
    for (int i = 0; i < g->n_nodes; i++)
        f += cs_node_flops(g, i);
    return f;
}
