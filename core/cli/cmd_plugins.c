/* cmd_plugins.c: `cilscale plugins`: what loaded, from where, and what failed. */
#include <getopt.h>
#include <limits.h>

#include "cilscale/backend.h"
#include "cli/cli.h"
#include "runtime/plugins_conf.h"

static const char usage[] =
    "usage: cilscale plugins [--plugins FILE]\n"
    "\n"
    "Lists the plugins the plugins.conf in force loads (kind, name, version, file)\n"
    "and every plugin that failed to load, with the reason. Each compute backend\n"
    "that can run here opens its default device and names it (device, driver,\n"
    "limits); one that cannot says so.\n"
    "\n"
    "  --plugins FILE    plugins.conf to load (default $CILSCALE_PLUGINS, the build tree's, the installed)\n"
    "  --help            this text\n"
    "\n"
    "Exit status: 0 all loaded, 1 the conf could not be read or some plugin failed, 2 bad usage.\n";

/* A backend's default device, as the backend describes it, or why it cannot
 * run (a backend that scores 0 is still asked to open, for its reason). */
static void print_device(const cs_registry *r, const cs_plugin *p)
{
    cs_device *dev = NULL;
    cs_error err;
    const int score = cs_registry_score(r, p);
    if (cs_device_open(p->iface, p->name, "", &dev, &err)) {
        if (score == 0) /* the backend's own reason, where it gives one */
            printf("%-8s %-14s (score 0: cannot run on this machine: %s)\n", "", "", err.msg);
        else
            printf("%-8s %-14s default device: cannot open: %s\n", "", "", err.msg);
        return;
    }
    if (score == 0) {
        cs_device_close(dev);
        printf("%-8s %-14s (score 0: cannot run on this machine)\n", "", "");
        return;
    }
    char d[512];
    cs_device_describe(dev, d, sizeof d);
    cs_device_close(dev);
    printf("%-8s %-14s default device: %s\n", "", "", d);
}

static int take_option(void *ctx, int opt, const char *arg)
{
    if (opt != 'P')
        return CLI_OPT_UNKNOWN;
    *(const char **)ctx = arg;
    return CLI_OPT_TAKEN;
}

int cmd_plugins(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"plugins", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *conf = NULL;
    int rc = cli_getopt("plugins", argc, argv, longopts, usage, NULL, take_option, &conf, 0);
    if (rc != CLI_CONTINUE)
        return rc;
    char path[PATH_MAX];
    cs_plugins_conf_path(conf, path, sizeof path);
    cs_registry *r = cli_load_plugins("plugins", conf, 1);
    if (!r)
        return CLI_FAIL;
    printf("plugins.conf: %s\n", path);
    printf("%-8s %-14s %-8s %s\n", "kind", "name", "version", "file");
    static const int kinds[] = {CS_KIND_ARCH, CS_KIND_POLICY, CS_KIND_CIL, CS_KIND_BACKEND};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t i = 0; i < cs_registry_count(r); i++) {
            const cs_plugin *p = cs_registry_at(r, i);
            if (p->kind != kinds[k])
                continue;
            printf("%-8s %-14s %-8s %s\n", cs_kind_name(p->kind), p->name, p->version, p->path);
            if (p->description[0])
                printf("%-8s %-14s %s\n", "", "", p->description);
            if (p->kind == CS_KIND_BACKEND)
                print_device(r, p);
        }
    size_t n = cs_registry_n_problems(r);
    if (n) {
        printf("\n%zu problem%s:\n", n, n == 1 ? "" : "s");
        for (size_t i = 0; i < n; i++)
            printf("  %s\n", cs_registry_problem(r, i));
    }
    cs_registry_free(r);
    return n ? CLI_FAIL : CLI_OK;
}
