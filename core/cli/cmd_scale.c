/* cmd_scale.c: `cilscale scale`: the network a policy picks for a budget, or the count of a given one. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/experiment.h"

static const char usage[] =
    "usage: cilscale scale --arch A --budget M [--policy P] [options]\n"
    "       cilscale scale --arch A [--width W] [--depth D | --depths N1,N2,...] [--budget M] [options]\n"
    "       cilscale scale --config EXPERIMENT.cfg [--set group.key=value ...] [--json]\n"
    "\n"
    "Scales a reference architecture to a parameter budget with a scaling policy\n"
    "and prints the network chosen and its exact parameter count. With --width\n"
    "and/or --depth (or --depths) it counts that one configuration instead. With\n"
    "--config it prints the network `cilscale run` would train for that experiment\n"
    "(its data's classes and channels, its CIL algorithm's head, its model keys).\n"
    "\n"
    "  --budget M        the most parameters allowed\n"
    "  --policy P        scaling policy (default psi)\n"
    "  --width W         width coefficient (default 1)\n"
    "  --depth D         depth coefficient: stage depth round_half_up(D * n_ref), at least 1, one more\n"
    "                    when below 0.9 * D * n_ref (the AdvisIL authors' rule) (default 1)\n"
    "  --depths LIST     blocks per stage, comma separated, in place of --depth\n"
    "  --config FILE     an experiment file: count what `cilscale run FILE` trains\n"
    "  --set K=V         with --config: override one key, as cilscale run --set\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 no network fits the budget, the configuration given is over\n"
    "--budget, or the plugins.conf cannot be read; 2 bad usage or unknown plugin.\n";

static void print_text(const cli_net_opts *o, const char *policy, const cs_scale_request *req,
                       const cs_scale_result *res, int64_t ref_params, int64_t counted)
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
    printf("\n  %d classes, %d input channel%s, %s stem, %s head\n", o->classes, o->in_channels,
           o->in_channels == 1 ? "" : "s", cs_stem_name(o->stem), cs_head_name(o->head));
    printf("  %-16s %9s %6s %9s %6s\n", "stage", "ref depth", "depth", "ref width", "width");
    for (int i = 0; i < arch->n_stages; i++)
        printf("  %-16s %9d %6d %9d %6d\n", arch->stages[i].name, arch->stages[i].ref_depth, res->cfg.depths[i],
               arch->stages[i].ref_width, res->widths[i]);
    printf("  params %s", cli_thousands(res->params, a, sizeof a));
    if (o->have_budget)
        printf(" (%s%.1f%% of the budget)", counted != res->params ? "counted as the budget counts: " : "",
               100.0 * (double)counted / (double)o->budget);
    printf("; reference %s\n", cli_thousands(ref_params, b, sizeof b));
}

static void print_json(const cli_net_opts *o, const char *policy, const cs_scale_request *req,
                       const cs_scale_result *res, int64_t ref_params, int64_t counted, const char *count)
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
    printf(", \"classes\": %d, \"in_channels\": %d, \"stem\": \"%s\", \"head\": \"%s\"", o->classes,
           o->in_channels, cs_stem_name(o->stem), cs_head_name(o->head));
    printf(", \"budget_counted\": %lld, \"budget_counts\": ", (long long)counted);
    if (count)
        cli_json_string(stdout, count);
    else
        printf("\"%d classes, %d input channels, %s stem, %s head\"", o->classes, o->in_channels,
               cs_stem_name(o->stem), cs_head_name(o->head));
    printf("}\n");
}

typedef struct config_opts {
    const char *file, *sets[64];
    int n_sets;
} config_opts;

enum { O_CONFIG = 300, O_SET };

static int take_option(void *ctx, int opt, const char *arg)
{
    config_opts *c = ctx;
    if (opt == O_CONFIG) {
        c->file = arg;
        return CLI_OPT_TAKEN;
    }
    if (opt != O_SET)
        return CLI_OPT_UNKNOWN;
    if (c->n_sets == 64) {
        fprintf(stderr, "cilscale scale: at most 64 --set options\n");
        return CLI_OPT_BAD;
    }
    c->sets[c->n_sets++] = arg;
    return CLI_OPT_TAKEN;
}

/* scale --config: the network of an experiment file, as run resolves it. */
static int scale_config(const config_opts *c, const cli_net_opts *net)
{
    static cs_experiment e;
    cs_experiment_defaults(&e);
    cs_error err;
    if (cs_experiment_load(c->file, &e, &err)) {
        fprintf(stderr, "cilscale scale: %s\n", err.msg);
        return CLI_USAGE;
    }
    for (int i = 0; i < c->n_sets; i++)
        if (cs_experiment_set(&e, c->sets[i], &err)) {
            fprintf(stderr, "cilscale scale: %s\n", err.msg);
            return CLI_USAGE;
        }
    cs_registry *reg = cli_load_plugins("scale", net->plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    static cs_run_result res;
    cs_scale_result r;
    int rc = cs_experiment_network(&e, reg, &r, &res, &err);
    if (rc) {
        fprintf(stderr, "cilscale scale: %s\n", err.msg);
        cs_registry_free(reg);
        return rc == CS_ERR_BUDGET ? CLI_FAIL : rc == CS_ERR_ARG ? CLI_USAGE : CLI_FAIL;
    }
    const cs_plugin *ap = cs_plugin_lookup(reg, CS_KIND_ARCH, e.arch, &err);
    cli_net_opts o = *net;
    o.arch = e.arch;
    o.have_budget = !e.manual;
    o.budget = e.budget;
    o.classes = r.cfg.n_classes;
    o.in_channels = r.cfg.in_channels;
    o.stem = r.cfg.stem;
    o.head = r.cfg.head;
    o.manual = e.manual;
    cs_scale_request req = {.arch_name = ap->name, .arch = ap->iface, .base = r.cfg};
    cs_arch_config ref = cs_arch_reference(ap->iface, &r.cfg);
    int64_t ref_params = 0;
    cs_arch_count(ap->iface, &ref, &ref_params, NULL);
    const char *policy = e.manual ? NULL : res.policy;
    if (o.json) {
        print_json(&o, policy, &req, &r, ref_params, res.counted, res.count);
    } else {
        print_text(&o, policy, &req, &r, ref_params, res.counted);
        char a[32];
        if (!e.manual)
            printf("  the budget is held to %s parameters, counting %s\n", cli_thousands(res.counted, a, sizeof a),
                   res.count);
        printf("  (what `cilscale run %s` trains%s)\n", c->file, c->n_sets ? " with these --set" : "");
    }
    cs_registry_free(reg);
    return CLI_OK;
}

int cmd_scale(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_NET_LONG_OPTIONS, {"config", required_argument, 0, O_CONFIG},
                                             {"set", required_argument, 0, O_SET}, {0, 0, 0, 0}};
    cli_net_opts o;
    cli_net_defaults(&o);
    config_opts co = {0};
    int rc = cli_getopt("scale", argc, argv, longopts, usage, &o, take_option, &co, 0);
    if (rc != CLI_CONTINUE)
        return rc;
    if (co.n_sets && !co.file) {
        fprintf(stderr, "cilscale scale: --set needs --config EXPERIMENT.cfg\n");
        return CLI_USAGE;
    }
    if (co.file) {
        if (o.arch || o.policy || o.manual || o.have_budget || o.have_stem) {
            fprintf(stderr, "cilscale scale: --config takes the network from the experiment file: give no --arch, "
                            "--policy, --budget, --width, --depth(s) or --stem with it (use --set)\n");
            return CLI_USAGE;
        }
        return scale_config(&co, &o);
    }
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
        print_json(&o, policy, &req, &res, ref_params, res.params, NULL);
    else
        print_text(&o, policy, &req, &res, ref_params, res.params);
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
