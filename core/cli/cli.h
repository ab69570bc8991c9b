/* cli.h: what the cilscale subcommands share: plugin loading, number formats, option errors. */
#ifndef CILSCALE_CLI_H
#define CILSCALE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "cilscale/policy.h"
#include "cilscale/registry.h"
#include "runtime/plugins_conf.h"

/* Exit codes of every subcommand (documented in the user guide). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Loads the plugins.conf in force (explicit, $CILSCALE_PLUGINS, build tree,
 * installed). Prints problems as warnings unless quiet. NULL (after printing
 * why) when the conf itself cannot be read. */
cs_registry *cli_load_plugins(const char *cmd, const char *explicit_conf, int quiet);

/* Finds a plugin by kind and name or prints cs_plugin_lookup's "unknown <kind> 'x' (loaded: ...)". */
const cs_plugin *cli_find(const char *cmd, const cs_registry *r, int kind, const char *name);

/* 1234567 -> "1,234,567" into buf. */
const char *cli_thousands(int64_t n, char *buf, size_t size);
/* mkdir -p: 0, or -1 with errno set. */
int cli_mkdirs(const char *path);

/* Prints "cilscale CMD: unknown option '...'" etc. for getopt's last error. */
void cli_bad_option(const char *cmd, int optopt_val, char *const *argv, int optind_val);

/* What a command's own option handler says of one option. */
enum { CLI_OPT_TAKEN = 0, CLI_OPT_UNKNOWN = 1, CLI_OPT_BAD = -1 };
typedef int (*cli_opt_fn)(void *ctx, int opt, const char *arg);
typedef struct cli_net_opts cli_net_opts;
/* Returned by cli_getopt when the command should go on. */
#define CLI_CONTINUE (-1)

/* Parses argv the way every subcommand does: the network options (when net is
 * not NULL), --help (prints usage, CLI_OK), the command's own options through
 * fn, and at most max_args operands (-1: any number; they start at optind).
 * Returns CLI_CONTINUE, or the exit status after printing why. */
struct option;
int cli_getopt(const char *cmd, int argc, char **argv, const struct option *longopts, const char *usage,
               cli_net_opts *net, cli_opt_fn fn, void *ctx, int max_args);

/* Parses a whole number in [min, max] for option name, or prints why. */
int cli_int(const char *cmd, const char *opt, const char *s, int min, int max, int *out);
/* Parses a number > 0 / >= 0. */
int cli_positive(const char *cmd, const char *opt, const char *s, double *out);
int cli_nonneg(const char *cmd, const char *opt, const char *s, double *out);

/* Options every network-describing command takes. */
struct cli_net_opts {
    const char *arch;
    const char *policy;
    const char *budget_text;
    int64_t budget;
    int have_budget;
    int classes, in_channels;
    cs_stem stem;
    cs_head head;
    const char *plugins_conf;
    int json;
    /* a configuration given by hand instead of a policy */
    int manual, have_depth, have_stem, have_in_channels;
    cs_convention convention;
    double w, d;
    const char *depths_text;
};

void cli_net_defaults(cli_net_opts *o);
/* Handles --classes/--in-channels/--stem/--head/--budget/--arch/--policy/
 * --width/--depth/--depths/--plugins/--json; returns 1 if it took the option,
 * 0 if not, -1 on a bad value. */
int cli_net_option(const char *cmd, cli_net_opts *o, int opt, const char *arg);
/* After parsing: --arch given, a policy or a manual configuration but not
 * both, a budget with a policy. CLI_OK or CLI_USAGE (after printing why). */
int cli_net_validate(const char *cmd, const cli_net_opts *o);
/* The network the options describe: the policy's pick, or the manual
 * configuration (res->d then is the depth coefficient, or blocks kept / ref
 * blocks for --depths). Returns CLI_OK, CLI_USAGE (unknown plugin, bad
 * --depths) or CLI_FAIL (over budget), after printing why. */
int cli_net_resolve(const char *cmd, const cs_registry *r, const cli_net_opts *o, const cs_plugin **arch,
                    cs_scale_result *res);
enum { CLI_OPT_CONVENTION = 1001, CLI_OPT_COUNT_AS = 1002 };
#define CLI_NET_LONG_OPTIONS                                                                                  \
    {"arch", required_argument, 0, 'a'}, {"budget", required_argument, 0, 'm'},                              \
        {"policy", required_argument, 0, 'p'}, {"classes", required_argument, 0, 'k'},                        \
        {"in-channels", required_argument, 0, 'c'}, {"stem", required_argument, 0, 's'},                     \
        {"head", required_argument, 0, 'H'}, {"plugins", required_argument, 0, 'P'},                          \
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {"width", required_argument, 0, 'w'},       \
        {"depth", required_argument, 0, 'd'}, {"depths", required_argument, 0, 'D'},                          \
        {"convention", required_argument, 0, CLI_OPT_CONVENTION}, {"count-as", required_argument, 0, CLI_OPT_COUNT_AS}
#define CLI_NET_HELP                                                                                          \
    "  --arch A          architecture plugin (cilscale plugins lists them)\n"                               \
    "  --convention C    scaling rules: authors (the AdvisIL code's, default) or cilscale-0.1\n"             \
    "  --count-as N      count as the authors' scripts do: authors-100 or authors-1000 (3 input\n"         \
    "                    channels, imagenet stem, linear head, 100 or 1000 classes)\n"                       \
    "  --classes K       classifier outputs (default 100)\n"                                                  \
    "  --in-channels C   input image channels (default 3)\n"                                                  \
    "  --stem S          imagenet (torchvision's) or small (28-32 px images) (default imagenet)\n"            \
    "  --head H          linear (with bias) or cosine (no bias, one scale) (default linear)\n"                \
    "  --plugins FILE    plugins.conf to load (default $CILSCALE_PLUGINS, the build tree's, the installed)\n" \
    "  --json            print one JSON object instead of a table\n"                                          \
    "  --help            this text\n"                                                                         \
    "Budgets read as 1M, 2.5M, 1500k, 3e6 or 1000000.\n"

/* For --json: a JSON string literal, and an array of ints as [1, 2, 3]
 * (both through the runtime's JSON writer, runtime/json.h). */
void cli_json_string(FILE *f, const char *s);
void cli_json_ints(FILE *f, const int *v, int n);

int cmd_plugins(int argc, char **argv);
int cmd_scale(int argc, char **argv);
int cmd_grid(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
