/* main.c: the cilscale command: dispatch to a subcommand. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/dp_mpi.h"

static const char usage[] =
    "usage: cilscale COMMAND [options]   (cilscale COMMAND --help, or cilscale help COMMAND, for its options)\n"
    "\n"
    "Class-incremental learning under a parameter budget.\n"
    "\n"
    "commands:\n"
    "  scale     the network a scaling policy picks for a budget, and its exact parameter count\n"
    "  grid      every depth vector's widest network under a budget, with each policy's pick\n"
    "  run       a class-incremental experiment (default: memoryless LUCIR on Fashion-MNIST)\n"
    "  train     train a scaled network on a data set (all classes at once)\n"
    "  bench     training and inference throughput of a network on a backend\n"
    "  sweep     many experiments: the product of settings, a Figure 1 grid; resumable, in parallel\n"
    "  eval      a run's checkpoint evaluated again: per-class accuracy, confusion, logits\n"
    "  report    one table (and plot) of finished runs' accuracy, seeds averaged\n"
    "  plugins   the plugins loaded, from where, and what failed to load\n"
    "  version   print the version\n"
    "\n"
    "Plugins come from a plugins.conf: --plugins FILE, else $CILSCALE_PLUGINS, else the\n"
    "build tree's (when run from it), else the installed one.\n";

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"scale", cmd_scale}, {"grid", cmd_grid},     {"run", cmd_run},         {"train", cmd_train},
    {"bench", cmd_bench}, {"report", cmd_report}, {"plugins", cmd_plugins}, {"sweep", cmd_sweep}, {"eval", cmd_eval},
};

int main(int argc, char **argv)
{
    opterr = 0; /* every command prints its own option errors (cli_getopt) */
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") && argc > 2) { /* cilscale help CMD: CMD --help */
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                char *args[] = {argv[2], "--help", NULL};
                return commands[i].fn(2, args);
            }
        fprintf(stderr, "cilscale help: unknown command '%s' (see cilscale --help)\n", argv[2]);
        return CLI_USAGE;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        char mpi[96];
        cli_mpi_describe(mpi, sizeof mpi);
        printf("cilscale %s (plugin ABI %d)\nMPI: %s\n", CS_VERSION, CS_ABI_VERSION, mpi);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cilscale: unknown command '%s' (commands: run, sweep, eval, report, scale, grid, train, bench, plugins, version; see cilscale --help)\n",
            cmd);
    return CLI_USAGE;
}
