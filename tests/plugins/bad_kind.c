/* bad_kind.c: a plugin of unknown kind 99: the loader must refuse it. */
#include <cilscale/plugin.h>

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = 99,
    .name = "bad-kind",
    .version = "0.0.0",
    .description = "test: unknown kind",
    .iface = &desc,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
