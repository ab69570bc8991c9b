/* backend_score0.c: a valid backend plugin whose cs_plugin_score returns 0 (cannot run here). */
#include <cilscale/plugin.h>

static const int iface_placeholder = 1;

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "score0",
    .version = "0.1.0",
    .description = "test: a backend that cannot run on this machine",
    .iface = &iface_placeholder,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
CS_PLUGIN_EXPORT int cs_plugin_score(void) { return 0; }
