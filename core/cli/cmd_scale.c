/* cmd_scale.c: `cilscale scale`: the network a policy picks for a budget, or the count of a given one. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: cilscale scale --arch A --budget M [--policy P] [options]\n"
    "       cilscale scale --arch A [--width W] [--depth D | --depths N1,N2,...] [--budget M] [options]\n"
    "\n"
    "Scales a reference architecture to a parameter budget with a scaling policy\n"
    "and prints the network chosen and its exact parameter count. With --width\n"
    "and/or --depth (or --depths) it counts that one configuration instead.\n"
    "\n"
    "  --budget M        the most parameters allowed\n"
    "  --policy P        scaling policy (default psi)\n"
    "  --width W         width coefficient (default 1)\n"
    "  --depth D         depth coefficient: stage depth round_half_up(D * n_ref), at least 1, one more\n"
    "                    when below 0.9 * D * n_ref (the AdvisIL authors' rule) (default 1)\n"
    "  --depths LIST     blocks per stage, comma separated, in place of --depth\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 no network fits the budget, the configuration given is over\n"
    "--budget, or the plugins.conf cannot be read; 2 bad usage or unknown plugin.\n";

static void print_text(const cli_net_opts *o, const char *policy, const cs_scale_request *req,
                       const cs_scale_result *res, int64_t ref_params)
{
    char a[32], b[32];
    const cs_arch_iface *arch = req->arch;
    if (policy)
        printf("%s scaled by %s to a budget of %s parameters\n", o->arch, policy, cli_thousands(o->budget, a, sizeof a));
    else
        printf("%s at w = %.3f\n", o->arch, res->w);
    printf("  w = %.3f   d = %.3f   resolution x%.3f", res->w, res->d, res->resolution);
    if (res->phi != 0)
        printf("   phi = %.3f", res->phi);
    printf("\n  %d classes, %d input channels, %s stem, %s head\n", o->classes, o->in_channels, cs_stem_name(o->stem),
           cs_head_name(o->head));
    printf("  %-16s %9s %6s %9s %6s\n", "stage", "ref depth", "depth", "ref width", "width");
    for (int i = 0; i < arch->n_stages; i++)
        printf("  %-16s %9d %6d %9d %6d\n", arch->stages[i].name, arch->stages[i].ref_depth, res->cfg.depths[i],
               arch->stages[i].ref_width, res->widths[i]);
    printf("  params %s", cli_thousands(res->params, a, sizeof a));
    if (o->have_budget)
        printf(" (%.1f%% of the budget)", 100.0 * (double)res->params / (double)o->budget);
    printf("; reference %s\n", cli_thousands(ref_params, b, sizeof b));
}

static void print_json(const cli_net_opts *o, const char *policy, const cs_scale_request *req,
                       const cs_scale_result *res, int64_t ref_params)
{
    printf("{\"arch\": ");
    cli_json_string(stdout, o->arch);
    printf(", \"policy\": ");
    if (policy)
        cli_json_string(stdout, policy);
    else
        printf("null");
    if (o->have_budget)
        printf(", \"budget\": %lld", (long long)o->budget);
    else
        printf(", \"budget\": null");
    printf(", \"w\": %.6g, \"d\": %.6g, \"phi\": %.6g, \"resolution\": %.6g", res->w, res->d, res->phi,
           res->resolution);
    printf(", \"depths\": ");
    cli_json_ints(stdout, res->cfg.depths, req->arch->n_stages);
    printf(", \"widths\": ");
    cli_json_ints(stdout, res->widths, req->arch->n_stages);
    printf(", \"params\": %lld, \"reference_params\": %lld", (long long)res->params, (long long)ref_params);
    printf(", \"classes\": %d, \"in_channels\": %d, \"stem\": \"%s\", \"head\": \"%s\"}\n", o->classes,
           o->in_channels, cs_stem_name(o->stem), cs_head_name(o->head));
}

int cmd_scale(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_NET_LONG_OPTIONS, {0, 0, 0, 0}};
    cli_net_opts o;
    cli_net_defaults(&o);
    int rc = cli_getopt("scale", argc, argv, longopts, usage, &o, NULL, NULL, 0);
    if (rc != CLI_CONTINUE)
        return rc;
    if (cli_net_validate("scale", &o))
        return CLI_USAGE;
    cs_registry *reg = cli_load_plugins("scale", o.plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    const cs_plugin *ap;
    cs_scale_result res;
    rc = cli_net_resolve("scale", reg, &o, &ap, &res);
    if (rc)
        goto out;
    const cs_arch_iface *arch = ap->iface;
    cs_scale_request req = {.arch_name = ap->name, .arch = arch, .base = res.cfg};
    const char *policy = o.manual ? NULL : (o.policy ? o.policy : "psi");
    cs_arch_config ref = cs_arch_reference(arch, &req.base);
    int64_t ref_params = 0;
    cs_arch_count(arch, &ref, &ref_params, NULL);
    if (o.json)
        print_json(&o, policy, &req, &res, ref_params);
    else
        print_text(&o, policy, &req, &res, ref_params);
    if (o.manual && o.have_budget && res.params > o.budget) {
        char a[32], b[32];
        fprintf(stderr, "cilscale scale: %s parameters is over the budget of %s\n",
                cli_thousands(res.params, a, sizeof a), cli_thousands(o.budget, b, sizeof b));
        rc = CLI_FAIL;
    }
out:
    cs_registry_free(reg);
    return rc;
}
