/* shufflenetv2.c: the ShuffleNetV2 architecture plugin (torchvision's shufflenet_v2_x1_0, scalable). */
#include <cilscale/arch.h>
#include <cilscale/plugin.h>

/* torchvision x1.0: stage widths 116, 232, 464 with 4, 8, 4 blocks; stem 24;
 * final 1x1 conv 1024, which does not scale. */
static const cs_stage stages[] = {
    {"stage2", 4, 116},
    {"stage3", 8, 232},
    {"stage4", 4, 464},
};

#define STEM_WIDTH 24
#define LAST_WIDTH 1024

static const cs_arch_iface iface;

/* The channel divisor for cfg. The authors' code (models/myShuffleNet.py)
 * rounds the stem and every stage to multiples of 8 unless (w, d) = (1, 1),
 * where it keeps torchvision's 24/116/232/464 (116 is no multiple of 8): so
 * w = 1 at any other depth has 120 channels in stage2. cilscale 0.1 used
 * multiples of 4, exact at w = 1 at every depth. Either way each stage splits
 * into two even halves. 1 means "the reference widths as they are". */
static int divisor(const cs_arch_config *cfg)
{
    if (cfg->convention == CS_CONVENTION_CILSCALE_01)
        return 4;
    return cs_arch_is_reference(&iface, cfg) ? 1 : 8;
}

static int scaled(const cs_arch_config *cfg, int ref)
{
    int div = divisor(cfg);
    return div == 1 ? ref : cs_make_divisible(ref * cfg->w, div);
}

static void stage_widths(const cs_arch_config *cfg, int *widths)
{
    for (int s = 0; s < 3; s++)
        widths[s] = scaled(cfg, stages[s].ref_width);
}

static int64_t conv_bn(int64_t in, int64_t out, int64_t k) { return k * k * in * out + 2 * out; }
static int64_t dw_bn(int64_t c) { return 9 * c + 2 * c; }

static int64_t count_params(const cs_arch_config *cfg)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    int64_t in = scaled(cfg, STEM_WIDTH);
    int64_t n = conv_bn(cfg->in_channels, in, 3);
    for (int s = 0; s < 3; s++) {
        int64_t out = widths[s], half = out / 2;
        for (int b = 0; b < cfg->depths[s]; b++) {
            if (b == 0) {
                /* stride 2: branch1 = dw 3x3 + bn, 1x1 + bn; branch2 reads all inputs */
                n += dw_bn(in) + conv_bn(in, half, 1);
                n += conv_bn(in, half, 1) + dw_bn(half) + conv_bn(half, half, 1);
            } else {
                /* stride 1: half the channels pass through, branch2 on the other half */
                n += conv_bn(half, half, 1) + dw_bn(half) + conv_bn(half, half, 1);
            }
            in = out;
        }
    }
    n += conv_bn(in, LAST_WIDTH, 1);
    n += cfg->head == CS_HEAD_LINEAR ? LAST_WIDTH * cfg->n_classes + cfg->n_classes
                                     : LAST_WIDTH * cfg->n_classes + 1;
    return n;
}

/* torchvision's InvertedResidual, in scope stage{s}.{b}. branch1 (stride 2
 * only): dw 3x3 conv (0), bn (1), 1x1 conv (2), bn (3), relu. branch2: 1x1
 * conv (0), bn (1), relu (2), dw 3x3 conv (3), bn (4), 1x1 conv (5), bn (6), relu. */
static int branch2(cs_graph *g, int x, int half, int stride)
{
    x = cs_relu(g, cs_batchnorm(g, "branch2.1", cs_conv2d(g, "branch2.0", x, half, 1, 1, 0, 1, 0)));
    x = cs_batchnorm(g, "branch2.4", cs_conv2d(g, "branch2.3", x, half, 3, stride, 1, half, 0));
    return cs_relu(g, cs_batchnorm(g, "branch2.6", cs_conv2d(g, "branch2.5", x, half, 1, 1, 0, 1, 0)));
}

static int shuffle_block(cs_graph *g, int x, int out, int stride)
{
    int in = x >= 0 ? cs_graph_tensor(g, x)->shape[1] : 0, half = out / 2, y;
    if (stride > 1) {
        int b1 = cs_batchnorm(g, "branch1.1", cs_conv2d(g, "branch1.0", x, in, 3, stride, 1, in, 0));
        b1 = cs_relu(g, cs_batchnorm(g, "branch1.3", cs_conv2d(g, "branch1.2", b1, half, 1, 1, 0, 1, 0)));
        y = cs_concat(g, b1, branch2(g, x, half, stride));
    } else {
        /* x.chunk(2, dim=1): the first half passes through */
        int x1 = cs_slice(g, x, 0, in / 2), x2 = cs_slice(g, x, in / 2, in - in / 2);
        y = cs_concat(g, x1, branch2(g, x2, half, 1));
    }
    return cs_shuffle(g, y, 2);
}

static int build(cs_graph *g, const cs_arch_config *cfg, int x)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    int stem = scaled(cfg, STEM_WIDTH);
    cs_graph_scope(g, NULL);
    if (cfg->stem == CS_STEM_IMAGENET) {
        x = cs_relu(g, cs_batchnorm(g, "conv1.1", cs_conv2d(g, "conv1.0", x, stem, 3, 2, 1, 1, 0)));
        x = cs_maxpool(g, x, 3, 2, 1);
    } else {
        x = cs_relu(g, cs_batchnorm(g, "conv1.1", cs_conv2d(g, "conv1.0", x, stem, 3, 1, 1, 1, 0)));
    }
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < cfg->depths[s]; b++) {
            cs_graph_scope(g, "%s.%d", stages[s].name, b);
            x = shuffle_block(g, x, widths[s], b == 0 ? 2 : 1);
        }
    cs_graph_scope(g, NULL);
    x = cs_batchnorm(g, "conv5.1", cs_conv2d(g, "conv5.0", x, LAST_WIDTH, 1, 1, 0, 1, 0));
    if (!cfg->no_last_relu)
        x = cs_relu(g, x);
    return cs_avgpool(g, x); /* torchvision: x.mean([2, 3]) */
}

static const cs_arch_iface iface = {
    .n_stages = 3,
    .stages = stages,
    .width_divisor = 8,
    .stage_widths = stage_widths,
    .count_params = count_params,
    .build = build,
    .head_name = "fc",
    .head_init = CS_INIT_UNIFORM_FAN_IN,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "shufflenetv2",
    .version = "1.0.0",
    .description = "ShuffleNetV2 x1.0 (Ma et al. 2018), torchvision layout; 3 stages",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
