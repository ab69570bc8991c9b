/* width.c: width-only scaling: reference depths, the widest w within the budget. */
#include <cilscale/plugin.h>
#include <cilscale/policy.h>

static int scale(const cs_scale_request *req, cs_scale_result *res, cs_error *err)
{
    int depths[CS_MAX_STAGES];
    cs_arch_depths_for(req->arch, 1.0, CS_DEPTH_ROUND_HALF_UP, depths);
    return cs_policy_widest(req, depths, res, err);
}

static const cs_policy_iface iface = {.scale = scale};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "width",
    .version = "1.0.0",
    .description = "width only: reference depths (d = 1), the widest w within the budget",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
