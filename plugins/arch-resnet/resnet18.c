/* resnet18.c: the ResNet18 architecture plugin (torchvision's resnet18, scalable). */
#include <cilscale/arch.h>
#include <cilscale/plugin.h>

/* torchvision: layer1..layer4 of BasicBlocks, 2 blocks each. The stem stays
 * 64 channels at every width; only the four stages scale. */
static const cs_stage stages[] = {
    {"layer1", 2, 64},
    {"layer2", 2, 128},
    {"layer3", 2, 256},
    {"layer4", 2, 512},
};

#define STEM_WIDTH 64

static const cs_arch_iface iface;

static int64_t conv_bn(int64_t in, int64_t out, int64_t k) { return k * k * in * out + 2 * out; }

static int64_t count_params(const cs_arch_config *cfg)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    int64_t k = cfg->stem == CS_STEM_IMAGENET ? 7 : 3;
    int64_t n = conv_bn(cfg->in_channels, STEM_WIDTH, k);
    int64_t in = STEM_WIDTH;
    for (int s = 0; s < 4; s++) {
        int64_t out = widths[s];
        for (int b = 0; b < cfg->depths[s]; b++) {
            int stride = (s > 0 && b == 0) ? 2 : 1;
            n += conv_bn(in, out, 3) + conv_bn(out, out, 3);
            if (stride != 1 || in != out) /* downsample: 1x1 conv + bn */
                n += conv_bn(in, out, 1);
            in = out;
        }
    }
    n += cfg->head == CS_HEAD_LINEAR ? in * cfg->n_classes + cfg->n_classes : in * cfg->n_classes + 1;
    return n;
}

/* torchvision's BasicBlock in scope layer{s}.{b}: conv3x3(stride) bn relu
 * conv3x3 bn, plus the identity or downsample (1x1 conv(stride) + bn), relu.
 * The last block's closing relu is left out with last_relu = 0. */
static int basic_block(cs_graph *g, int x, int out, int stride, int last_relu)
{
    int in = x >= 0 ? cs_graph_tensor(g, x)->shape[1] : 0;
    int y = cs_conv2d(g, "conv1", x, out, 3, stride, 1, 1, 0);
    y = cs_relu(g, cs_batchnorm(g, "bn1", y));
    y = cs_conv2d(g, "conv2", y, out, 3, 1, 1, 1, 0);
    y = cs_batchnorm(g, "bn2", y);
    int id = x;
    if (stride != 1 || in != out)
        id = cs_batchnorm(g, "downsample.1", cs_conv2d(g, "downsample.0", x, out, 1, stride, 0, 1, 0));
    y = cs_add(g, y, id);
    return last_relu ? cs_relu(g, y) : y;
}

static int build(cs_graph *g, const cs_arch_config *cfg, int x)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    cs_graph_scope(g, NULL);
    if (cfg->stem == CS_STEM_IMAGENET) {
        x = cs_conv2d(g, "conv1", x, STEM_WIDTH, 7, 2, 3, 1, 0);
        x = cs_relu(g, cs_batchnorm(g, "bn1", x));
        x = cs_maxpool(g, x, 3, 2, 1);
    } else {
        x = cs_conv2d(g, "conv1", x, STEM_WIDTH, 3, 1, 1, 1, 0);
        x = cs_relu(g, cs_batchnorm(g, "bn1", x));
    }
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < cfg->depths[s]; b++) {
            int last = s == 3 && b == cfg->depths[s] - 1;
            cs_graph_scope(g, "%s.%d", stages[s].name, b);
            x = basic_block(g, x, widths[s], (s > 0 && b == 0) ? 2 : 1, !(last && cfg->no_last_relu));
        }
    cs_graph_scope(g, NULL);
    return cs_avgpool(g, x);
}

static const cs_arch_iface iface = {
    .n_stages = 4,
    .stages = stages,
    .width_divisor = 8,
    .count_params = count_params,
    .build = build,
    .head_name = "fc",
    .head_init = CS_INIT_UNIFORM_FAN_IN,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "resnet18",
    .version = "1.0.0",
    .description = "ResNet18 (He et al. 2016), torchvision layout; 4 stages of BasicBlocks",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
