/* cli.c: helpers shared by the cilscale subcommands. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/dp_mpi.h"
#include "runtime/json.h"
#include "runtime/plugins_conf.h"

/* The --json output's strings: \" and \\, every control character as \u00xx. */
#define CLI_JSON_ESC 0u

cs_registry *cli_load_plugins(const char *cmd, const char *explicit_conf, int quiet)
{
    char path[PATH_MAX];
    cs_plugins_conf_path(explicit_conf, path, sizeof path);
    cs_registry *r = cs_registry_new();
    cs_error err;
    int rc = r ? cs_registry_load_conf(r, path, &err) : cs_error_set(&err, CS_ERR_NOMEM, "out of memory");
    /* a data-parallel command: every rank loaded them, or every rank stops (rank 0 naming the one that failed) */
    if ((rc = cli_dp_agree(rc, &err))) {
        fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
        cs_registry_free(r);
        return NULL;
    }
    if (!quiet)
        for (size_t i = 0; i < cs_registry_n_problems(r); i++)
            fprintf(stderr, "cilscale %s: warning: %s\n", cmd, cs_registry_problem(r, i));
    return r;
}

const cs_plugin *cli_find(const char *cmd, const cs_registry *r, int kind, const char *name)
{
    cs_error err;
    const cs_plugin *p = cs_plugin_lookup(r, kind, name, &err);
    if (!p)
        fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
    return p;
}

const char *cli_thousands(int64_t n, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t len = strlen(digits), o = 0;
    if (n < 0 && o + 1 < size)
        buf[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

void cli_bad_option(const char *cmd, int opt, char *const *argv, int ind)
{
    const char *word = argv[ind - 1];
    if (opt && strchr(word, '=') == NULL && word[1] != '-')
        fprintf(stderr, "cilscale %s: bad or incomplete option '-%c' (see cilscale %s --help)\n", cmd, opt, cmd);
    else
        fprintf(stderr, "cilscale %s: unknown option or missing value: '%s' (see cilscale %s --help)\n", cmd, word,
                cmd);
}

int cli_int(const char *cmd, const char *opt, const char *s, int min, int max, int *out)
{
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        fprintf(stderr, "cilscale %s: --%s '%s': expected a whole number from %d to %d\n", cmd, opt, s, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* One number in (0, 1e6] or [0, 1e6] for --opt, or the reason on stderr. */
static int cli_number(const char *cmd, const char *opt, const char *s, int allow_zero, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(allow_zero ? v >= 0 : v > 0) || v > 1e6) {
        fprintf(stderr, "cilscale %s: --%s '%s': expected a number %s 0\n", cmd, opt, s, allow_zero ? ">=" : ">");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_positive(const char *cmd, const char *opt, const char *s, double *out)
{
    return cli_number(cmd, opt, s, 0, out);
}

int cli_nonneg(const char *cmd, const char *opt, const char *s, double *out)
{
    return cli_number(cmd, opt, s, 1, out);
}

int cli_getopt(const char *cmd, int argc, char **argv, const struct option *longopts, const char *usage,
               cli_net_opts *net, cli_opt_fn fn, void *ctx, int max_args)
{
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int took = net ? cli_net_option(cmd, net, c, optarg) : 0;
        if (took < 0)
            return CLI_USAGE;
        if (took)
            continue;
        if (c == 'h') {
            fputs(usage, stdout);
            return CLI_OK;
        }
        int r = fn && c != '?' && c != ':' ? fn(ctx, c, optarg) : CLI_OPT_UNKNOWN;
        if (r == CLI_OPT_BAD)
            return CLI_USAGE;
        if (r == CLI_OPT_UNKNOWN) {
            cli_bad_option(cmd, optopt, argv, optind);
            return CLI_USAGE;
        }
    }
    if (max_args >= 0 && argc - optind > max_args) {
        fprintf(stderr, "cilscale %s: unexpected argument '%s' (see cilscale %s --help)\n", cmd, argv[optind + max_args],
                cmd);
        return CLI_USAGE;
    }
    return CLI_CONTINUE;
}

void cli_net_defaults(cli_net_opts *o)
{
    memset(o, 0, sizeof *o);
    o->classes = 100;
    o->in_channels = 3;
    o->stem = CS_STEM_IMAGENET;
    o->head = CS_HEAD_LINEAR;
    o->w = 1;
    o->d = 1;
}

int cli_net_option(const char *cmd, cli_net_opts *o, int opt, const char *arg)
{
    cs_error err;
    switch (opt) {
    case 'a': o->arch = arg; return 1;
    case 'p': o->policy = arg; return 1;
    case 'P': o->plugins_conf = arg; return 1;
    case 'j': o->json = 1; return 1;
    case 'm':
        if (cs_budget_parse(arg, &o->budget, &err)) {
            fprintf(stderr, "cilscale %s: --%s\n", cmd, err.msg);
            return -1;
        }
        o->budget_text = arg;
        o->have_budget = 1;
        return 1;
    case 'w': o->manual = 1; return cli_positive(cmd, "width", arg, &o->w) ? -1 : 1;
    case 'd':
        o->manual = 1;
        o->have_depth = 1;
        return cli_positive(cmd, "depth", arg, &o->d) ? -1 : 1;
    case 'D':
        o->manual = 1;
        o->depths_text = arg;
        return 1;
    case 'k': return cli_int(cmd, "classes", arg, 1, 1000000, &o->classes) ? -1 : 1;
    case 'c':
        o->have_in_channels = 1;
        return cli_int(cmd, "in-channels", arg, 1, 4096, &o->in_channels) ? -1 : 1;
    case 's':
        if (cs_stem_parse(arg, &o->stem)) {
            fprintf(stderr, "cilscale %s: --stem '%s': expected imagenet or small\n", cmd, arg);
            return -1;
        }
        o->have_stem = 1;
        return 1;
    case CLI_OPT_CONVENTION:
        if (cs_convention_parse(arg, &o->convention)) {
            fprintf(stderr, "cilscale %s: --convention '%s': expected authors or cilscale-0.1\n", cmd, arg);
            return -1;
        }
        return 1;
    case CLI_OPT_COUNT_AS:
        if (strcmp(arg, "authors-100") && strcmp(arg, "authors-1000")) {
            fprintf(stderr, "cilscale %s: --count-as '%s': expected authors-100 or authors-1000\n", cmd, arg);
            return -1;
        }
        o->classes = strcmp(arg, "authors-100") ? 1000 : 100;
        o->in_channels = 3;
        o->stem = CS_STEM_IMAGENET;
        o->have_stem = 1;
        o->head = CS_HEAD_LINEAR;
        return 1;
    case 'H':
        if (cs_head_parse(arg, &o->head)) {
            fprintf(stderr, "cilscale %s: --head '%s': expected linear or cosine\n", cmd, arg);
            return -1;
        }
        return 1;
    default: return 0;
    }
}

void cli_json_string(FILE *f, const char *s) { cs_json_put_string(f, s, CLI_JSON_ESC); }

void cli_json_ints(FILE *f, const int *v, int n)
{
    cs_json j;
    cs_json_start(&j, f, CLI_JSON_ESC);
    cs_json_ints(&j, v, n, &cs_json_spaced);
}

int cli_net_validate(const char *cmd, const cli_net_opts *o)
{
    if (!o->arch) {
        fprintf(stderr, "cilscale %s: --arch is required (see cilscale %s --help)\n", cmd, cmd);
        return CLI_USAGE;
    }
    if (o->manual && o->policy) {
        fprintf(stderr, "cilscale %s: give --policy or --width/--depth/--depths, not both\n", cmd);
        return CLI_USAGE;
    }
    if (o->have_depth && o->depths_text) {
        fprintf(stderr, "cilscale %s: give --depth or --depths, not both\n", cmd);
        return CLI_USAGE;
    }
    if (!o->manual && !o->have_budget) {
        fprintf(stderr, "cilscale %s: --budget is required with a policy (see cilscale %s --help)\n", cmd, cmd);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int parse_depths(const char *cmd, const char *s, const cs_arch_iface *a, int *depths)
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
    fprintf(stderr, "cilscale %s: --depths '%s': expected %d whole numbers >= 1 separated by commas\n", cmd, s,
            a->n_stages);
    return -1;
}

int cli_net_resolve(const char *cmd, const cs_registry *r, const cli_net_opts *o, const cs_plugin **arch_out,
                    cs_scale_result *res)
{
    const cs_plugin *ap = cli_find(cmd, r, CS_KIND_ARCH, o->arch);
    const char *policy = o->manual ? NULL : (o->policy ? o->policy : "psi");
    const cs_plugin *pp = policy ? cli_find(cmd, r, CS_KIND_POLICY, policy) : NULL;
    if (!ap || (policy && !pp))
        return CLI_USAGE;
    *arch_out = ap;
    const cs_arch_iface *arch = ap->iface;
    cs_scale_request req = {
        .arch_name = ap->name,
        .arch = arch,
        .policy_name = policy,
        .budget = o->have_budget ? o->budget : INT64_MAX,
        .base = {.in_channels = o->in_channels, .n_classes = o->classes, .stem = o->stem, .head = o->head,
                 .convention = o->convention},
    };
    memset(res, 0, sizeof *res);
    cs_error err;
    if (!o->manual) {
        if (((const cs_policy_iface *)pp->iface)->scale(&req, res, &err)) {
            fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
            return err.status == CS_ERR_BUDGET ? CLI_FAIL : CLI_USAGE;
        }
        if (res->w >= CS_COEF_MAX || res->d >= CS_COEF_MAX)
            fprintf(stderr, "cilscale %s: warning: %s reached the search's upper end (%d): the budget allows a larger "
                            "network than the policy searches\n", cmd, res->w >= CS_COEF_MAX ? "w" : "d", CS_COEF_MAX);
        return CLI_OK;
    }
    int depths[CS_MAX_STAGES];
    if (o->depths_text) {
        if (parse_depths(cmd, o->depths_text, arch, depths))
            return CLI_USAGE;
    } else {
        cs_arch_depths_for(arch, o->d, cs_convention_depths(o->convention), depths);
    }
    if (cs_policy_fill(&req, o->w, depths, res, &err)) {
        fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
        return CLI_USAGE;
    }
    res->d = o->depths_text ? (double)cs_arch_blocks(arch, depths) / cs_arch_ref_blocks(arch) : o->d;
    res->resolution = 1;
    return CLI_OK;
}

int cli_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}
