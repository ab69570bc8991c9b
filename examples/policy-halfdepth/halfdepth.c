/* halfdepth.c: an example cilscale scaling policy, built out of tree.
 *
 * "halfdepth" keeps every stage of the reference network but halves its
 * depth: stage i gets max(1, round_half_up(0.5 * n_ref_i)) blocks. It then
 * takes the widest width coefficient w whose network still fits the budget.
 * That sits between the shipped policies "psi" (one block per stage) and
 * "width" (all the reference blocks).
 *
 * The policy only talks to the architecture through the cs_arch_iface it is
 * handed and the helpers in libcilscale, so it works with every architecture
 * plugin, present and future: it must never name one.
 *
 * Build and load: see README.md beside this file. */
#include <cilscale/plugin.h> /* cs_plugin_desc, CS_ABI_VERSION, CS_PLUGIN_EXPORT */
#include <cilscale/policy.h> /* cs_policy_iface and the helpers a policy uses */

/* The depth coefficient this policy applies to every stage. */
#define HALF 0.5

/* The policy's one entry point. req names the reference architecture
 * (req->arch), the budget and the fixed fields of the network (classes, input
 * channels, stem, head, in req->base). On success fill *res and return CS_OK;
 * on failure fill *err with one line and return a negative cs_status. */
static int scale(const cs_scale_request *req, cs_scale_result *res, cs_error *err)
{
    /* 1. Depths. cs_arch_depths_for applies a depth coefficient to each
     *    stage's reference depth with the same rounding as
     *    `cilscale scale --depth 0.5`, and never goes below one block. */
    int depths[CS_MAX_STAGES];
    cs_arch_depths_for(req->arch, HALF, CS_DEPTH_ROUND_HALF_UP, depths);

    /* 2. Width. cs_policy_widest searches w on the grid 1/CS_GRID ..
     *    CS_COEF_MAX at these depths and fills *res with the widest network
     *    within the budget: w, cfg, widths and the exact params. If even the
     *    narrowest network is over the budget it returns CS_ERR_BUDGET with
     *    the message every policy uses (cs_policy_budget_error), which
     *    `cilscale scale` turns into exit status 1. Pass that on unchanged. */
    int rc = cs_policy_widest(req, depths, res, err);
    if (rc)
        return rc;

    /* 3. Report the coefficients as this policy defines them.
     *    cs_policy_widest left d = 1, resolution = 1 and phi = 0; our d is
     *    the coefficient we applied. The input resolution is not scaled and
     *    there is no compound coefficient, so those stay as they are. */
    res->d = HALF;
    return CS_OK;
}

/* The interface struct for a policy has one member. It must live in static
 * storage: the loader keeps the pointer for as long as the plugin is loaded. */
static const cs_policy_iface iface = {.scale = scale};

/* The descriptor the loader reads. Every field is checked on load: the ABI
 * version must equal the one cilscale was built with, the kind must be
 * known, the name must be non-empty and unique among the loaded policies,
 * and iface must be complete for the kind (a policy needs scale). */
static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_POLICY,
    .name = "halfdepth", /* what --policy selects */
    .version = "1.0.0",  /* this plugin's own version, free text */
    .description = "example: half the reference depth per stage (d = 0.5), then the widest w within the budget",
    .iface = &iface,
};

/* The only symbol the plugin exports. meson.build compiles with hidden
 * visibility, so everything above stays private to this .so; CS_PLUGIN_EXPORT
 * makes this one function visible to the loader's dlsym. */
CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
