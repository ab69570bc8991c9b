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
/* 116, 232 and 464 are not multiples of 8, so rounding to 8 would change the
 * reference network itself (116 -> 120). Multiples of 4 keep it exact and keep
 * each stage's channel split into two even halves. */
#define DIVISOR 4

static const cs_arch_iface iface;

static int64_t conv_bn(int64_t in, int64_t out, int64_t k) { return k * k * in * out + 2 * out; }
static int64_t dw_bn(int64_t c) { return 9 * c + 2 * c; }

static int64_t count_params(const cs_arch_config *cfg)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    int64_t in = cs_make_divisible(STEM_WIDTH * cfg->w, DIVISOR);
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

static const cs_arch_iface iface = {
    .n_stages = 3,
    .stages = stages,
    .width_divisor = DIVISOR,
    .count_params = count_params,
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
