/* arch_no_count.c: an arch plugin without its required count_params entry: the loader must refuse it. */
#include <cilscale/arch.h>
#include <cilscale/plugin.h>

static const cs_stage stages[] = {{"only", 1, 8}};

static const cs_arch_iface iface = {.n_stages = 1, .stages = stages, .count_params = 0};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "no-count",
    .version = "0.0.0",
    .description = "test: arch lacking count_params",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
