/* tiny_arch.c: a valid one-stage arch plugin 'tiny' (params = width * depth * classes) for the loader's success paths. */
#include <cilscale/arch.h>
#include <cilscale/plugin.h>

static const cs_stage stages[] = {{"only", 1, 16}};
static const cs_arch_iface iface;

static int64_t count_params(const cs_arch_config *cfg)
{
    int widths[CS_MAX_STAGES];
    cs_arch_widths(&iface, cfg, widths);
    return (int64_t)widths[0] * cfg->depths[0] * cfg->n_classes;
}

static const cs_arch_iface iface = {.n_stages = 1, .stages = stages, .count_params = count_params};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_ARCH,
    .name = "tiny",
    .version = "0.1.0",
    .description = "test: a tiny valid architecture",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
