/* test_archbuild.c: the architecture plugins build torchvision's networks: the parameters
 * count_params counts, torchvision's state_dict names and shapes, its strides and topology. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *const archs[] = {"resnet18", "mobilenetv2", "shufflenetv2"};
#define N_ARCHS 3

typedef struct built {
    cs_graph *g;
    int x, features, logits;
} built;

/* Builds arch at cfg on a 1-batch graph with an hw x hw input; fails the test on error. */
static built build(const char *arch, const cs_arch_config *cfg, int hw)
{
    const cs_arch_iface *a = tu_arch(arch);
    built b = {cs_graph_new(1), -1, -1, -1};
    ck_assert_ptr_nonnull(b.g);
    b.x = cs_input(b.g, "input", cfg->in_channels, hw, hw);
    cs_error err = {0};
    int rc = cs_arch_build(a, arch, b.g, cfg, b.x, &b.features, &b.logits, &err);
    ck_assert_msg(rc == CS_OK, "%s w=%g: build failed: %s", arch, cfg->w, err.msg);
    return b;
}

/* The input size a stem is tested at: 32 px for the small stem, 64 px for imagenet's. */
static int hw_for(cs_stem stem) { return stem == CS_STEM_SMALL ? 32 : 64; }

static int count_op(const cs_graph *g, cs_op op)
{
    int n = 0;
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        n += cs_graph_node(g, i)->op == op;
    return n;
}

/* The output tensor of the first node called name ("layer1.0.conv1"). */
static const cs_tensor *node_out(const cs_graph *g, const char *name)
{
    for (int i = 0; i < cs_graph_n_nodes(g); i++)
        if (strcmp(cs_graph_node(g, i)->name, name) == 0)
            return cs_graph_tensor(g, cs_graph_node(g, i)->out);
    ck_abort_msg("no node %s", name);
    return NULL;
}

/* The tensor avgpool reduces (the last feature map). */
static const cs_tensor *last_map(const cs_graph *g, int features)
{
    const cs_tensor *f = cs_graph_tensor(g, features);
    ck_assert_int_ge(f->producer, 0);
    const cs_node *n = cs_graph_node(g, f->producer);
    ck_assert_int_eq(n->op, CS_OP_AVGPOOL);
    return cs_graph_tensor(g, n->in[0]);
}

/* Asserts that parameter `name` exists with the given shape (ndim values follow). */
static void expect_param(const cs_graph *g, const char *name, int ndim, ...)
{
    int id = cs_graph_find(g, name);
    ck_assert_msg(id >= 0, "no tensor %s", name);
    const cs_tensor *t = cs_graph_tensor(g, id);
    ck_assert_msg(t->kind == CS_TENSOR_PARAM, "%s is not a parameter", name);
    ck_assert_msg(t->ndim == ndim, "%s: %d dims, expected %d", name, t->ndim, ndim);
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) {
        int want = va_arg(ap, int);
        ck_assert_msg(t->shape[i] == want, "%s: dim %d is %d, expected %d", name, i, t->shape[i], want);
    }
    va_end(ap);
}

static void expect_absent(const cs_graph *g, const char *name)
{
    ck_assert_msg(cs_graph_find(g, name) < 0, "unexpected tensor %s", name);
}

/* The feature width each architecture ends with. */
static int feature_dim(const char *arch, const cs_arch_config *cfg)
{
    const cs_arch_iface *a = tu_arch(arch);
    int widths[CS_MAX_STAGES];
    cs_arch_widths(a, cfg, widths);
    if (strcmp(arch, "resnet18") == 0)
        return widths[3];
    if (strcmp(arch, "mobilenetv2") == 0)
        return cs_make_divisible(1280 * (cfg->w > 1 ? cfg->w : 1), 8);
    return 1024;
}

/* depth set k: 0 all ones, 1 reference, 2 deeper (ref + 1 each), 3 mixed (ref, 1, 2 * ref, ...) */
static void depths_for(const cs_arch_iface *a, int k, int *depths)
{
    for (int s = 0; s < a->n_stages; s++) {
        int r = a->stages[s].ref_depth;
        depths[s] = k == 0 ? 1 : k == 1 ? r : k == 2 ? r + 1 : (s % 3 == 0 ? r : s % 3 == 1 ? 1 : 2 * r);
    }
}

START_TEST(param_count_matches_count_params)
{
    static const double ws[] = {0.25, 0.5, 0.7, 1.0, 1.3, 2.0};
    static const int classes[] = {2, 10, 100, 1000};
    const char *arch = archs[_i];
    const cs_arch_iface *a = tu_arch(arch);
    int n = 0;
    for (size_t wi = 0; wi < sizeof ws / sizeof ws[0]; wi++)
        for (int dk = 0; dk < 4; dk++)
            for (int stem = 0; stem < 2; stem++)
                for (int head = 0; head < 2; head++)
                    for (int ch = 1; ch <= 3; ch += 2)
                        for (int nlr = 0; nlr < 2; nlr++) {
                            cs_arch_config c = tu_config(a, classes[(wi + (size_t)dk + (size_t)head) % 4]);
                            c.w = ws[wi];
                            depths_for(a, dk, c.depths);
                            c.stem = (cs_stem)stem;
                            c.head = (cs_head)head;
                            c.in_channels = ch;
                            c.no_last_relu = nlr;
                            int64_t want;
                            cs_error err;
                            ck_assert_msg(cs_arch_count(a, &c, &want, &err) == CS_OK, "%s", err.msg);
                            built b = build(arch, &c, hw_for(c.stem));
                            int64_t got = cs_graph_param_count(b.g);
                            ck_assert_msg(got == want,
                                          "%s w=%g depths#%d stem=%s head=%s ch=%d K=%d: graph has %lld "
                                          "parameters, count_params %lld",
                                          arch, c.w, dk, cs_stem_name(c.stem), cs_head_name(c.head), ch,
                                          c.n_classes, (long long)got, (long long)want);
                            /* features [1, F], logits [1, K] */
                            const cs_tensor *f = cs_graph_tensor(b.g, b.features), *y = cs_graph_tensor(b.g, b.logits);
                            ck_assert_int_eq(f->ndim, 2);
                            ck_assert_int_eq(f->shape[0], 1);
                            ck_assert_int_eq(f->shape[1], feature_dim(arch, &c));
                            ck_assert_int_eq(y->ndim, 2);
                            ck_assert_int_eq(y->shape[1], c.n_classes);
                            /* the input's channels reach the first conv */
                            ck_assert_int_eq(cs_graph_node(b.g, 0)->op, CS_OP_CONV2D);
                            ck_assert_int_eq(cs_graph_node(b.g, 0)->in[0], b.x);
                            ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_node(b.g, 0)->in[1])->shape[1], ch);
                            cs_graph_free(b.g);
                            n++;
                        }
    ck_assert_int_eq(n, 6 * 4 * 2 * 2 * 2 * 2);
}
END_TEST

START_TEST(resnet18_names)
{
    cs_arch_config c = tu_config(tu_arch("resnet18"), 100);
    built b = build("resnet18", &c, 224);
    expect_param(b.g, "conv1.weight", 4, 64, 3, 7, 7);
    expect_param(b.g, "bn1.weight", 1, 64);
    expect_param(b.g, "bn1.bias", 1, 64);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "bn1.running_mean"))->kind, CS_TENSOR_BUFFER);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "bn1.running_var"))->kind, CS_TENSOR_BUFFER);
    expect_param(b.g, "layer1.0.conv1.weight", 4, 64, 64, 3, 3);
    expect_param(b.g, "layer1.1.bn2.weight", 1, 64);
    expect_absent(b.g, "layer1.0.downsample.0.weight");
    expect_param(b.g, "layer2.0.conv1.weight", 4, 128, 64, 3, 3);
    expect_param(b.g, "layer2.0.downsample.0.weight", 4, 128, 64, 1, 1);
    expect_param(b.g, "layer2.0.downsample.1.weight", 1, 128);
    expect_absent(b.g, "layer2.0.downsample.0.bias");
    expect_absent(b.g, "layer2.1.downsample.0.weight");
    expect_param(b.g, "layer3.0.downsample.0.weight", 4, 256, 128, 1, 1);
    expect_param(b.g, "layer4.1.conv2.weight", 4, 512, 512, 3, 3);
    expect_absent(b.g, "layer4.1.conv2.bias");
    expect_absent(b.g, "layer4.2.conv1.weight");
    expect_param(b.g, "fc.weight", 2, 100, 512);
    expect_param(b.g, "fc.bias", 1, 100);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "fc.weight"))->init, CS_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "fc.bias"))->init, CS_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "layer1.0.conv1.weight"))->init, CS_INIT_KAIMING_OUT);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "layer1.0.bn1.weight"))->init, CS_INIT_ONE);
    cs_graph_free(b.g);

    /* w = 0.5: layer1 narrows 64 -> 32, so its first block gets a stride-1 downsample */
    c.w = 0.5;
    c.head = CS_HEAD_COSINE;
    b = build("resnet18", &c, 64);
    expect_param(b.g, "conv1.weight", 4, 64, 3, 7, 7);
    expect_param(b.g, "layer1.0.downsample.0.weight", 4, 32, 64, 1, 1);
    expect_absent(b.g, "layer1.1.downsample.0.weight");
    expect_param(b.g, "fc.weight", 2, 100, 256);
    expect_param(b.g, "fc.sigma", 1, 1);
    expect_absent(b.g, "fc.bias");
    cs_graph_free(b.g);
}
END_TEST

START_TEST(mobilenetv2_names)
{
    cs_arch_config c = tu_config(tu_arch("mobilenetv2"), 1000);
    built b = build("mobilenetv2", &c, 224);
    expect_param(b.g, "features.0.0.weight", 4, 32, 3, 3, 3);
    expect_param(b.g, "features.0.1.weight", 1, 32);
    /* expand ratio 1: conv.0 (dw conv-bn-relu6), conv.1 (pw conv), conv.2 (bn) */
    expect_param(b.g, "features.1.conv.0.0.weight", 4, 32, 1, 3, 3);
    expect_param(b.g, "features.1.conv.0.1.weight", 1, 32);
    expect_param(b.g, "features.1.conv.1.weight", 4, 16, 32, 1, 1);
    expect_param(b.g, "features.1.conv.2.weight", 1, 16);
    expect_absent(b.g, "features.1.conv.3.weight");
    /* expand ratio 6: conv.0 (pw), conv.1 (dw), conv.2 (pw-linear conv), conv.3 (bn) */
    expect_param(b.g, "features.2.conv.0.0.weight", 4, 96, 16, 1, 1);
    expect_param(b.g, "features.2.conv.1.0.weight", 4, 96, 1, 3, 3);
    expect_param(b.g, "features.2.conv.1.1.weight", 1, 96);
    expect_param(b.g, "features.2.conv.2.weight", 4, 24, 96, 1, 1);
    expect_param(b.g, "features.2.conv.3.weight", 1, 24);
    expect_param(b.g, "features.3.conv.0.0.weight", 4, 144, 24, 1, 1);
    expect_param(b.g, "features.17.conv.2.weight", 4, 320, 960, 1, 1);
    expect_param(b.g, "features.18.0.weight", 4, 1280, 320, 1, 1);
    expect_param(b.g, "features.18.1.weight", 1, 1280);
    expect_absent(b.g, "features.19.0.weight");
    expect_param(b.g, "classifier.1.weight", 2, 1000, 1280);
    expect_param(b.g, "classifier.1.bias", 1, 1000);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "classifier.1.weight"))->init, CS_INIT_NORMAL_001);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "classifier.1.bias"))->init, CS_INIT_ZERO);
    ck_assert_int_eq(cs_graph_param_count(b.g), 3504872); /* torchvision's mobilenet_v2() */
    cs_graph_free(b.g);

    /* one block per stage: blocks features.1..7, last conv features.8 */
    for (int s = 0; s < 7; s++)
        c.depths[s] = 1;
    c.w = 0.5;
    b = build("mobilenetv2", &c, 64);
    expect_param(b.g, "features.0.0.weight", 4, 16, 3, 3, 3);
    expect_param(b.g, "features.7.conv.2.weight", 4, 160, 480, 1, 1);
    expect_param(b.g, "features.8.0.weight", 4, 1280, 160, 1, 1);
    expect_absent(b.g, "features.9.0.weight");
    cs_graph_free(b.g);

    /* w > 1 widens the last conv too */
    c = tu_config(tu_arch("mobilenetv2"), 10);
    c.w = 1.4;
    b = build("mobilenetv2", &c, 64);
    expect_param(b.g, "features.0.0.weight", 4, 48, 3, 3, 3);
    expect_param(b.g, "features.18.0.weight", 4, 1792, 448, 1, 1);
    expect_param(b.g, "classifier.1.weight", 2, 10, 1792);
    cs_graph_free(b.g);
}
END_TEST

START_TEST(shufflenetv2_names)
{
    cs_arch_config c = tu_config(tu_arch("shufflenetv2"), 1000);
    built b = build("shufflenetv2", &c, 224);
    expect_param(b.g, "conv1.0.weight", 4, 24, 3, 3, 3);
    expect_param(b.g, "conv1.1.weight", 1, 24);
    expect_param(b.g, "stage2.0.branch1.0.weight", 4, 24, 1, 3, 3);
    expect_param(b.g, "stage2.0.branch1.1.weight", 1, 24);
    expect_param(b.g, "stage2.0.branch1.2.weight", 4, 58, 24, 1, 1);
    expect_param(b.g, "stage2.0.branch1.3.weight", 1, 58);
    expect_param(b.g, "stage2.0.branch2.0.weight", 4, 58, 24, 1, 1);
    expect_param(b.g, "stage2.0.branch2.1.weight", 1, 58);
    expect_param(b.g, "stage2.0.branch2.3.weight", 4, 58, 1, 3, 3);
    expect_param(b.g, "stage2.0.branch2.4.weight", 1, 58);
    expect_param(b.g, "stage2.0.branch2.5.weight", 4, 58, 58, 1, 1);
    expect_param(b.g, "stage2.0.branch2.6.weight", 1, 58);
    expect_param(b.g, "stage2.1.branch2.0.weight", 4, 58, 58, 1, 1);
    expect_absent(b.g, "stage2.1.branch1.0.weight");
    expect_param(b.g, "stage3.0.branch1.0.weight", 4, 116, 1, 3, 3);
    expect_param(b.g, "stage3.7.branch2.5.weight", 4, 116, 116, 1, 1);
    expect_absent(b.g, "stage3.8.branch2.0.weight");
    expect_param(b.g, "stage4.3.branch2.6.weight", 1, 232);
    expect_param(b.g, "conv5.0.weight", 4, 1024, 464, 1, 1);
    expect_param(b.g, "conv5.1.weight", 1, 1024);
    expect_absent(b.g, "conv5.0.bias");
    expect_param(b.g, "fc.weight", 2, 1000, 1024);
    expect_param(b.g, "fc.bias", 1, 1000);
    ck_assert_int_eq(cs_graph_tensor(b.g, cs_graph_find(b.g, "fc.weight"))->init, CS_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(cs_graph_param_count(b.g), 2278604); /* torchvision's shufflenet_v2_x1_0() */
    cs_graph_free(b.g);
}
END_TEST

START_TEST(resnet18_counts_torchvision)
{
    cs_arch_config c = tu_config(tu_arch("resnet18"), 1000);
    built b = build("resnet18", &c, 224);
    ck_assert_int_eq(cs_graph_param_count(b.g), 11689512); /* torchvision's resnet18() */
    cs_graph_free(b.g);
}
END_TEST

START_TEST(spatial_sizes)
{
    static const struct {
        const char *arch;
        cs_stem stem;
        int hw;
        const char *node; /* a node whose output is checked ... */
        int node_hw;      /* ... to be node_hw x node_hw */
        int last_hw;      /* the map avgpool reduces */
    } cases[] = {
        {"resnet18", CS_STEM_SMALL, 32, "layer1.0.conv1", 32, 4},
        {"resnet18", CS_STEM_SMALL, 32, "layer3.0.downsample.0", 8, 4},
        {"resnet18", CS_STEM_IMAGENET, 224, "conv1", 112, 7},
        {"resnet18", CS_STEM_IMAGENET, 224, "layer1.0.conv1", 56, 7},
        {"resnet18", CS_STEM_IMAGENET, 64, "layer2.0.conv2", 8, 2},
        {"mobilenetv2", CS_STEM_SMALL, 32, "features.0.0", 32, 2},
        {"mobilenetv2", CS_STEM_SMALL, 32, "features.2.conv.1.0", 16, 2},
        {"mobilenetv2", CS_STEM_IMAGENET, 224, "features.1.conv.0.0", 112, 7},
        {"mobilenetv2", CS_STEM_IMAGENET, 224, "features.14.conv.1.0", 7, 7},
        {"mobilenetv2", CS_STEM_IMAGENET, 224, "features.13.conv.1.0", 14, 7},
        {"shufflenetv2", CS_STEM_SMALL, 32, "conv1.0", 32, 4},
        {"shufflenetv2", CS_STEM_SMALL, 32, "stage2.0.branch1.0", 16, 4},
        {"shufflenetv2", CS_STEM_IMAGENET, 224, "stage2.0.branch2.0", 56, 7},
        {"shufflenetv2", CS_STEM_IMAGENET, 224, "stage4.0.branch2.3", 7, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_arch_config c = tu_config(tu_arch(cases[i].arch), 10);
        c.stem = cases[i].stem;
        built b = build(cases[i].arch, &c, cases[i].hw);
        const cs_tensor *t = node_out(b.g, cases[i].node);
        ck_assert_msg(t->shape[2] == cases[i].node_hw && t->shape[3] == cases[i].node_hw,
                      "%s %s: %s is %dx%d, expected %dx%d", cases[i].arch, cs_stem_name(c.stem), cases[i].node,
                      t->shape[2], t->shape[3], cases[i].node_hw, cases[i].node_hw);
        const cs_tensor *m = last_map(b.g, b.features);
        ck_assert_msg(m->shape[2] == cases[i].last_hw && m->shape[3] == cases[i].last_hw,
                      "%s %s %d px: last map %dx%d, expected %dx%d", cases[i].arch, cs_stem_name(c.stem),
                      cases[i].hw, m->shape[2], m->shape[3], cases[i].last_hw, cases[i].last_hw);
        cs_graph_free(b.g);
    }
    /* the small stem has no max-pool; imagenet's has one (resnet, shufflenet) */
    for (int i = 0; i < N_ARCHS; i++)
        for (int stem = 0; stem < 2; stem++) {
            cs_arch_config c = tu_config(tu_arch(archs[i]), 10);
            c.stem = (cs_stem)stem;
            built b = build(archs[i], &c, hw_for(c.stem));
            int want = stem == CS_STEM_IMAGENET && strcmp(archs[i], "mobilenetv2") != 0;
            ck_assert_int_eq(count_op(b.g, CS_OP_MAXPOOL), want);
            cs_graph_free(b.g);
        }
}
END_TEST

START_TEST(no_last_relu_removes_one_relu)
{
    for (int i = 0; i < N_ARCHS; i++)
        for (int dk = 0; dk < 4; dk++) {
            const cs_arch_iface *a = tu_arch(archs[i]);
            cs_arch_config c = tu_config(a, 10);
            depths_for(a, dk, c.depths);
            c.w = 0.75;
            c.stem = CS_STEM_SMALL;
            built on = build(archs[i], &c, 32);
            c.no_last_relu = 1;
            built off = build(archs[i], &c, 32);
            const cs_graph *g0 = on.g, *g1 = off.g;
            int relus0 = count_op(g0, CS_OP_RELU) + count_op(g0, CS_OP_RELU6);
            int relus1 = count_op(g1, CS_OP_RELU) + count_op(g1, CS_OP_RELU6);
            ck_assert_int_eq(relus1, relus0 - 1);
            ck_assert_int_eq(cs_graph_n_nodes(g1), cs_graph_n_nodes(g0) - 1);
            ck_assert_int_eq(cs_graph_param_count(g1), cs_graph_param_count(g0));
            /* the dropped node is the activation that fed avgpool; all else is unchanged */
            int p0 = cs_graph_tensor(g0, on.features)->producer;
            int r = cs_graph_tensor(g0, cs_graph_node(g0, p0)->in[0])->producer;
            cs_op want = strcmp(archs[i], "mobilenetv2") == 0 ? CS_OP_RELU6 : CS_OP_RELU;
            ck_assert_int_eq(cs_graph_node(g0, r)->op, want);
            for (int k = 0, j = 0; k < cs_graph_n_nodes(g0); k++) {
                if (k == r)
                    continue;
                ck_assert_int_eq(cs_graph_node(g0, k)->op, cs_graph_node(g1, j)->op);
                ck_assert_str_eq(cs_graph_node(g0, k)->name, cs_graph_node(g1, j)->name);
                j++;
            }
            /* without it, avgpool reads the residual sum (resnet) or the last batch norm */
            const cs_tensor *m = last_map(g1, off.features);
            cs_op before = strcmp(archs[i], "resnet18") == 0 ? CS_OP_ADD : CS_OP_BATCHNORM;
            ck_assert_int_eq(cs_graph_node(g1, m->producer)->op, before);
            cs_graph_free(on.g);
            cs_graph_free(off.g);
        }
}
END_TEST

START_TEST(topology)
{
    static const double ws[] = {0.5, 1.0, 1.5};
    for (size_t wi = 0; wi < 3; wi++)
        for (int dk = 0; dk < 4; dk++) {
            /* resnet: one residual add per block; relu after the stem, twice per block */
            const cs_arch_iface *a = tu_arch("resnet18");
            cs_arch_config c = tu_config(a, 10);
            c.w = ws[wi];
            depths_for(a, dk, c.depths);
            built b = build("resnet18", &c, 64);
            int blocks = cs_arch_blocks(a, c.depths);
            ck_assert_int_eq(count_op(b.g, CS_OP_ADD), blocks);
            ck_assert_int_eq(count_op(b.g, CS_OP_RELU), 1 + 2 * blocks);
            ck_assert_int_eq(count_op(b.g, CS_OP_CONV2D), 1 + 2 * blocks + 3 + (ws[wi] != 1.0));
            cs_graph_free(b.g);

            /* mobilenetv2: an add for each stride-1 block that keeps its width
             * (never a stage's first block: every stage changes the width) */
            a = tu_arch("mobilenetv2");
            c = tu_config(a, 10);
            c.w = ws[wi];
            depths_for(a, dk, c.depths);
            b = build("mobilenetv2", &c, 64);
            blocks = cs_arch_blocks(a, c.depths);
            ck_assert_int_eq(count_op(b.g, CS_OP_ADD), blocks - 7);
            ck_assert_int_eq(count_op(b.g, CS_OP_RELU6), 2 + 2 * blocks - c.depths[0]);
            ck_assert_int_eq(count_op(b.g, CS_OP_RELU), 0);
            /* depthwise convs: groups == channels */
            int dw = 0;
            for (int k = 0; k < cs_graph_n_nodes(b.g); k++)
                if (cs_graph_node(b.g, k)->op == CS_OP_CONV2D && cs_graph_node(b.g, k)->a.groups > 1) {
                    ck_assert_int_eq(cs_graph_node(b.g, k)->a.groups, cs_graph_tensor(b.g, cs_graph_node(b.g, k)->in[0])->shape[1]);
                    dw++;
                }
            ck_assert_int_eq(dw, blocks);
            cs_graph_free(b.g);

            /* shufflenetv2: each block ends with a concat and a shuffle of 2; the
             * stride-1 blocks split their input in two slices */
            a = tu_arch("shufflenetv2");
            c = tu_config(a, 10);
            c.w = ws[wi];
            depths_for(a, dk, c.depths);
            b = build("shufflenetv2", &c, 64);
            blocks = cs_arch_blocks(a, c.depths);
            ck_assert_int_eq(count_op(b.g, CS_OP_CONCAT), blocks);
            ck_assert_int_eq(count_op(b.g, CS_OP_SHUFFLE), blocks);
            ck_assert_int_eq(count_op(b.g, CS_OP_SLICE), 2 * (blocks - 3));
            ck_assert_int_eq(count_op(b.g, CS_OP_ADD), 0);
            ck_assert_int_eq(count_op(b.g, CS_OP_RELU), 2 + 2 * blocks + 3);
            for (int k = 0; k < cs_graph_n_nodes(b.g); k++)
                if (cs_graph_node(b.g, k)->op == CS_OP_SHUFFLE)
                    ck_assert_int_eq(cs_graph_node(b.g, k)->a.groups, 2);
            cs_graph_free(b.g);
        }
}
END_TEST

START_TEST(stride1_block_passes_first_half)
{
    /* x.chunk(2): the first half goes straight into the concat, branch2 reads the second */
    cs_arch_config c = tu_config(tu_arch("shufflenetv2"), 10);
    built b = build("shufflenetv2", &c, 64);
    int seen = 0;
    for (int k = 0; k < cs_graph_n_nodes(b.g); k++) {
        const cs_node *n = cs_graph_node(b.g, k);
        if (n->op != CS_OP_CONCAT || strncmp(n->name, "stage3.1.", 9) != 0)
            continue;
        const cs_tensor *a0 = cs_graph_tensor(b.g, n->in[0]);
        const cs_node *s0 = cs_graph_node(b.g, a0->producer);
        ck_assert_int_eq(s0->op, CS_OP_SLICE);
        ck_assert_int_eq(s0->a.start, 0);
        ck_assert_int_eq(s0->a.count, 116);
        const cs_tensor *a1 = cs_graph_tensor(b.g, n->in[1]);
        ck_assert_int_eq(a1->shape[1], 116);
        ck_assert_int_eq(cs_graph_node(b.g, a1->producer)->op, CS_OP_RELU);
        seen++;
    }
    ck_assert_int_eq(seen, 1);
    const cs_node *b2 = NULL;
    for (int k = 0; k < cs_graph_n_nodes(b.g); k++)
        if (strcmp(cs_graph_node(b.g, k)->name, "stage3.1.branch2.0") == 0)
            b2 = cs_graph_node(b.g, k);
    ck_assert_ptr_nonnull(b2);
    const cs_node *s1 = cs_graph_node(b.g, cs_graph_tensor(b.g, b2->in[0])->producer);
    ck_assert_int_eq(s1->op, CS_OP_SLICE);
    ck_assert_int_eq(s1->a.start, 116);
    ck_assert_int_eq(s1->a.count, 116);
    cs_graph_free(b.g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("archbuild");
    TCase *t = tcase_create("build");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, param_count_matches_count_params, 0, N_ARCHS);
    tcase_add_test(t, resnet18_names);
    tcase_add_test(t, resnet18_counts_torchvision);
    tcase_add_test(t, mobilenetv2_names);
    tcase_add_test(t, shufflenetv2_names);
    tcase_add_test(t, spatial_sizes);
    tcase_add_test(t, no_last_relu_removes_one_relu);
    tcase_add_test(t, topology);
    tcase_add_test(t, stride1_block_passes_first_half);
    suite_add_tcase(s, t);
    return tu_run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
