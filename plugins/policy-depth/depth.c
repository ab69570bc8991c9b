/* depth.c: depth-only scaling: reference width (w = 1), the deepest d within the budget. */
#include <cilscale/plugin.h>
#include <cilscale/policy.h>

static int fits(double d, void *ctx)
{
    const cs_scale_request *req = ctx;
    int depths[CS_MAX_STAGES];
    cs_arch_depths_for(req->arch, d, cs_convention_depths(req->base.convention), depths);
    return cs_policy_count(req, 1.0, depths) <= req->budget;
}

static int scale(const cs_scale_request *req, cs_scale_result *res, cs_error *err)
{
    int depths[CS_MAX_STAGES];
    int64_t k = cs_search_last(1, (int64_t)CS_COEF_MAX * CS_GRID, CS_GRID, fits, (void *)req);
    if (k < 1) {
        cs_arch_depths_for(req->arch, 1.0 / CS_GRID, cs_convention_depths(req->base.convention), depths);
        return cs_policy_budget_error(req, cs_policy_count(req, 1.0, depths), err);
    }
    double d = (double)k / CS_GRID;
    cs_arch_depths_for(req->arch, d, cs_convention_depths(req->base.convention), depths);
    int rc = cs_policy_fill(req, 1.0, depths, res, err);
    if (rc)
        return rc;
    res->d = d;
    res->resolution = 1.0;
    res->phi = 0.0;
    return CS_OK;
}

static const cs_policy_iface iface = {.scale = scale};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "depth",
    .version = "1.0.0",
    .description = "depth only: reference width (w = 1), the deepest d within the budget",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
