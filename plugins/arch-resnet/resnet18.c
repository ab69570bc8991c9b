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

static const cs_arch_iface iface = {
    .n_stages = 4,
    .stages = stages,
    .width_divisor = 8,
    .count_params = count_params,
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
