/* bad_abi.c: a plugin built for another plugin ABI (CS_ABI_VERSION + 1): the loader must refuse it. */
#include <cilscale/plugin.h>

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION + 1,
    .kind = CS_KIND_POLICY,
    .name = "bad-abi",
    .version = "0.0.0",
    .description = "test: wrong ABI version",
    .iface = &desc,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
