/* cmd_scale.c: `cilscale scale`: the network a policy picks for a budget, or the count of a given one. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    "  --depth D         depth coefficient: stage depth = max(1, round_half_up(D * n_ref)) (default 1)\n"
    "  --depths LIST     blocks per stage, comma separated, in place of --depth\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 no network fits the budget, the configuration given is over\n"
    "--budget, or the plugins.conf cannot be read; 2 bad usage or unknown plugin.\n";

static int parse_depths(const char *s, const cs_arch_iface *a, int *depths)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 100000 || n == a->n_stages || (*end && *end != ','))
            goto bad;
        depths[n++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            goto bad;
    }
    if (n == a->n_stages)
        return 0;
bad:
    fprintf(stderr, "cilscale scale: --depths '%s': expected %d whole numbers >= 1 separated by commas\n", s,
            a->n_stages);
    return -1;
}

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
    static const struct option longopts[] = {
        CLI_NET_LONG_OPTIONS,
        {"width", required_argument, 0, 'w'},
        {"depth", required_argument, 0, 'd'},
        {"depths", required_argument, 0, 'D'},
        {0, 0, 0, 0},
    };
    cli_net_opts o;
    cli_net_defaults(&o);
    double w = 1, d = 1;
    const char *depths_text = NULL;
    int manual = 0, have_depth = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int took = cli_net_option("scale", &o, c, optarg);
        if (took < 0)
            return CLI_USAGE;
        if (took)
            continue;
        switch (c) {
        case 'h': fputs(usage, stdout); return CLI_OK;
        case 'w':
            if (cli_positive("scale", "width", optarg, &w))
                return CLI_USAGE;
            manual = 1;
            break;
        case 'd':
            if (cli_positive("scale", "depth", optarg, &d))
                return CLI_USAGE;
            manual = 1;
            have_depth = 1;
            break;
        case 'D': depths_text = optarg; manual = 1; break;
        default: cli_bad_option("scale", optopt, argv, optind); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cilscale scale: unexpected argument '%s' (see cilscale scale --help)\n", argv[optind]);
        return CLI_USAGE;
    }
    if (!o.arch) {
        fprintf(stderr, "cilscale scale: --arch is required (see cilscale scale --help)\n");
        return CLI_USAGE;
    }
    if (manual && o.policy) {
        fprintf(stderr, "cilscale scale: give --policy or --width/--depth/--depths, not both\n");
        return CLI_USAGE;
    }
    if (have_depth && depths_text) {
        fprintf(stderr, "cilscale scale: give --depth or --depths, not both\n");
        return CLI_USAGE;
    }
    if (!manual && !o.have_budget) {
        fprintf(stderr, "cilscale scale: --budget is required with a policy (see cilscale scale --help)\n");
        return CLI_USAGE;
    }
    cs_registry *reg = cli_load_plugins("scale", o.plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    int rc = CLI_USAGE;
    const cs_plugin *ap = cli_find("scale", reg, CS_KIND_ARCH, o.arch);
    const char *policy = manual ? NULL : (o.policy ? o.policy : "psi");
    const cs_plugin *pp = policy ? cli_find("scale", reg, CS_KIND_POLICY, policy) : NULL;
    if (!ap || (policy && !pp))
        goto out;
    const cs_arch_iface *arch = ap->iface;
    cs_scale_request req = {
        .arch_name = ap->name,
        .arch = arch,
        .policy_name = policy,
        .budget = o.have_budget ? o.budget : INT64_MAX,
        .base = {.in_channels = o.in_channels, .n_classes = o.classes, .stem = o.stem, .head = o.head},
    };
    cs_scale_result res;
    memset(&res, 0, sizeof res);
    cs_error err;
    if (manual) {
        int depths[CS_MAX_STAGES];
        if (depths_text) {
            if (parse_depths(depths_text, arch, depths))
                goto out;
        } else {
            cs_arch_depths_for(arch, d, CS_DEPTH_ROUND_HALF_UP, depths);
        }
        if (cs_policy_fill(&req, w, depths, &res, &err)) {
            fprintf(stderr, "cilscale scale: %s\n", err.msg);
            goto out;
        }
        res.d = depths_text ? (double)cs_arch_blocks(arch, depths) / cs_arch_ref_blocks(arch) : d;
        res.resolution = 1;
    } else if (((const cs_policy_iface *)pp->iface)->scale(&req, &res, &err)) {
        fprintf(stderr, "cilscale scale: %s\n", err.msg);
        rc = err.status == CS_ERR_BUDGET ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    cs_arch_config ref = cs_arch_reference(arch, &req.base);
    int64_t ref_params = 0;
    cs_arch_count(arch, &ref, &ref_params, NULL);
    if (o.json)
        print_json(&o, policy, &req, &res, ref_params);
    else
        print_text(&o, policy, &req, &res, ref_params);
    rc = CLI_OK;
    if (manual && o.have_budget && res.params > o.budget) {
        char a[32], b[32];
        fprintf(stderr, "cilscale scale: %s parameters is over the budget of %s\n",
                cli_thousands(res.params, a, sizeof a), cli_thousands(o.budget, b, sizeof b));
        rc = CLI_FAIL;
    }
out:
    cs_registry_free(reg);
    return rc;
}
