/* test_vulkan.c: the vulkan backend against the cpu backend: every op forward and backward, SGD,
 * frozen arenas, misuse, a few training steps of each architecture, and a whole tiny CIL run.
 *
 * Both backends are loaded from the build tree's plugins.conf and driven through cs_backend_iface
 * on the same graphs, parameters and inputs. In CI the device is lavapipe (Mesa's CPU Vulkan
 * driver, installed by tools/deps.sh): a machine with no Vulkan device fails these tests rather
 * than skipping them. Shapes are tiny because lavapipe is slow. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cilscale/backend.h"
#include "cilscale/graph.h"
#include "cilscale/rng.h"
#include "runtime/train.h"
#include "sdk/graph_impl.h" /* white-box: the tests break a built graph on purpose */
#include "testutil.h"

/* Tolerances, all in NMSE = sum (cpu - vk)^2 / sum cpu^2 per tensor (fp32 on both sides; the
 * backends sum in different orders). A gradient that is zero but for rounding (a convolution's
 * bias before a batch norm) has no scale of its own: there the denominator is floored at the
 * tensor's size times (10% of the arena's RMS)^2.
 * - one op's forward output, a parameter's gradient, a parameter after one SGD step: OP_NMSE
 *   (ggml holds its fp32 backends to 1e-7; most ops here agree to 1e-10, gradients through batch
 *   norm over thousands of values, which cancel, to about 2e-9);
 * - the loss of a training step of a whole network, and its parameter, momentum and running
 *   statistics arenas after it, each over the whole arena: STEPS_NMSE. */
#define OP_NMSE 1e-8
#define STEPS_NMSE 1e-8

/* ---- the two backends ---- */

static const cs_backend_iface *backend(const char *name)
{
    const cs_plugin *p = cs_registry_find(tu_registry(), CS_KIND_BACKEND, name);
    ck_assert_msg(p != NULL, "the %s backend is not loaded", name);
    if (!strcmp(name, "vulkan"))
        ck_assert_msg(cs_registry_score(tu_registry(), p) > 0,
                      "no Vulkan device can run the vulkan backend (score 0): install a Vulkan driver "
                      "(tools/deps.sh installs mesa-vulkan-drivers, whose lavapipe is a CPU device)");
    return p->iface;
}

/* One backend's copy of the graph, through the front door (backend.h). */
typedef struct side {
    const cs_backend_iface *b;
    cs_device *dev;
    cs_plan *plan;
} side;

typedef struct pair {
    cs_graph *g;
    side s[2]; /* 0: cpu, 1: vulkan */
} pair;

static const char *const side_name[2] = {"cpu", "vulkan"};

static void *xcalloc(int64_t n, size_t elem)
{
    void *p = calloc(n > 0 ? (size_t)n : 1, elem);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* floor: the least mean square the denominator counts per element */
static double nmse_floor(const float *ref, const float *got, int64_t n, double floor)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)ref[i] - got[i]) * ((double)ref[i] - got[i]);
        den += (double)ref[i] * ref[i];
    }
    if (!isfinite(num))
        return INFINITY;
    if (den < floor * (double)n)
        den = floor * (double)n;
    return den > 0 ? num / den : num;
}

static double nmse(const float *ref, const float *got, int64_t n) { return nmse_floor(ref, got, n, 0); }

#define OK(call) \
    do { \
        cs_error err_ = {0}; \
        int rc_ = (call); \
        ck_assert_msg(rc_ == CS_OK, "%s: %s", #call, err_.msg); \
    } while (0)
#define E (&err_)

static pair start(cs_graph *g)
{
    cs_error err = {0};
    ck_assert_msg(cs_graph_status(g, &err) == 0, "%s", err.msg);
    pair p = {g, {{backend("cpu"), NULL, NULL}, {backend("vulkan"), NULL, NULL}}};
    for (int k = 0; k < 2; k++) {
        /* fuse=off: every activation is compared, so the cpu side keeps them all */
        ck_assert_msg(cs_device_open(p.s[k].b, side_name[k], k ? "" : "threads=2,fuse=off", &p.s[k].dev, &err) == CS_OK,
                      "%s open: %s",
                      side_name[k], err.msg);
        ck_assert_msg(cs_plan_prepare(p.s[k].dev, g, &p.s[k].plan, &err) == CS_OK, "%s prepare: %s",
                      side_name[k], err.msg);
    }
    return p;
}

static void stop(pair *p)
{
    for (int k = 0; k < 2; k++) {
        cs_plan_release(p->s[k].plan);
        cs_device_close(p->s[k].dev);
    }
    cs_graph_free(p->g);
}

static uint64_t rng_state;
static double uni(void) /* [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}
static double sym(void) { return 2 * uni() - 1; }
static void seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL; }

/* The same initial parameters and buffers on both sides; the frozen copies are perturbed (so a
 * frozen forward differs from a live one) and the running statistics moved off 0 and 1. */
static void init_both(pair *p, uint64_t s)
{
    const cs_graph *g = p->g;
    float *par = xcalloc(cs_graph_n_params(g), 4), *buf = xcalloc(cs_graph_n_buffers(g), 4);
    float *fpar = xcalloc(cs_graph_n_params(g), 4), *fbuf = xcalloc(cs_graph_n_buffers(g), 4);
    cs_graph_init(g, s, par, buf);
    seed(s);
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        const int var = strstr(x->name, "running_var") != NULL;
        for (int64_t i = x->offset; x->kind == CS_TENSOR_BUFFER && i < x->offset + x->size; i++) {
            buf[i] = var ? 0.5f + (float)uni() : 0.2f * (float)sym();
            fbuf[i] = buf[i] * (var ? 1.5f : -1);
        }
    }
    for (int64_t i = 0; i < cs_graph_n_params(g); i++)
        fpar[i] = par[i] * (1 + 0.2f * (float)sym());
    for (int k = 0; k < 2; k++) {
        side *d = &p->s[k];
        OK(cs_plan_write(d->plan, CS_ARENA_PARAMS, 0, cs_graph_n_params(g), par, E));
        OK(cs_plan_write(d->plan, CS_ARENA_BUFFERS, 0, cs_graph_n_buffers(g), buf, E));
        OK(cs_plan_write(d->plan, CS_ARENA_FROZEN_PARAMS, 0, cs_graph_n_params(g), fpar, E));
        OK(cs_plan_write(d->plan, CS_ARENA_FROZEN_BUFFERS, 0, cs_graph_n_buffers(g), fbuf, E));
    }
    free(par);
    free(buf);
    free(fpar);
    free(fbuf);
}

/* Classes of the labels input t (the logits' width of the softmax_xent reading it), or 0. */
static int label_classes(const cs_graph *g, int t)
{
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        if (cs_graph_node(g, i)->op == CS_OP_SOFTMAX_XENT && cs_graph_node(g, i)->in[1] == t)
            return cs_graph_tensor(g, cs_graph_node(g, i)->in[0])->shape[1];
    return 0;
}

/* Random inputs, the same on both sides: labels are class ids, the rest in (-scale, scale). */
static void feed_both(pair *p, int n, uint64_t s, float scale)
{
    const cs_graph *g = p->g;
    seed(s);
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind != CS_TENSOR_INPUT)
            continue;
        const int64_t count = n * cs_tensor_row(x);
        float *v = xcalloc(count, 4);
        const int k = label_classes(g, t);
        for (int64_t i = 0; i < count; i++)
            v[i] = k ? (float)((i * 7 + (int64_t)(uni() * 3)) % k) : scale * (float)sym();
        for (int j = 0; j < 2; j++)
            OK(cs_plan_set_input(p->s[j].plan, t, v, n, E));
        free(v);
    }
}

static float *read_tensor(side *d, const cs_tensor *x, int t, int n)
{
    float *v = xcalloc(x->batched ? n * cs_tensor_row(x) : x->size, 4);
    OK(cs_plan_read_tensor(d->plan, t, v, n, E));
    return v;
}

/* Every activation of the last forward, tensor by tensor. */
static void compare_acts(pair *p, int n, double tol, const char *what)
{
    const cs_graph *g = p->g;
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind != CS_TENSOR_ACT)
            continue;
        float *a = read_tensor(&p->s[0], x, t, n), *b = read_tensor(&p->s[1], x, t, n);
        const int64_t count = x->batched ? n * cs_tensor_row(x) : x->size;
        const double e = nmse(a, b, count);
        ck_assert_msg(e <= tol, "%s: activation %s (node %d, %s): NMSE %.3g > %.3g (cpu[0] %.8g, vulkan[0] %.8g)",
                      what, x->name, x->producer, cs_op_name(cs_graph_node(g, x->producer)->op), e, tol, a[0], b[0]);
        free(a);
        free(b);
    }
}

static float *read_arena(side *d, cs_arena a, int64_t count)
{
    float *v = xcalloc(count, 4);
    OK(cs_plan_read(d->plan, a, 0, count, v, E));
    return v;
}

/* An arena, tensor by tensor (PARAMS, GRADS, MOMENTUM: the parameters; BUFFERS: the buffers). */
static void compare_arena(pair *p, cs_arena a, double tol, const char *what)
{
    const cs_graph *g = p->g;
    const int buffers = a == CS_ARENA_BUFFERS;
    const int64_t size = buffers ? cs_graph_n_buffers(g) : cs_graph_n_params(g);
    float *x = read_arena(&p->s[0], a, size), *y = read_arena(&p->s[1], a, size);
    double ms = 0;
    for (int64_t i = 0; i < size; i++)
        ms += (double)x[i] * x[i] / (double)size;
    for (int t = 0; t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *pt = cs_graph_tensor(g, t);
        if (pt->kind != (buffers ? CS_TENSOR_BUFFER : CS_TENSOR_PARAM))
            continue;
        const double e = nmse_floor(x + pt->offset, y + pt->offset, pt->size, 1e-2 * ms);
        ck_assert_msg(e <= tol, "%s: %s of %s: NMSE %.3g > %.3g (cpu[0] %.8g, vulkan[0] %.8g)", what,
                      a == CS_ARENA_GRADS      ? "gradient"
                      : a == CS_ARENA_MOMENTUM ? "momentum"
                                               : "value",
                      pt->name, e, tol, x[pt->offset], y[pt->offset]);
    }
    free(x);
    free(y);
}

/* The whole check of one graph: train forward (every activation), backward (every gradient), an
 * SGD step (parameters, momentum), the running statistics, an eval and a frozen forward. */
static void check_graph(cs_graph *g, int n, float input_scale, const char *what)
{
    pair p = start(g);
    init_both(&p, 7);
    feed_both(&p, n, 11, input_scale);
    char label[160];
    for (int k = 0; k < 2; k++)
        OK(cs_plan_forward(p.s[k].plan, n, CS_FWD_TRAIN, E));
    snprintf(label, sizeof label, "%s, train forward", what);
    compare_acts(&p, n, OP_NMSE, label);
    for (int k = 0; k < 2; k++)
        OK(cs_plan_backward(p.s[k].plan, n, E));
    snprintf(label, sizeof label, "%s, backward", what);
    compare_arena(&p, CS_ARENA_GRADS, OP_NMSE, label);
    const int64_t frozen[1][2] = {{0, cs_graph_n_params(g) / 3}};
    const cs_sgd opt = {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f, .nesterov = 1, .frozen = frozen,
                        .n_frozen = 1};
    for (int k = 0; k < 2; k++)
        OK(cs_plan_update(p.s[k].plan, &opt, E));
    snprintf(label, sizeof label, "%s, SGD", what);
    compare_arena(&p, CS_ARENA_PARAMS, OP_NMSE, label);
    compare_arena(&p, CS_ARENA_MOMENTUM, OP_NMSE, label);
    compare_arena(&p, CS_ARENA_BUFFERS, OP_NMSE, label);
    for (int k = 0; k < 2; k++)
        OK(cs_plan_forward(p.s[k].plan, n, 0, E));
    snprintf(label, sizeof label, "%s, eval forward", what);
    compare_acts(&p, n, OP_NMSE, label);
    for (int k = 0; k < 2; k++)
        OK(cs_plan_forward(p.s[k].plan, n, CS_FWD_FROZEN, E));
    snprintf(label, sizeof label, "%s, frozen forward", what);
    compare_acts(&p, n, OP_NMSE, label);
    stop(&p);
}

/* ---- one op at a time ----
 * Each graph puts a convolution with parameters before the op under test (so that the op's
 * backward shows in that convolution's weight gradient) and a linear classifier with a
 * cross-entropy after it. */

typedef struct op_case {
    const char *name;
    int (*op)(cs_graph *g, int h); /* [N,8,S,S] -> anything 4-D or [N,F] */
    float input_scale;
    int size;  /* S (0: 6) */
    int batch; /* (0: 3) */
} op_case;

static int op_conv_k3(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 6, 3, 1, 1, 1, 1); }
static int op_conv_s2(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 5, 3, 2, 1, 1, 0); }
static int op_conv_k1(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 4, 1, 1, 0, 1, 0); }
static int op_conv_groups(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 4, 3, 1, 1, 4, 1); }
static int op_conv_depthwise(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 8, 3, 2, 1, 8, 0); }
static int op_conv_s3(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 9, 3, 3, 0, 1, 0); }
static int op_conv_k7(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 4, 7, 2, 3, 1, 0); }
static int op_conv_k2s2(cs_graph *g, int h) { return cs_conv2d(g, "t", h, 3, 2, 2, 0, 1, 1); }
static int op_bn(cs_graph *g, int h) { return cs_batchnorm(g, "t", h); }
static int op_relu(cs_graph *g, int h) { return cs_relu(g, h); }
static int op_relu6(cs_graph *g, int h) { return cs_relu6(g, h); }
static int op_add(cs_graph *g, int h) { return cs_add(g, h, cs_conv2d(g, "t", h, 8, 1, 1, 0, 1, 0)); }
static int op_add_self(cs_graph *g, int h) { return cs_add(g, h, h); }
static int op_maxpool_k3(cs_graph *g, int h) { return cs_maxpool(g, h, 3, 2, 1); }
static int op_maxpool_k2(cs_graph *g, int h) { return cs_maxpool(g, h, 2, 2, 0); }
static int op_maxpool_s1(cs_graph *g, int h) { return cs_maxpool(g, h, 3, 1, 1); }
static int op_slice_concat(cs_graph *g, int h) { return cs_concat(g, cs_slice(g, h, 5, 3), cs_slice(g, h, 0, 5)); }
static int op_concat_self(cs_graph *g, int h) { return cs_concat(g, h, h); }
static int op_shuffle2(cs_graph *g, int h) { return cs_shuffle(g, h, 2); }
static int op_shuffle4(cs_graph *g, int h) { return cs_shuffle(g, h, 4); }
static int op_avgpool(cs_graph *g, int h) { return cs_avgpool(g, h); }
static int op_linear(cs_graph *g, int h) { return cs_linear(g, "t", cs_avgpool(g, h), 7, 0, CS_INIT_UNIFORM_FAN_IN); }
static int op_cosine_linear(cs_graph *g, int h) { return cs_cosine_linear(g, "t", cs_avgpool(g, h), 7, 4.0f); }
static int op_l2norm(cs_graph *g, int h) { return cs_l2norm(g, cs_avgpool(g, h)); }

static const op_case op_cases[] = {
    {"conv2d k3 s1 p1 bias", op_conv_k3, 1, 0, 0},     {"conv2d k3 s2 p1", op_conv_s2, 1, 0, 0},
    {"conv2d k1", op_conv_k1, 1, 0, 0},                {"conv2d 4 groups, bias", op_conv_groups, 1, 0, 0},
    {"conv2d depthwise s2", op_conv_depthwise, 1, 0, 0}, {"conv2d k7 s2 p3", op_conv_k7, 1, 0, 0},
    {"conv2d k2 s2 p0 bias", op_conv_k2s2, 1, 0, 0},   {"batchnorm", op_bn, 1, 0, 0},
    {"relu", op_relu, 1, 0, 0},                        {"relu6", op_relu6, 12, 0, 0},
    {"add", op_add, 1, 0, 0},                          {"add of a tensor to itself", op_add_self, 1, 0, 0},
    {"maxpool k3 s2 p1", op_maxpool_k3, 1, 0, 0},      {"maxpool k2 s2", op_maxpool_k2, 1, 0, 0},
    {"maxpool k3 s1 p1", op_maxpool_s1, 1, 0, 0},      {"slice and concat", op_slice_concat, 1, 0, 0},
    {"concat of a tensor to itself", op_concat_self, 1, 0, 0}, {"shuffle 2 groups", op_shuffle2, 1, 0, 0},
    {"shuffle 4 groups", op_shuffle4, 1, 0, 0},        {"avgpool", op_avgpool, 1, 0, 0},
    {"linear without bias", op_linear, 1, 0, 0},       {"cosine_linear", op_cosine_linear, 1, 0, 0},
    {"l2norm", op_l2norm, 1, 0, 0},
    {"conv2d k3 s3 (a stride with no variant of its own)", op_conv_s3, 1, 0, 0},
    /* bigger: weight gradients summed in chunks of positions, batch norm by workgroups */
    {"conv2d k3, weight gradient in chunks", op_conv_k3, 1, 16, 0},
    {"conv2d depthwise, weight gradient in chunks", op_conv_depthwise, 1, 24, 0},
    {"batchnorm over more values than one invocation sums", op_bn, 1, 40, 0},
    {"batchnorm by workgroups over many small images", op_bn, 1, 6, 130},
};
#define N_OP_CASES ((int)(sizeof op_cases / sizeof op_cases[0]))

static cs_graph *op_graph(const op_case *c, int batch)
{
    cs_graph *g = cs_graph_new(batch);
    const int size = c->size ? c->size : 6;
    const int x = cs_input(g, "x", 3, size, size), labels = cs_input_vec(g, "labels", 0);
    /* no bias: before a batch norm its gradient is zero but for rounding, which differs */
    int h = cs_conv2d(g, "pre", x, 8, 3, 1, 1, 1, 0);
    h = c->op(g, h);
    if (h >= 0 && cs_graph_tensor(g, h)->ndim == 4)
        h = cs_avgpool(g, h);
    const int logits = cs_linear(g, "fc", h, 5, 1, CS_INIT_UNIFORM_FAN_IN);
    cs_graph_add_loss(g, cs_softmax_xent(g, logits, labels), 1.0f);
    return g;
}

START_TEST(op_matches_cpu)
{
    const op_case *c = &op_cases[_i];
    /* odd cases run on fewer rows than the batch */
    const int batch = c->batch ? c->batch : 3;
    check_graph(op_graph(c, batch), _i % 2 ? batch - 1 : batch, c->input_scale, c->name);
}
END_TEST

/* Every op in one graph with three weighted losses (the cpu suite's finite-difference graph),
 * the loss weights changed between steps: they are read at every backward. */
static cs_graph *every_op_graph(int batch, int *losses)
{
    cs_graph *g = cs_graph_new(batch);
    const int x = cs_input(g, "x", 4, 6, 6), labels = cs_input_vec(g, "labels", 0),
              target = cs_input_vec(g, "target", 8);
    int h = cs_conv2d(g, "conv1", x, 8, 3, 1, 1, 1, 1);
    h = cs_batchnorm(g, "bn1", h);
    const int r1 = cs_relu(g, h);
    const int m = cs_maxpool(g, r1, 3, 2, 1);
    int dw = cs_conv2d(g, "dw", m, 8, 3, 1, 1, 8, 0);
    dw = cs_relu6(g, dw);
    const int sh = cs_shuffle(g, dw, 2);
    const int s1 = cs_slice(g, sh, 0, 4), s2 = cs_slice(g, sh, 4, 4);
    const int pw = cs_conv2d(g, "pw", s2, 4, 1, 1, 0, 1, 0);
    const int cat = cs_concat(g, s1, pw);
    const int a = cs_add(g, cat, m);
    const int feat = cs_avgpool(g, a);
    const int logits = cs_linear(g, "fc", feat, 5, 1, CS_INIT_UNIFORM_FAN_IN);
    losses[0] = cs_softmax_xent(g, logits, labels);
    const int cosl = cs_cosine_linear(g, "cos", feat, 5, 4.0f);
    losses[1] = cs_softmax_xent(g, cosl, labels);
    losses[2] = cs_cosine_embed(g, cs_l2norm(g, feat), target);
    /* a cosine embedding whose second input is an activation: it gets no gradient (zeros flow) */
    losses[3] = cs_cosine_embed(g, feat, cs_relu(g, cs_linear(g, "proj", feat, 8, 0, CS_INIT_UNIFORM_FAN_IN)));
    cs_graph_add_loss(g, losses[0], 1.0f);
    cs_graph_add_loss(g, losses[1], 0.5f);
    cs_graph_add_loss(g, losses[2], 2.0f);
    cs_graph_add_loss(g, losses[3], 0.25f);
    return g;
}

START_TEST(every_op_graph_matches_cpu)
{
    int losses[4];
    check_graph(every_op_graph(6, losses), 5, 1, "every op");
}
END_TEST

START_TEST(loss_weights_are_read_each_step)
{
    int losses[4];
    pair p = start(every_op_graph(4, losses));
    init_both(&p, 3);
    const cs_sgd opt = {.lr = 0.05f, .momentum = 0.9f};
    const float weights[3][4] = {{1, 0.5f, 2, 0.25f}, {0, 1, 0, 3}, {2, 0, 1, 0}};
    for (int s = 0; s < 3; s++) {
        for (int l = 0; l < 4; l++)
            ck_assert_int_eq(cs_graph_set_loss_weight(p.g, losses[l], weights[s][l]), CS_OK);
        feed_both(&p, 4, 20 + (uint64_t)s, 1);
        for (int k = 0; k < 2; k++)
            OK(cs_plan_step(p.s[k].plan, 4, &opt, E));
        compare_arena(&p, CS_ARENA_GRADS, OP_NMSE, "loss weights changed");
    }
    compare_arena(&p, CS_ARENA_PARAMS, OP_NMSE, "loss weights changed");
    stop(&p);
}
END_TEST

/* ---- SGD ---- */

START_TEST(update_matches_cpu)
{
    /* hand-written gradients, several frozen ranges (overlapping, empty, adjacent), and a
     * parameter that is not trainable */
    const struct {
        float lr, momentum, wd;
        int nesterov;
    } cases[] = {{0.1f, 0, 0, 0}, {0.05f, 0.9f, 5e-4f, 0}, {0.02f, 0.9f, 1e-3f, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int losses[4];
        cs_graph *g = every_op_graph(2, losses);
        cs_graph_set_trainable(g, cs_graph_find(g, "pw.weight"), 0);
        pair p = start(g);
        init_both(&p, 3);
        const int64_t n = cs_graph_n_params(g);
        float *grad = xcalloc(n, 4);
        const int64_t frozen[4][2] = {{3, 10}, {8, 10}, {40, 0}, {n - 7, 7}};
        const cs_sgd opt = {cases[c].lr, cases[c].momentum, cases[c].wd, cases[c].nesterov, frozen, 4};
        for (int step = 0; step < 3; step++) {
            for (int64_t i = 0; i < n; i++)
                grad[i] = (float)(0.01 * ((i * 7 + step * 3) % 11) - 0.05);
            for (int k = 0; k < 2; k++) {
                OK(cs_plan_write(p.s[k].plan, CS_ARENA_GRADS, 0, n, grad, E));
                OK(cs_plan_update(p.s[k].plan, &opt, E));
            }
        }
        compare_arena(&p, CS_ARENA_PARAMS, OP_NMSE, "SGD");
        compare_arena(&p, CS_ARENA_MOMENTUM, OP_NMSE, "SGD");
        float *v = read_arena(&p.s[1], CS_ARENA_MOMENTUM, n);
        for (int64_t i = 3; i < 18; i++)
            ck_assert_msg(v[i] == 0, "frozen momentum %lld moved", (long long)i);
        free(v);
        free(grad);
        stop(&p);
    }
}
END_TEST

/* ---- the interface's rules ---- */

START_TEST(device_strings)
{
    const cs_backend_iface *b = backend("vulkan");
    cs_device *dev = NULL;
    cs_error err = {0};
    char desc[1024], name[512];
    ck_assert_msg(cs_device_open(b, "vulkan", "", &dev, &err) == CS_OK, "%s", err.msg);
    cs_device_describe(dev, desc, sizeof desc);
    ck_assert_msg(!strncmp(desc, "vulkan: ", 8) && strstr(desc, ", driver ") && strstr(desc, ", Vulkan 1.") &&
                      strstr(desc, "device 0") && strstr(desc, "workgroup "),
                  "%s", desc);
    /* the device name, and a piece of it to find the device by */
    snprintf(name, sizeof name, "%s", desc + 8);
    *strstr(name, " (") = '\0';
    cs_device_close(dev);
    char part[8];
    snprintf(part, sizeof part, "%.4s", name);
    const char *good[] = {"0", part};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_msg(cs_device_open(b, "vulkan", good[i], &dev, &err) == CS_OK, "'%s': %s", good[i], err.msg);
        cs_device_close(dev);
    }
    const char *bad[] = {"7", "no-such-gpu"};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(cs_device_open(b, "vulkan", bad[i], &dev, &err), CS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, bad[i]) && strstr(err.msg, name), "%s", err.msg);
    }
}
END_TEST

static cs_graph *tiny_net(int batch, int *x, int *labels, int *logits, int *loss)
{
    cs_graph *g = cs_graph_new(batch);
    *x = cs_input(g, "x", 3, 8, 8);
    *labels = cs_input_vec(g, "labels", 0);
    int h = cs_conv2d(g, "conv1", *x, 8, 3, 1, 1, 1, 0);
    h = cs_batchnorm(g, "bn1", h);
    h = cs_relu(g, h);
    h = cs_avgpool(g, h);
    *logits = cs_linear(g, "fc", h, 4, 1, CS_INIT_UNIFORM_FAN_IN);
    *loss = cs_softmax_xent(g, *logits, *labels);
    cs_graph_add_loss(g, *loss, 1);
    return g;
}

START_TEST(prepare_refuses_by_name)
{
    int x, labels, logits, loss;
    cs_graph *g = tiny_net(2, &x, &labels, &logits, &loss);
    g->nodes[2].op = (cs_op)99;
    const cs_backend_iface *b = backend("vulkan");
    cs_device *dev = NULL;
    cs_plan *plan = NULL;
    cs_error err = {0};
    ck_assert_msg(cs_device_open(b, "vulkan", "", &dev, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(cs_plan_prepare(dev, g, &plan, &err), CS_ERR_ARG);
    ck_assert_ptr_null(plan);
    char want[256];
    snprintf(want, sizeof want, "node 2 '%s'", cs_graph_node(g, 2)->name);
    ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, "op 99"), "%s", err.msg);
    g->nodes[2].op = CS_OP_RELU;
    g->nodes[0].a.stride = 2;
    ck_assert_int_eq(cs_plan_prepare(dev, g, &plan, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "node 0 'conv1' (conv2d)") != NULL, "%s", err.msg);
    cs_device_close(dev);
    cs_graph_free(g);
}
END_TEST

START_TEST(too_big_is_one_line)
{
    /* 1.07G floats of activations (input and output): within the 32-bit indexes, above lavapipe's
     * 2 GiB allocation */
    cs_graph *g = cs_graph_new(1024);
    cs_relu(g, cs_input(g, "x", 8, 256, 256));
    const cs_backend_iface *b = backend("vulkan");
    cs_device *dev = NULL;
    cs_plan *plan = NULL;
    cs_error err = {0};
    char desc[1024];
    ck_assert_msg(cs_device_open(b, "vulkan", "", &dev, &err) == CS_OK, "%s", err.msg);
    cs_device_describe(dev, desc, sizeof desc);
    const int rc = cs_plan_prepare(dev, g, &plan, &err);
    if (strstr(desc, "CPU device")) {
        ck_assert_int_eq(rc, CS_ERR_NOMEM);
        ck_assert_msg(strstr(err.msg, "vulkan backend: the activation buffer needs 4096.0 MiB") && !strchr(err.msg, '\n'),
                      "%s", err.msg);
    } else if (rc == CS_OK) {
        cs_plan_release(plan);
    }
    ck_assert_ptr_null(rc ? plan : NULL);
    /* past the 32-bit indexes: refused before any allocation */
    cs_graph_free(g);
    g = cs_graph_new(2048);
    cs_relu(g, cs_input(g, "x", 8, 256, 256));
    ck_assert_int_eq(cs_plan_prepare(dev, g, &plan, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "at most 2147483647 floats per arena") != NULL, "%s", err.msg);
    cs_device_close(dev);
    cs_graph_free(g);
}
END_TEST

START_TEST(plan_misuse_is_refused)
{
    int x, labels, logits, loss;
    pair p = start(tiny_net(4, &x, &labels, &logits, &loss));
    init_both(&p, 1);
    side *r = &p.s[1];
    cs_error err = {0};
    float buf[64] = {0};
    ck_assert_int_eq(cs_plan_backward(r->plan, 4, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "not a training one") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_forward(r->plan, 4, CS_FWD_TRAIN | CS_FWD_FROZEN, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r->plan, 5, 0, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r->plan, 0, 0, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_forward(r->plan, 4, 8, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_read(r->plan, CS_ARENA_PARAMS, cs_graph_n_params(p.g) - 2, 3, buf, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "params arena") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_write(r->plan, CS_ARENA_COUNT_, 0, 1, buf, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_set_input(r->plan, logits, buf, 1, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_plan_read_tensor(r->plan, cs_graph_find(p.g, "fc.weight"), buf, 1, &err), CS_ERR_ARG);
    feed_both(&p, 4, 1, 1);
    const float bad[4] = {0, 1, 4, 2};
    OK(cs_plan_set_input(r->plan, labels, bad, 4, E));
    ck_assert_int_eq(cs_plan_forward(r->plan, 4, CS_FWD_TRAIN, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "label 4 in row 2 of labels") != NULL, "%s", err.msg);
    ck_assert_int_eq(cs_plan_backward(r->plan, 4, &err), CS_ERR_ARG);
    const cs_sgd sgd = {.lr = 0.1f};
    ck_assert_int_eq(cs_plan_step(r->plan, 4, &sgd, &err), CS_ERR_ARG);
    feed_both(&p, 4, 1, 1);
    OK(cs_plan_forward(r->plan, 4, CS_FWD_TRAIN, E));
    ck_assert_int_eq(cs_plan_backward(r->plan, 3, &err), CS_ERR_ARG);
    OK(cs_plan_forward(r->plan, 4, 0, E));
    ck_assert_int_eq(cs_plan_backward(r->plan, 4, &err), CS_ERR_ARG);
    cs_sgd bad_opt = {.lr = 0.1f, .momentum = 0, .nesterov = 1};
    ck_assert_int_eq(cs_plan_update(r->plan, &bad_opt, &err), CS_ERR_ARG);
    const int64_t out_of_range[1][2] = {{cs_graph_n_params(p.g) - 1, 2}};
    cs_sgd bad_frozen = {.lr = 0.1f, .frozen = out_of_range, .n_frozen = 1};
    ck_assert_int_eq(cs_plan_update(r->plan, &bad_frozen, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "frozen range 0") != NULL, "%s", err.msg);
    stop(&p);

    /* batch norm cannot train on one value per channel: one row of 1x1 */
    cs_graph *g = cs_graph_new(1);
    const int in = cs_input(g, "x", 2, 1, 1), lab = cs_input_vec(g, "labels", 0);
    const int lo = cs_linear(g, "fc", cs_avgpool(g, cs_batchnorm(g, "bn", in)), 2, 1, CS_INIT_UNIFORM_FAN_IN);
    cs_graph_add_loss(g, cs_softmax_xent(g, lo, lab), 1);
    p = start(g);
    feed_both(&p, 1, 2, 1);
    r = &p.s[1];
    ck_assert_int_eq(cs_plan_forward(r->plan, 1, CS_FWD_TRAIN, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "node 0 'bn' (batchnorm): training needs more than one value") != NULL, "%s",
                  err.msg);
    OK(cs_plan_forward(r->plan, 1, 0, E)); /* eval mode is fine */
    stop(&p);
}
END_TEST

START_TEST(inputs_read_back_and_scalars)
{
    /* read_tensor of an input gives what set_input stored; of a loss, the last forward's value */
    int x, labels, logits, loss;
    pair p = start(tiny_net(4, &x, &labels, &logits, &loss));
    init_both(&p, 5);
    feed_both(&p, 4, 8, 1);
    side *r = &p.s[1];
    float in[4 * 3 * 64], back[4 * 3 * 64], l0, l1;
    for (int i = 0; i < 4 * 3 * 64; i++)
        in[i] = (float)i / 100;
    OK(cs_plan_set_input(r->plan, x, in, 3, E));
    OK(cs_plan_read_tensor(r->plan, x, back, 3, E));
    ck_assert(memcmp(in, back, sizeof(float) * 3 * 3 * 64) == 0);
    OK(cs_plan_forward(r->plan, 4, 0, E));
    OK(cs_plan_read_tensor(r->plan, loss, &l0, 1, E));
    OK(cs_plan_forward(r->plan, 4, CS_FWD_FROZEN, E));
    OK(cs_plan_read_tensor(r->plan, loss, &l1, 1, E));
    ck_assert(isfinite(l0) && isfinite(l1) && l0 != l1);
    stop(&p);
}
END_TEST

START_TEST(profile_names_the_ops)
{
    int x, labels, logits, loss;
    pair p = start(tiny_net(4, &x, &labels, &logits, &loss));
    init_both(&p, 5);
    feed_both(&p, 4, 8, 1);
    side *r = &p.s[1];
    char report[8192];
    cs_error err = {0};
    ck_assert_int_eq(cs_plan_profile(r->plan, report, sizeof report, &err), CS_ERR_ARG); /* not started */
    OK(cs_plan_profile(r->plan, NULL, 0, E));
    const cs_sgd opt = {.lr = 0.1f, .momentum = 0.9f};
    for (int s = 0; s < 2; s++)
        OK(cs_plan_step(r->plan, 4, &opt, E));
    OK(cs_plan_forward(r->plan, 4, 0, E));
    OK(cs_plan_profile(r->plan, report, sizeof report, E));
    ck_assert_msg(strstr(report, "3 timed submissions") && strstr(report, "conv2d             backward") &&
                      strstr(report, "batchnorm          forward") && strstr(report, "sgd update") &&
                      strstr(report, "conv1 (conv2d)"),
                  "%s", report);
    stop(&p);
}
END_TEST

/* ---- whole networks ---- */

/* Whole-arena NMSE between the two sides (a kink of ReLU6 crossed by rounding moves one gradient
 * element by O(1); over the arena that is noise, in one small tensor it is not). */
static double arena_nmse(pair *p, cs_arena a, int64_t size)
{
    float *x = read_arena(&p->s[0], a, size), *y = read_arena(&p->s[1], a, size);
    const double e = nmse(x, y, size);
    free(x);
    free(y);
    return e;
}

/* Five SGD steps of a whole network on both sides. Each step starts from the cpu's state (its
 * parameters, momentum and running statistics are copied to the vulkan plan first), so that what is
 * compared is the step, not the chaos of training: two cpu runs whose weights differ by rounding
 * part ways too, MobileNetV2 fastest. */
static void arch_steps(const char *arch_name, double w, int size)
{
    const cs_arch_iface *arch = tu_arch(arch_name);
    cs_arch_config cfg = tu_config(arch, 6);
    cfg.w = w;
    for (int s = 0; s < arch->n_stages; s++)
        cfg.depths[s] = 1;
    cfg.stem = CS_STEM_SMALL;
    const int batch = 4;
    cs_model m[2];
    const char *dev[2] = {"threads=2", ""};
    cs_device *ctx[2];
    for (int k = 0; k < 2; k++) {
        cs_error err = {0};
        const cs_backend_iface *b = backend(side_name[k]);
        ck_assert_msg(cs_device_open(b, side_name[k], dev[k], &ctx[k], &err) == CS_OK, "%s", err.msg);
        ck_assert_msg(cs_model_init(&m[k], arch, arch_name, &cfg, batch, 3, size, size, ctx[k], 42, &err) == 0,
                      "%s: %s", side_name[k], err.msg);
    }
    const cs_graph *g = m[0].g;
    pair p = {(cs_graph *)g, {{backend("cpu"), ctx[0], m[0].plan}, {backend("vulkan"), ctx[1], m[1].plan}}};
    const int64_t nx = (int64_t)batch * 3 * size * size;
    float *x = xcalloc(nx, 4), y[4];
    const cs_sgd opt = {.lr = 0.02f, .momentum = 0.9f, .weight_decay = 5e-4f};
    for (int step = 0; step < 5; step++) {
        const cs_arena synced[3] = {CS_ARENA_PARAMS, CS_ARENA_MOMENTUM, CS_ARENA_BUFFERS};
        for (int a = 0; a < 3 && step > 0; a++) {
            const int64_t count = a == 2 ? cs_graph_n_buffers(g) : cs_graph_n_params(g);
            float *v = read_arena(&p.s[0], synced[a], count);
            OK(cs_plan_write(p.s[1].plan, synced[a], 0, count, v, E));
            free(v);
        }
        seed(100 + (uint64_t)step);
        for (int64_t i = 0; i < nx; i++)
            x[i] = (float)sym();
        for (int i = 0; i < batch; i++)
            y[i] = (float)((step + i) % 6);
        float loss[2];
        for (int k = 0; k < 2; k++) {
            OK(cs_plan_set_input(m[k].plan, m[k].input, x, batch, E));
            OK(cs_plan_set_input(m[k].plan, m[k].labels, y, batch, E));
            OK(cs_plan_step(m[k].plan, batch, &opt, E));
            OK(cs_plan_read_tensor(m[k].plan, m[k].xent, &loss[k], 1, E));
        }
        const double e = nmse(&loss[0], &loss[1], 1);
        ck_assert_msg(e <= STEPS_NMSE, "%s step %d: loss %.8g on the cpu, %.8g on vulkan", arch_name, step, loss[0],
                      loss[1]);
        for (int a = 0; a < 3; a++) {
            const double ea = arena_nmse(&p, synced[a], a == 2 ? cs_graph_n_buffers(g) : cs_graph_n_params(g));
            ck_assert_msg(ea <= STEPS_NMSE, "%s step %d: the %s arenas differ: NMSE %.3g", arch_name, step,
                          a == 0 ? "parameter" : a == 1 ? "momentum" : "buffer", ea);
        }
    }
    for (int k = 0; k < 2; k++) {
        cs_model_free(&m[k]);
        cs_device_close(ctx[k]);
    }
    free(x);
}

START_TEST(resnet18_trains_like_cpu) { arch_steps("resnet18", 0.1, 16); }
END_TEST
START_TEST(mobilenetv2_trains_like_cpu) { arch_steps("mobilenetv2", 0.25, 32); }
END_TEST
START_TEST(shufflenetv2_trains_like_cpu) { arch_steps("shufflenetv2", 0.25, 16); }
END_TEST

/* ---- a whole class-incremental run ---- */


/* Each state's top-1 from results.csv (state,n_new,n_seen,top1,...); returns the number of states. */
static int top1_by_state(const char *dir, double *top1, int max)
{
    char path[700], line[1024];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int state, n_new, n_seen;
        double t;
        if (line[0] != '#' && sscanf(line, "%d,%d,%d,%lf", &state, &n_new, &n_seen, &t) == 4 && n < max)
            top1[n++] = t;
    }
    fclose(f);
    return n;
}

/* No loader, no driver: `cilscale bench` gives one line and exit 1, and
 * `cilscale plugins` marks the backend score 0 with the same reason. Each in
 * its own process: the instance is made once per process. */
static void assert_one_line_with(const char *text, const char *needle)
{
    const size_t n = strlen(text);
    ck_assert_msg(n > 0 && text[n - 1] == '\n' && strchr(text, '\n') == text + n - 1, "expected one line, got:\n%s",
                  text);
    ck_assert_msg(strstr(text, needle) != NULL, "expected '%s' in: %s", needle, text);
}

START_TEST(no_loader_no_driver_are_one_line)
{
    char o[8192], e[8192];
    ck_assert_int_eq(setenv("CILSCALE_VULKAN_LOADER", "/nonexistent/libvulkan.so.1", 1), 0);
    int rc = tu_run(o, sizeof o, e, sizeof e, "bench", "--backend", "vulkan", "--arch", "resnet18", "--budget", "1M",
                    "--batch", "2", "--steps", "1", NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    assert_one_line_with(e, "cilscale bench: vulkan backend: no Vulkan loader (/nonexistent/libvulkan.so.1: ");
    ck_assert_ptr_nonnull(strstr(e, "$CILSCALE_VULKAN_LOADER"));
    ck_assert_str_eq(o, "");
    rc = tu_run(o, sizeof o, e, sizeof e, "plugins", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(o, "(score 0: cannot run on this machine: vulkan backend: no Vulkan loader") != NULL, "%s", o);
    ck_assert_int_eq(unsetenv("CILSCALE_VULKAN_LOADER"), 0);

    /* the system loader, pointed at a driver manifest that is not there */
    ck_assert_int_eq(setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json", 1), 0);
    ck_assert_int_eq(setenv("VK_DRIVER_FILES", "/nonexistent/icd.json", 1), 0);
    rc = tu_run(o, sizeof o, e, sizeof e, "bench", "--backend", "vulkan", "--arch", "resnet18", "--budget", "1M",
                "--batch", "2", "--steps", "1", NULL);
    ck_assert_int_eq(unsetenv("VK_ICD_FILENAMES"), 0);
    ck_assert_int_eq(unsetenv("VK_DRIVER_FILES"), 0);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    assert_one_line_with(e, "cilscale bench: vulkan backend: no Vulkan driver (vkCreateInstance: ");
}
END_TEST

START_TEST(cil_run_on_vulkan)
{
    backend("vulkan");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/data", tu_tmpdir());
    mkdir(dir, 0777);
    tu_write_tiny_idx(dir, "train", 30, 1);
    tu_write_tiny_idx(dir, "t10k", 6, 2);
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "data = { format = \"idx\"; path = \"%s\"; };\n"
             "scenario = { states = 2; first = 6; };\n"
             "model = { arch = \"resnet18\"; width = 0.1; depth = 0.5; stem = \"small\"; };\n"
             "cil = { algorithm = \"lucir\"; };\n"
             "train = { epochs = 3; batch = 12; lr = 0.1; };\n"
             "seed = 3;\n",
             dir);
    const char *path = tu_write("vk.cfg", cfg);
    double top1[2][4];
    int states[2];
    for (int k = 0; k < 2; k++) {
        char out[700], set[64], o[8192], e[8192];
        snprintf(out, sizeof out, "%s/run-%s", tu_tmpdir(), side_name[k]);
        snprintf(set, sizeof set, "backend.name=%s", side_name[k]);
        const int rc = tu_run(o, sizeof o, e, sizeof e, "run", path, "--set", set, "--out", out, NULL);
        ck_assert_msg(rc == 0, "%s: exit %d: %s", side_name[k], rc, e);
        ck_assert_msg(strstr(e, "state 1 (2/2): 10 classes seen") != NULL, "%s: %s", side_name[k], e);
        states[k] = top1_by_state(out, top1[k], 4);
    }
    ck_assert_int_eq(states[0], 2);
    ck_assert_int_eq(states[1], 2);
    /* not the same bits (sums in another order), but the same learning: LUCIR's cosine
     * classifier, its distillation on the frozen model's features, frozen old classes */
    ck_assert_msg(top1[1][0] > 0.3, "the first state learned nothing on vulkan: top-1 %.3f", top1[1][0]);
    for (int s = 0; s < 2; s++)
        ck_assert_msg(fabs(top1[0][s] - top1[1][s]) <= 0.1, "state %d: top-1 %.3f on the cpu, %.3f on vulkan", s,
                      top1[0][s], top1[1][s]);
}
END_TEST

static Suite *vulkan_suite(void)
{
    Suite *s = suite_create("vulkan");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, op_matches_cpu, 0, N_OP_CASES);
    tcase_add_test(tc, every_op_graph_matches_cpu);
    tcase_add_test(tc, loss_weights_are_read_each_step);
    tcase_add_test(tc, update_matches_cpu);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("plan");
    tcase_add_test(tc, device_strings);
    tcase_add_test(tc, prepare_refuses_by_name);
    tcase_add_test(tc, too_big_is_one_line);
    tcase_add_test(tc, plan_misuse_is_refused);
    tcase_add_test(tc, inputs_read_back_and_scalars);
    tcase_add_test(tc, profile_names_the_ops);
    tcase_add_test(tc, no_loader_no_driver_are_one_line);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_add_test(tc, resnet18_trains_like_cpu);
    tcase_add_test(tc, mobilenetv2_trains_like_cpu);
    tcase_add_test(tc, shufflenetv2_trains_like_cpu);
    tcase_add_test(tc, cil_run_on_vulkan);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(vulkan_suite()) ? 1 : 0; }
