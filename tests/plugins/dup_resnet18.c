/* dup_resnet18.c: a second arch plugin named 'resnet18' (same kind and name as the shipped one): a duplicate. */
#include <cilscale/arch.h>
#include <cilscale/plugin.h>

static const cs_stage stages[] = {{"only", 1, 8}};

static int64_t count_params(const cs_arch_config *cfg) { return cfg->n_classes; }

static const cs_arch_iface iface = {.n_stages = 1, .stages = stages, .count_params = count_params};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "resnet18",
    .version = "9.9.9",
    .description = "test: duplicate of the shipped resnet18",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
