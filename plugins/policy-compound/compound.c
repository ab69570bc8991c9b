/* compound.c: EfficientNet's compound scaling: depth 1.2^phi, width 1.1^phi, resolution 1.15^phi. */
#include <math.h>

#include <cilscale/plugin.h>
#include <cilscale/policy.h>

/* Tan & Le 2019, found by grid search for EfficientNet-B0 (alpha * beta^2 * gamma^2 ~ 2). */
#define ALPHA 1.2  /* depth */
#define BETA 1.1   /* width */
#define GAMMA 1.15 /* resolution */

static void network_for(const cs_scale_request *req, double phi, double *w, int *depths)
{
    *w = pow(BETA, phi);
    /* EfficientNet rounds stage repeats up: ceil(d * n). */
    cs_arch_depths_for(req->arch, pow(ALPHA, phi), CS_DEPTH_CEIL, depths);
}

static int fits(double phi, void *ctx)
{
    const cs_scale_request *req = ctx;
    double w;
    int depths[CS_MAX_STAGES];
    network_for(req, phi, &w, depths);
    return cs_policy_count(req, w, depths) <= req->budget;
}

static int scale(const cs_scale_request *req, cs_scale_result *res, cs_error *err)
{
    const int64_t kmax = (int64_t)CS_PHI_MAX * CS_GRID;
    int64_t k = cs_search_last(-kmax, kmax, CS_GRID, fits, (void *)req);
    double w;
    int depths[CS_MAX_STAGES];
    if (k < -kmax) {
        network_for(req, -(double)CS_PHI_MAX, &w, depths);
        return cs_policy_budget_error(req, cs_policy_count(req, w, depths), err);
    }
    double phi = (double)k / CS_GRID;
    network_for(req, phi, &w, depths);
    int rc = cs_policy_fill(req, w, depths, res, err);
    if (rc)
        return rc;
    res->phi = phi;
    res->d = pow(ALPHA, phi);
    res->resolution = pow(GAMMA, phi);
    return CS_OK;
}

static const cs_policy_iface iface = {.scale = scale};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "compound",
    .version = "1.0.0",
    .description = "EfficientNet compound scaling (Tan & Le 2019): d=1.2^phi, w=1.1^phi, r=1.15^phi",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
