/* cmd_grid.c: `cilscale grid`: for each depth vector, the widest network under a budget,
 * with every policy's pick marked (the table behind the paper's Figure 1). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: cilscale grid --arch A --budget M [--max-d D] [options]\n"
    "\n"
    "For each distinct depth vector reached by a depth coefficient d in (0, D]\n"
    "(stage depth: the AdvisIL authors' rule, round_half_up(d * n_ref), at least 1,\n"
    "one more when below 0.9 * d * n_ref), prints the widest width\n"
    "coefficient w whose network fits the budget, with its exact count, and marks\n"
    "the network each loaded scaling policy picks. A policy pick that is not on\n"
    "the grid (compound's, depth's) is added as a row of its own.\n"
    "\n"
    "  --budget M        the most parameters allowed\n"
    "  --max-d D         largest depth coefficient to list (default 1)\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 the plugins.conf cannot be read; 2 bad usage or unknown plugin.\n";

#define MAX_ROWS 512
#define MAX_PICKS 16

typedef struct row {
    int depths[CS_MAX_STAGES];
    int fits;            /* some w fits the budget */
    cs_scale_result res; /* the widest network when it fits */
    int64_t smallest;    /* count at the smallest w, when it does not */
    const char *picks[MAX_PICKS];
    int n_picks;
} row;

static int same_network(const cs_arch_iface *a, const cs_scale_result *x, const row *r)
{
    if (!r->fits || memcmp(x->cfg.depths, r->depths, sizeof(int) * (size_t)a->n_stages) != 0)
        return 0;
    return memcmp(x->widths, r->res.widths, sizeof(int) * (size_t)a->n_stages) == 0 && x->params == r->res.params;
}

static int cmp_rows(const void *pa, const void *pb)
{
    const row *a = pa, *b = pb;
    for (int i = 0; i < CS_MAX_STAGES; i++)
        if (a->depths[i] != b->depths[i])
            return a->depths[i] < b->depths[i] ? -1 : 1;
    return 0;
}

/* The distinct depth vectors along the d grid, each with its widest network
 * under the budget (or, when none fits, the count at the smallest width).
 * Consecutive d give the same vector for long runs, so comparing with the
 * last one is enough. Returns the number of rows. */
static int grid_rows(const cs_scale_request *req, double max_d, row *rows)
{
    const cs_arch_iface *arch = req->arch;
    int n_rows = 0;
    for (int64_t k = 1; k <= (int64_t)(max_d * CS_GRID + 0.5) && n_rows < MAX_ROWS; k++) {
        int depths[CS_MAX_STAGES] = {0};
        cs_arch_depths_for(arch, (double)k / CS_GRID, cs_convention_depths(req->base.convention), depths);
        if (n_rows && memcmp(depths, rows[n_rows - 1].depths, sizeof depths) == 0)
            continue;
        memcpy(rows[n_rows++].depths, depths, sizeof depths);
    }
    for (int i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        cs_error err;
        r->fits = cs_policy_widest(req, r->depths, &r->res, &err) == CS_OK;
        if (!r->fits)
            r->smallest = cs_policy_count(req, 1.0 / CS_GRID, r->depths);
        r->res.d = (double)cs_arch_blocks(arch, r->depths) / cs_arch_ref_blocks(arch);
    }
    return n_rows;
}

/* Marks every loaded policy's pick, adding a row where it is off the grid;
 * returns the new number of rows. */
static int mark_picks(const cs_registry *reg, cs_scale_request req, row *rows, int n_rows)
{
    for (size_t i = 0; i < cs_registry_count(reg); i++) {
        const cs_plugin *p = cs_registry_at(reg, i);
        if (p->kind != CS_KIND_POLICY)
            continue;
        cs_scale_result res;
        cs_error err;
        req.policy_name = p->name;
        if (((const cs_policy_iface *)p->iface)->scale(&req, &res, &err))
            continue; /* over budget for this policy: nothing to mark */
        int j = 0;
        while (j < n_rows && !same_network(req.arch, &res, &rows[j]))
            j++;
        if (j == n_rows) {
            if (n_rows == MAX_ROWS)
                continue;
            memcpy(rows[j].depths, res.cfg.depths, sizeof rows[j].depths);
            rows[j].fits = 1;
            rows[j].res = res;
            n_rows++;
        }
        if (rows[j].n_picks < MAX_PICKS)
            rows[j].picks[rows[j].n_picks++] = p->name;
    }
    return n_rows;
}

static void print_json(const cli_net_opts *o, const cs_arch_iface *arch, const row *rows, int n_rows)
{
    printf("{\"arch\": ");
    cli_json_string(stdout, o->arch);
    printf(", \"budget\": %lld, \"classes\": %d, \"in_channels\": %d, \"stem\": \"%s\", \"head\": \"%s\", "
           "\"rows\": [",
           (long long)o->budget, o->classes, o->in_channels, cs_stem_name(o->stem), cs_head_name(o->head));
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        printf("%s\n  {\"depths\": ", i ? "," : "");
        cli_json_ints(stdout, r->depths, arch->n_stages);
        if (r->fits) {
            printf(", \"fits\": true, \"w\": %.6g, \"d\": %.6g, \"widths\": ", r->res.w, r->res.d);
            cli_json_ints(stdout, r->res.widths, arch->n_stages);
            printf(", \"params\": %lld", (long long)r->res.params);
        } else {
            printf(", \"fits\": false, \"smallest_params\": %lld", (long long)r->smallest);
        }
        printf(", \"policies\": [");
        for (int k = 0; k < r->n_picks; k++) {
            printf("%s", k ? ", " : "");
            cli_json_string(stdout, r->picks[k]);
        }
        printf("]}");
    }
    printf("\n]}\n");
}

static void print_table(const cli_net_opts *o, const cs_arch_iface *arch, const row *rows, int n_rows)
{
    char a[32];
    printf("%s under a budget of %s parameters (%d classes, %s stem, %s head)\n", o->arch,
           cli_thousands(o->budget, a, sizeof a), o->classes, cs_stem_name(o->stem), cs_head_name(o->head));
    printf("%-28s %7s %7s %-32s %12s %6s  %s\n", "depths", "d", "w", "widths", "params", "use", "picked by");
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        char dv[128] = "", wv[128] = "";
        size_t u = 0, v = 0;
        for (int s = 0; s < arch->n_stages; s++) {
            u += (size_t)snprintf(dv + u, sizeof dv - u, "%s%d", s ? "," : "", r->depths[s]);
            if (r->fits)
                v += (size_t)snprintf(wv + v, sizeof wv - v, "%s%d", s ? "," : "", r->res.widths[s]);
            if (u >= sizeof dv || v >= sizeof wv)
                break;
        }
        if (r->fits) {
            printf("%-28s %7.3f %7.3f %-32s %12s %5.1f%% ", dv, r->res.d, r->res.w, wv,
                   cli_thousands(r->res.params, a, sizeof a), 100.0 * (double)r->res.params / (double)o->budget);
            for (int k = 0; k < r->n_picks; k++)
                printf(" %s", r->picks[k]);
            printf("\n");
        } else {
            printf("%-28s %7.3f %7s %-32s %12s %6s  (does not fit: smallest is %s)\n", dv,
                   (double)cs_arch_blocks(arch, r->depths) / cs_arch_ref_blocks(arch), "-", "-", "-", "-",
                   cli_thousands(r->smallest, a, sizeof a));
        }
    }
    printf("d is blocks kept / reference blocks for grid rows, and the policy's own coefficient for a\n"
           "row a policy added (compound's 1.2^phi, depth's d); use is params / budget.\n");
}

static int take_option(void *ctx, int opt, const char *arg)
{
    double *max_d = ctx;
    if (opt != 'x')
        return CLI_OPT_UNKNOWN;
    if (cli_positive("grid", "max-d", arg, max_d))
        return CLI_OPT_BAD;
    if (*max_d > CS_COEF_MAX) {
        fprintf(stderr, "cilscale grid: --max-d '%s': expected at most %d\n", arg, CS_COEF_MAX);
        return CLI_OPT_BAD;
    }
    return CLI_OPT_TAKEN;
}

int cmd_grid(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_NET_LONG_OPTIONS,
        {"max-d", required_argument, 0, 'x'},
        {0, 0, 0, 0},
    };
    cli_net_opts o;
    cli_net_defaults(&o);
    double max_d = 1;
    int rc = cli_getopt("grid", argc, argv, longopts, usage, &o, take_option, &max_d, 0);
    if (rc != CLI_CONTINUE)
        return rc;
    if (!o.arch || !o.have_budget) {
        fprintf(stderr, "cilscale grid: --arch and --budget are required (see cilscale grid --help)\n");
        return CLI_USAGE;
    }
    if (o.policy || o.manual) {
        fprintf(stderr, "cilscale grid: --%s does not apply: the grid covers every width and depth, and marks "
                        "every loaded policy\n", o.policy ? "policy" : "width/--depth/--depths");
        return CLI_USAGE;
    }
    cs_registry *reg = cli_load_plugins("grid", o.plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    rc = CLI_USAGE;
    row *rows = calloc(MAX_ROWS, sizeof *rows);
    const cs_plugin *ap = cli_find("grid", reg, CS_KIND_ARCH, o.arch);
    if (rows && ap) {
        const cs_arch_iface *arch = ap->iface;
        cs_scale_request req = {
            .arch_name = ap->name,
            .arch = arch,
            .budget = o.budget,
            .base = {.in_channels = o.in_channels, .n_classes = o.classes, .stem = o.stem, .head = o.head,
                     .convention = o.convention},
        };
        int n_rows = mark_picks(reg, req, rows, grid_rows(&req, max_d, rows));
        qsort(rows, (size_t)n_rows, sizeof *rows, cmp_rows);
        (o.json ? print_json : print_table)(&o, arch, rows, n_rows);
        rc = CLI_OK;
    }
    free(rows);
    cs_registry_free(reg);
    return rc;
}
