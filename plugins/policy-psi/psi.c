/* psi.c: the paper's scaling policy: as shallow as the structure allows, then as wide as the budget allows. */
#include <cilscale/plugin.h>
#include <cilscale/policy.h>

static int scale(const cs_scale_request *req, cs_scale_result *res, cs_error *err)
{
    /* One block per stage keeps every stage, and so the network's structure
     * (its resolutions and channel transitions), with the fewest layers. */
    int depths[CS_MAX_STAGES];
    for (int i = 0; i < req->arch->n_stages; i++)
        depths[i] = 1;
    int rc = cs_policy_widest(req, depths, res, err);
    if (rc)
        return rc;
    /* The paper's d: the fraction of the reference blocks kept. */
    res->d = (double)cs_arch_blocks(req->arch, depths) / cs_arch_ref_blocks(req->arch);
    return CS_OK;
}

static const cs_policy_iface iface = {.scale = scale};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "psi",
    .version = "1.0.0",
    .description = "Feillet et al. 2022: one block per stage, then the widest w within the budget",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
