/* mobilenetv2.c: the MobileNetV2 architecture plugin (torchvision's mobilenet_v2, scalable). */
#include <stdio.h>

#include <cilscale/arch.h>
#include <cilscale/plugin.h>

/* torchvision's inverted_residual_setting: (t, c, n, s) per stage. Stage
 * names give the torchvision features.* indices of the reference blocks. */
static const cs_stage stages[] = {
    {"features.1", 1, 16},      {"features.2-3", 2, 24},   {"features.4-6", 3, 32},
    {"features.7-10", 4, 64},   {"features.11-13", 3, 96}, {"features.14-16", 3, 160},
    {"features.17", 1, 320},
};
static const int expand[] = {1, 6, 6, 6, 6, 6, 6};
static const int stride0[] = {1, 2, 2, 2, 1, 2, 1}; /* stride of each stage's first block */

#define STEM_WIDTH 32
#define LAST_WIDTH 1280

static const cs_arch_iface iface;

static int64_t conv_bn(int64_t in, int64_t out, int64_t k) { return k * k * in * out + 2 * out; }

static int64_t count_params(const cs_arch_config *cfg)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    /* The stem scales with w; the last 1x1 conv only grows (max(1, w)). */
    int64_t in = cs_make_divisible(STEM_WIDTH * cfg->w, 8);
    int64_t n = conv_bn(cfg->in_channels, in, 3);
    for (int s = 0; s < 7; s++) {
        int64_t out = widths[s];
        for (int b = 0; b < cfg->depths[s]; b++) {
            int64_t hidden = in * expand[s];
            if (expand[s] != 1)
                n += conv_bn(in, hidden, 1);          /* pointwise expansion */
            n += 9 * hidden + 2 * hidden;             /* depthwise 3x3 + bn */
            n += conv_bn(hidden, out, 1);             /* linear bottleneck */
            in = out;
        }
    }
    int64_t last = cs_make_divisible(LAST_WIDTH * (cfg->w > 1.0 ? cfg->w : 1.0), 8);
    n += conv_bn(in, last, 1);
    n += cfg->head == CS_HEAD_LINEAR ? last * cfg->n_classes + cfg->n_classes : last * cfg->n_classes + 1;
    return n;
}

/* torchvision's Conv2dNormActivation in scope {prefix}: {prefix}.0 conv
 * (no bias, padding (k-1)/2), {prefix}.1 bn, relu6 (when relu6 is set). */
static int conv_bn_act(cs_graph *g, const char *prefix, int x, int out, int k, int stride, int groups, int relu6)
{
    char name[CS_NAME_MAX];
    snprintf(name, sizeof name, "%s.0", prefix);
    x = cs_conv2d(g, name, x, out, k, stride, (k - 1) / 2, groups, 0);
    snprintf(name, sizeof name, "%s.1", prefix);
    x = cs_batchnorm(g, name, x);
    return relu6 ? cs_relu6(g, x) : x;
}

/* torchvision's InvertedResidual, in scope features.{i}: its layers are conv.0, conv.1, ... */
static int inverted_residual(cs_graph *g, int x, int out, int stride, int t)
{
    int in = x >= 0 ? cs_graph_tensor(g, x)->shape[1] : 0;
    int hidden = in * t, y = x, i = 0;
    char name[CS_NAME_MAX];
    if (t != 1) {
        snprintf(name, sizeof name, "conv.%d", i++);
        y = conv_bn_act(g, name, y, hidden, 1, 1, 1, 1); /* pointwise expansion */
    }
    snprintf(name, sizeof name, "conv.%d", i++);
    y = conv_bn_act(g, name, y, hidden, 3, stride, hidden, 1); /* depthwise */
    snprintf(name, sizeof name, "conv.%d", i++);
    y = cs_conv2d(g, name, y, out, 1, 1, 0, 1, 0); /* linear bottleneck */
    snprintf(name, sizeof name, "conv.%d", i++);
    y = cs_batchnorm(g, name, y);
    return stride == 1 && in == out ? cs_add(g, x, y) : y;
}

static int build(cs_graph *g, const cs_arch_config *cfg, int x)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    int stem = cs_make_divisible(STEM_WIDTH * cfg->w, 8);
    int last = cs_make_divisible(LAST_WIDTH * (cfg->w > 1.0 ? cfg->w : 1.0), 8);
    int f = 0;
    cs_graph_scope(g, NULL);
    x = conv_bn_act(g, "features.0", x, stem, 3, cfg->stem == CS_STEM_IMAGENET ? 2 : 1, 1, 1);
    for (int s = 0; s < 7; s++)
        for (int b = 0; b < cfg->depths[s]; b++) {
            cs_graph_scope(g, "features.%d", ++f);
            x = inverted_residual(g, x, widths[s], b == 0 ? stride0[s] : 1, expand[s]);
        }
    cs_graph_scope(g, NULL);
    char name[CS_NAME_MAX];
    snprintf(name, sizeof name, "features.%d", f + 1);
    x = conv_bn_act(g, name, x, last, 1, 1, 1, !cfg->no_last_relu);
    /* torchvision's classifier is Dropout(0.2) + Linear; the graph has no dropout */
    return cs_avgpool(g, x);
}

static const cs_arch_iface iface = {
    .n_stages = 7,
    .stages = stages,
    .width_divisor = 8,
    .count_params = count_params,
    .build = build,
    .head_name = "classifier.1",
    .head_init = CS_INIT_NORMAL_001,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "mobilenetv2",
    .version = "1.0.0",
    .description = "MobileNetV2 (Sandler et al. 2018), torchvision layout; 7 stages of inverted residuals",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
