/* mobilenetv2.c: the MobileNetV2 architecture plugin (torchvision's mobilenet_v2, scalable). */
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

static const cs_arch_iface iface = {
    .n_stages = 7,
    .stages = stages,
    .width_divisor = 8,
    .count_params = count_params,
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
