/* policy_no_scale.c: a policy plugin without its required scale entry: the loader must refuse it. */
#include <cilscale/plugin.h>
#include <cilscale/policy.h>

static const cs_policy_iface iface = {.scale = 0};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "no-scale",
    .version = "0.0.0",
    .description = "test: policy lacking scale",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
