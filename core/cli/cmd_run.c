/* cmd_run.c: `cilscale run`: a class-incremental experiment from an experiment file. */
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/experiment.h"
#include "cli/cli.h"
#include "cli/dp_mpi.h"
#include "cli/progress.h"

static const char usage[] =
    "usage: cilscale run [EXPERIMENT.cfg] [--set group.key=value ...] [--out DIR]\n"
    "       cilscale run --resume DIR\n"
    "\n"
    "Runs a class-incremental experiment: scales the network to the budget,\n"
    "learns the classes state after state with the CIL algorithm (keeping no old\n"
    "images), and evaluates after each state on every class seen so far. With no\n"
    "file it runs configs/fashion-mnist.cfg: memoryless LUCIR on Fashion-MNIST in\n"
    "5 states, a few minutes on 2 cores.\n"
    "\n"
    "After each state DIR holds state-K.safetensors, results.json, results.csv\n"
    "and accuracy.svg. Ctrl-C (or SIGTERM) stops at the next batch and saves; --resume DIR\n"
    "continues after the last finished state and ends with the same numbers as\n"
    "an uninterrupted run. A folder is one run: its files carry the run's id, a\n"
    "second run into it at once is refused, as is a folder of another run (unless\n"
    "--force), and --resume refuses any file that is not this run's.\n"
    "\n"
    "Under mpirun -np N (or srun) the run is data-parallel: each rank trains on\n"
    "its share of every batch (the same batches as one rank), the gradients are\n"
    "summed over the ranks each step, and rank 0 alone prints and writes DIR. A\n"
    "rank's failure stops every rank, rank 0 naming it; --resume works the same.\n"
    "\n"
    "  --set K=V          override one key, e.g. --set model.budget=2M --set seed=2\n"
    "  --out DIR          output folder (the file's `out`, default runs/run)\n"
    "  --resume DIR       continue the run in DIR (reads DIR/run.cfg)\n"
    "  --force            DIR holds another run: move its files to DIR/replaced-TIME/ first\n"
    "  --print-config     print the resolved experiment (file, --set, --out) and run nothing\n"
    "  --keys             list every experiment key: type, range, default, meaning\n"
    "  --sync-bn          under mpirun: batch norm over the whole batch, not each rank's share\n"
    "                     (as one rank computes it; the cpu backend)\n"
    "  --plugins FILE     plugins.conf to load\n"
    "  --help             this text\n"
    "\n"
    "Exit status: 0 done; 1 failed (data, backend, a loss that is not finite); 2 bad\n"
    "experiment file or usage; 130 interrupted by Ctrl-C, 143 by SIGTERM (saved).\n";


typedef struct ui {
    cli_progress p;
} ui;

static void on_log(void *ctx, const char *line)
{
    ui *u = ctx;
    cli_progress_line(&u->p, "%s", line);
}

static int on_batch(void *ctx, int state, int n_states, int epoch, int epochs, int bi, int nb, const cs_epoch_stats *st)
{
    ui *u = ctx;
    if (cli_progress_due(&u->p)) {
        double per_batch = st->seconds / bi;
        double left = per_batch * ((nb - bi) + (double)nb * (epochs - epoch - 1));
        cli_progress_update(&u->p, "state %d (%d/%d)  epoch %d/%d  batch %d/%d  loss %.4f  acc %.1f%%  %.0f img/s  %s left "
                                   "in this state",
                            state, state + 1, n_states, epoch + 1, epochs, bi, nb, st->loss,
                            100.0 * (double)st->top1 / (double)st->seen, (double)st->seen / st->seconds,
                            cli_duration(left));
    }
    return cli_interrupted();
}

/* configs/fashion-mnist.cfg: the build tree's copy when running from the build tree, else the installed one. */
static const char *default_config(char *buf, size_t size)
{
    char root[PATH_MAX];
    if (cs_build_tree_root(root, sizeof root))
        snprintf(buf, size, "%s/configs/fashion-mnist.cfg", root);
    else
        snprintf(buf, size, "%s/configs/fashion-mnist.cfg", CS_INSTALL_DATA);
    return buf;
}

enum { O_SET = 256, O_OUT, O_RESUME, O_PLUGINS, O_FORCE, O_PRINT, O_KEYS, O_SYNC_BN };

typedef struct run_opts {
    const char *sets[64], *out, *resume, *plugins;
    int n_sets, force, print_config, keys, sync_bn;
} run_opts;

static int take_option(void *ctx, int opt, const char *arg)
{
    run_opts *o = ctx;
    switch (opt) {
    case O_SET:
        if (o->n_sets == 64) {
            fprintf(stderr, "cilscale run: at most 64 --set options\n");
            return CLI_OPT_BAD;
        }
        o->sets[o->n_sets++] = arg;
        return CLI_OPT_TAKEN;
    case O_OUT: o->out = arg; return CLI_OPT_TAKEN;
    case O_RESUME: o->resume = arg; return CLI_OPT_TAKEN;
    case O_PLUGINS: o->plugins = arg; return CLI_OPT_TAKEN;
    case O_FORCE: o->force = 1; return CLI_OPT_TAKEN;
    case O_PRINT: o->print_config = 1; return CLI_OPT_TAKEN;
    case O_KEYS: o->keys = 1; return CLI_OPT_TAKEN;
    case O_SYNC_BN: o->sync_bn = 1; return CLI_OPT_TAKEN;
    default: return CLI_OPT_UNKNOWN;
    }
}

static int run_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"set", required_argument, 0, O_SET},       {"out", required_argument, 0, O_OUT},
        {"resume", required_argument, 0, O_RESUME}, {"plugins", required_argument, 0, O_PLUGINS},
        {"force", no_argument, 0, O_FORCE},
        {"print-config", no_argument, 0, O_PRINT}, {"keys", no_argument, 0, O_KEYS},
        {"sync-bn", no_argument, 0, O_SYNC_BN},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    run_opts ro = {0};
    int prc = cli_getopt("run", argc, argv, longopts, usage, NULL, take_option, &ro, -1);
    if (prc != CLI_CONTINUE)
        return prc;
    if (ro.keys) {
        cs_experiment_print_keys(stdout);
        return CLI_OK;
    }
    const char **sets = ro.sets, *out = ro.out, *resume = ro.resume, *plugins = ro.plugins;
    int n_sets = ro.n_sets;
    if (argc - optind > 1) {
        fprintf(stderr, "cilscale run: one experiment file at most, got '%s' and '%s'\n", argv[optind],
                argv[optind + 1]);
        return CLI_USAGE;
    }
    if (resume && ro.force) {
        fprintf(stderr, "cilscale run: --force does not go with --resume (it starts the folder over)\n");
        return CLI_USAGE;
    }
    if (resume && (optind < argc || n_sets || out)) {
        fprintf(stderr, "cilscale run: --resume DIR takes the experiment from DIR/run.cfg: give no file, --set or "
                        "--out with it\n");
        return CLI_USAGE;
    }
    if ((out && !*out) || (resume && !*resume)) {
        fprintf(stderr, "cilscale run: --%s '': expected a folder\n", out ? "out" : "resume");
        return CLI_USAGE;
    }
    /* a path that does not fit is refused, never cut short (the run would write elsewhere) */
    if ((out && strlen(out) >= PATH_MAX - 64) || (resume && strlen(resume) >= PATH_MAX - 64)) {
        fprintf(stderr, "cilscale run: --%s: a path of %zu bytes; at most %d\n", out ? "out" : "resume",
                strlen(out ? out : resume), PATH_MAX - 65);
        return CLI_USAGE;
    }
    static cs_experiment e; /* large: keep it off the stack */
    cs_experiment_defaults(&e);
    cs_error err;
    char path[PATH_MAX + 16];
    if (resume)
        snprintf(path, sizeof path, "%s/run.cfg", resume);
    else if (optind < argc)
        snprintf(path, sizeof path, "%s", argv[optind]);
    else
        default_config(path, sizeof path);
    cs_dp *dp;
    if (cli_dp_join("run", ro.sync_bn, &dp))
        return CLI_FAIL;
    /* data-parallel --resume: rank 0 alone reads DIR (the others get the
     * experiment from it), so DIR need only be on rank 0's node */
    const int reads = !(dp && resume && !cli_dp_lead());
    int bad = CLI_OK, lrc = CS_OK;
    if (reads && (lrc = cs_experiment_load(path, &e, &err)))
        bad = err.status == CS_ERR_IO && !resume && optind >= argc ? CLI_FAIL : CLI_USAGE;
    for (int i = 0; reads && !bad && i < n_sets; i++)
        if ((lrc = cs_experiment_set(&e, sets[i], &err)))
            bad = CLI_USAGE;
    if (dp && (lrc = cli_dp_agree(lrc, &err)) == CS_OK && resume)
        lrc = cli_dp_agree(cs_dp_bcast(dp, &e, (int64_t)sizeof e, &err), &err);
    if (lrc) {
        fprintf(stderr, "cilscale run: %s\n", err.msg);
        return bad ? bad : CLI_USAGE;
    }
    if (out)
        snprintf(e.out, sizeof e.out, "%s", out);
    if (resume)
        snprintf(e.out, sizeof e.out, "%s", resume);
    if (ro.print_config) { /* what run.cfg would hold; nothing loaded or run */
        cs_experiment_write(&e, stdout);
        return CLI_OK;
    }
    cs_registry *reg = cli_load_plugins("run", plugins, 0);
    if (!reg)
        return CLI_FAIL;
    ui u;
    cli_progress_init(&u.p, stderr);
    /* the command line, as results.json's provenance keeps it */
    static char command[1024];
    size_t cu = (size_t)snprintf(command, sizeof command, "cilscale");
    for (int i = 0; i < argc && cu < sizeof command; i++)
        cu += (size_t)snprintf(command + cu, sizeof command - cu, " %s", argv[i]);
    cs_run_callbacks cb = {&u, on_log, on_batch, command};
    cli_catch_interrupt();
    static cs_run_result res;
    int rc = cs_experiment_run(&e, reg, (resume ? CS_RUN_RESUME : 0) | (ro.force ? CS_RUN_FORCE : 0), &cb, &res, &err);
    const int sig = cli_interrupted();
    cli_release_interrupt();
    cli_progress_end(&u.p);
    cli_dp_report("run", stderr);
    if (rc < 0) {
        fprintf(stderr, "cilscale run: %s\n", err.msg);
        cs_registry_free(reg);
        return rc == CS_ERR_ARG ? CLI_USAGE : CLI_FAIL;
    }
    if (res.n_states) {
        cs_run_summary sum;
        cs_run_summarize(&res, &sum);
        printf("%s (%lld parameters", res.label, (long long)res.params);
        if (res.budget)
            printf("; budget %lld, %.1f%% used, counting %s", (long long)res.budget,
                   100.0 * (double)res.counted / (double)res.budget, res.count);
        printf(")\n  state  classes   top-1   top-5\n");
        for (int s = 0; s < res.n_states; s++) {
            char t[2][16];
            const double v[2] = {res.states[s].top1, res.states[s].top5};
            for (int k = 0; k < 2; k++)
                snprintf(t[k], sizeof t[k], isnan(v[k]) ? "n/a" : "%.2f%%", 100 * v[k]);
            printf("  %5d  %7d  %6s  %6s\n", s + 1, res.states[s].n_seen, t[0], t[1]);
        }
        printf("  last top-1 %.2f%%", 100 * sum.last);
        if (!isnan(sum.avg_inc))
            printf(", average incremental top-1 %.2f%% (states after the first; %.2f%% with it)", 100 * sum.avg_inc,
                   100 * sum.avg_inc_all);
        if (!isnan(sum.avg_inc5))
            printf(", top-5 %.2f%% (%.2f%%; states with more than 5 classes)", 100 * sum.avg_inc5,
                   100 * sum.avg_inc5_all);
        if (!isnan(sum.forgetting))
            printf(", forgetting %.2f%%", 100 * sum.forgetting);
        printf("\n  results: %s/results.json, results.csv, accuracy.svg (%s)\n", e.out, cli_duration(res.seconds));
    }
    cs_registry_free(reg);
    return rc == 1 ? 128 + (sig ? sig : SIGINT) : CLI_OK;
}

int cmd_run(int argc, char **argv)
{
    int rc = cli_dp_begin("run");
    return rc ? rc : cli_dp_end(run_cmd(argc, argv));
}
