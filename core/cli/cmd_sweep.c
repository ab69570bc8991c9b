/* cmd_sweep.c: `cilscale sweep`: the product of experiments (a sweep file's
 * blocks, or --set lists), each `cilscale run` in a folder of its own named by
 * its resolved settings; finished runs are skipped, interrupted ones resumed,
 * several at a time (--jobs) or a cluster's share of them (--shard). */
#include <errno.h>
#include <getopt.h>
#include <libconfig.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#ifdef CS_HAVE_MPI
#include <mpi.h>
#endif

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include "cli/cli.h"
#include "cli/dp_mpi.h"
#include "cli/progress.h"
#include "runtime/experiment.h"
#include "runtime/results.h"

static const char usage[] =
    "usage: cilscale sweep [EXPERIMENT.cfg] --set KEY=V1,V2,... [--set ...] --out DIR [options]\n"
    "       cilscale sweep --file SWEEP.cfg [--out DIR] [options]\n"
    "\n"
    "Runs the product of experiments: every combination of the values the --set\n"
    "options list (a value with commas in brackets: model.depths=[1,1,2,2],[2,2,2,2]),\n"
    "over EXPERIMENT.cfg (default configs/fashion-mnist.cfg), or the blocks of a\n"
    "sweep file (docs/user-guide.md, \"Sweeps\"). Each run goes to DIR/NAME, NAME\n"
    "made of the architecture, how the network is chosen, the budget, a hash of\n"
    "the resolved settings and the seed, with its output in DIR/NAME/log.txt.\n"
    "A finished run is skipped; an interrupted one is resumed (cilscale run --resume);\n"
    "a folder that holds a run of other settings is refused. At the end it writes\n"
    "DIR/report (cilscale report --figure1).\n"
    "\n"
    "  --set K=V1,V2     vary key K over the values (one value: set it for every run)\n"
    "  --seeds LIST      seeds, comma separated (default: the experiment's seed)\n"
    "  --figure1         for each architecture and budget, one run per distinct depth vector\n"
    "                    of d in {0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 1} (the authors' grid), each\n"
    "                    the widest network with those depths under the budget; psi's pick\n"
    "                    is the one-block-per-stage point\n"
    "  --file F          a sweep file (libconfig): experiment, out, set, seeds, blocks\n"
    "  --out DIR         the sweep's folder (a sweep file's `out`)\n"
    "  --jobs N          runs at a time, sharing the cores (default 1)\n"
    "  --shard K/N       only runs K, K+N, K+2N, ... of the list (1 <= K <= N), for job arrays\n"
    "  --list            print the runs and whether each is done, to resume or new; run nothing\n"
    "  --no-report       do not write DIR/report at the end\n"
    "  --plugins FILE    plugins.conf to load\n"
    "  --help            this text\n"
    "\n"
    "Exit status: 0 every run finished; 1 a run failed (its log named); 2 bad usage,\n"
    "a bad sweep file or a value a run would refuse; 130/143 interrupted (run the\n"
    "same command again to go on).\n";

#define MAX_SETS 64
#define MAX_VALUES 64
#define MAX_RUNS 20000
#define MAX_BLOCKS 64
#define MAX_SEEDS 256

/* One key and its values (from "--set K=V1,V2" or a sweep file's entry). */
typedef struct axis {
    char key[96];
    char *values[MAX_VALUES];
    int n;
} axis;

typedef struct block {
    axis axes[MAX_SETS];
    int n_axes;
    int figure1;
} block;

typedef struct job {
    char *args[MAX_SETS + 4]; /* "K=V" assignments, owned */
    int n_args;
    unsigned long long seed;
    char dir[PATH_MAX];
    char state[16]; /* done, resume, new */
    pid_t pid;
    int index;
} job;

typedef struct sweep {
    char experiment[PATH_MAX], out[PATH_MAX], plugins[PATH_MAX];
    block blocks[MAX_BLOCKS];
    int n_blocks;
    axis common; /* --set with one value, or the file's set: every run */
    unsigned long long seeds[MAX_SEEDS];
    int n_seeds;
    int jobs, shard_k, shard_n, list, no_report, have_plugins;
    job *runs;
    int n_runs;
} sweep;

static char *xstrdup(const char *s)
{
    char *c = strdup(s);
    if (!c) {
        fprintf(stderr, "cilscale sweep: out of memory\n");
        exit(CLI_FAIL);
    }
    return c;
}

/* "K=V1,V2,[1,2],V4" into an axis: commas split values, except inside brackets
 * (which are dropped). */
static int parse_axis(const char *where, const char *text, axis *a)
{
    const char *eq = strchr(text, '=');
    if (!eq || eq == text || (size_t)(eq - text) >= sizeof a->key) {
        fprintf(stderr, "cilscale sweep: %s '%s': expected KEY=V1,V2,...\n", where, text);
        return -1;
    }
    snprintf(a->key, sizeof a->key, "%.*s", (int)(eq - text), text);
    a->n = 0;
    const char *p = eq + 1;
    for (;;) {
        char buf[512];
        size_t u = 0;
        int depth = 0;
        while (*p && (depth || *p != ',')) {
            if (*p == '[')
                depth++;
            else if (*p == ']')
                depth--;
            else if (u + 1 < sizeof buf)
                buf[u++] = *p;
            if (depth < 0)
                break;
            p++;
        }
        buf[u] = '\0';
        if (depth || !u || a->n == MAX_VALUES) {
            fprintf(stderr, "cilscale sweep: %s '%s': %s\n", where, text,
                    depth ? "unbalanced brackets" : !u ? "an empty value" : "more than 64 values");
            for (int i = 0; i < a->n; i++)
                free(a->values[i]);
            a->n = 0;
            return -1;
        }
        a->values[a->n++] = xstrdup(buf);
        if (!*p)
            return 0;
        p++;
    }
}

static int parse_seeds(const char *where, const char *text, sweep *s)
{
    const char *p = text;
    s->n_seeds = 0;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || *p == '-' || (*end && *end != ',') || s->n_seeds == MAX_SEEDS) {
            fprintf(stderr, "cilscale sweep: %s '%s': expected seeds (whole numbers >= 0) separated by commas\n",
                    where, text);
            return -1;
        }
        s->seeds[s->n_seeds++] = v;
        p = *end ? end + 1 : end;
    }
    return s->n_seeds ? 0 : -1;
}

/* A setting: with b NULL (one value) it goes to every run; else it is an axis of block b. */
static int add_set(sweep *s, block *b, const char *where, const char *text)
{
    axis a;
    if (parse_axis(where, text, &a))
        return -1;
    if (b == NULL) {
        if (a.n != 1) {
            fprintf(stderr, "cilscale sweep: %s '%s': one value here (vary keys in a block)\n", where, text);
            for (int i = 0; i < a.n; i++)
                free(a.values[i]);
            return -1;
        }
        if (s->common.n == MAX_VALUES) {
            fprintf(stderr, "cilscale sweep: more than %d single-valued settings\n", MAX_VALUES);
            return -1;
        }
        char kv[640];
        snprintf(kv, sizeof kv, "%s=%s", a.key, a.values[0]);
        s->common.values[s->common.n++] = xstrdup(kv);
        free(a.values[0]);
        return 0;
    }
    if (b->n_axes == MAX_SETS) {
        fprintf(stderr, "cilscale sweep: more than %d keys varied in one block\n", MAX_SETS);
        return -1;
    }
    b->axes[b->n_axes++] = a;
    return 0;
}

/* ---- the sweep file ---- */

static int strings_of(const char *file, const config_setting_t *list, const char *name, char ***out, int *n)
{
    if (!config_setting_is_array(list) && !config_setting_is_list(list)) {
        fprintf(stderr, "cilscale sweep: %s:%d: %s: expected a list of strings [\"key=v1,v2\", ...]\n", file,
                config_setting_source_line(list), name);
        return -1;
    }
    *n = config_setting_length(list);
    *out = calloc((size_t)*n + 1, sizeof(char *));
    if (!*out) {
        fprintf(stderr, "cilscale sweep: out of memory\n");
        return -1;
    }
    for (int i = 0; i < *n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            fprintf(stderr, "cilscale sweep: %s:%d: %s[%d]: expected a string \"key=v1,v2\"\n", file,
                    config_setting_source_line(e), name, i);
            free(*out);
            return -1;
        }
        (*out)[i] = (char *)config_setting_get_string(e);
    }
    return 0;
}

/* A sweep file's list of "key=v1,v2" strings: to every run (b NULL) or as block b's axes. */
static int add_sets(sweep *s, block *b, const char *file, const config_setting_t *list, const char *name,
                    const char *where)
{
    char **v;
    int n, rc = 0;
    if (strings_of(file, list, name, &v, &n))
        return -1;
    for (int k = 0; k < n && !rc; k++)
        rc = add_set(s, b, where, v[k]);
    free(v);
    return rc;
}

static int load_file(const char *path, sweep *s)
{
    config_t cfg;
    config_init(&cfg);
    int rc = -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cilscale sweep: %s: cannot read the sweep file (%s)\n", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "cilscale sweep: %s: cannot read the sweep file: not a file\n", path);
        fclose(f);
        goto out;
    }
    int ok = config_read(&cfg, f);
    fclose(f);
    if (!ok) {
        fprintf(stderr, "cilscale sweep: %s:%d: %s\n", path, config_error_line(&cfg), config_error_text(&cfg));
        goto out;
    }
    const config_setting_t *root = config_root_setting(&cfg);
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *e = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(e);
        int line = config_setting_source_line(e);
        char where[PATH_MAX + 64];
        snprintf(where, sizeof where, "%s:%d: %s", path, line, name);
        if (!strcmp(name, "experiment") || !strcmp(name, "out")) {
            if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                fprintf(stderr, "cilscale sweep: %s: expected a string\n", where);
                goto out;
            }
            const char *v = config_setting_get_string(e);
            char *dst = name[0] == 'e' ? s->experiment : s->out;
            /* the experiment is relative to the sweep file's folder; out to where it runs */
            const char *slash = strrchr(path, '/');
            if (name[0] == 'e' && v[0] != '/' && slash)
                snprintf(dst, PATH_MAX, "%.*s/%s", (int)(slash - path), path, v);
            else if (!*dst || name[0] == 'e')
                snprintf(dst, PATH_MAX, "%s", v);
        } else if (!strcmp(name, "seeds")) {
            char buf[4096] = "";
            size_t u = 0;
            for (int k = 0; k < config_setting_length(e); k++) {
                const config_setting_t *x = config_setting_get_elem(e, (unsigned)k);
                if (config_setting_type(x) != CONFIG_TYPE_INT || config_setting_get_int(x) < 0) {
                    fprintf(stderr, "cilscale sweep: %s[%d]: expected a seed >= 0\n", where, k);
                    goto out;
                }
                u += (size_t)snprintf(buf + u, sizeof buf - u, "%s%d", k ? "," : "", config_setting_get_int(x));
            }
            if (parse_seeds(where, buf, s))
                goto out;
        } else if (!strcmp(name, "set")) {
            if (add_sets(s, NULL, path, e, "set", where))
                goto out;
        } else if (!strcmp(name, "blocks")) {
            for (int k = 0; k < config_setting_length(e); k++) {
                const config_setting_t *b = config_setting_get_elem(e, (unsigned)k);
                if (!config_setting_is_group(b) || s->n_blocks == MAX_BLOCKS) {
                    fprintf(stderr, "cilscale sweep: %s[%d]: expected a group { vary = [...]; figure1 = true; } "
                                    "(at most %d)\n", where, k, MAX_BLOCKS);
                    goto out;
                }
                block *bl = &s->blocks[s->n_blocks++];
                for (int m = 0; m < config_setting_length(b); m++) {
                    const config_setting_t *f = config_setting_get_elem(b, (unsigned)m);
                    const char *fn = config_setting_name(f);
                    snprintf(where, sizeof where, "%s:%d: blocks[%d].%s", path, config_setting_source_line(f), k, fn);
                    if (!strcmp(fn, "figure1") && config_setting_type(f) == CONFIG_TYPE_BOOL) {
                        bl->figure1 = config_setting_get_bool(f);
                    } else if (!strcmp(fn, "vary")) {
                        if (add_sets(s, bl, path, f, "vary", where))
                            goto out;
                    } else {
                        fprintf(stderr, "cilscale sweep: %s: unknown key (a block has vary = [\"key=v1,v2\", ...] "
                                        "and figure1 = true/false)\n", where);
                        goto out;
                    }
                }
            }
        } else {
            fprintf(stderr, "cilscale sweep: %s: unknown key (known: experiment, out, set, seeds, blocks)\n", where);
            goto out;
        }
    }
    rc = 0;
out:
    config_destroy(&cfg);
    return rc;
}

/* ---- expanding the runs ---- */

/* The experiment a job resolves to: the file, the common sets, the job's, its seed. */
static int resolve(const sweep *s, const job *j, cs_experiment *e, int quiet)
{
    cs_error err;
    cs_experiment_defaults(e);
    if (cs_experiment_load(s->experiment, e, &err)) {
        if (!quiet)
            fprintf(stderr, "cilscale sweep: %s\n", err.msg);
        return -1;
    }
    for (int i = 0; i < s->common.n; i++)
        if (cs_experiment_set(e, s->common.values[i], &err)) {
            if (!quiet)
                fprintf(stderr, "cilscale sweep: %s\n", err.msg);
            return -1;
        }
    for (int i = 0; i < j->n_args; i++)
        if (cs_experiment_set(e, j->args[i], &err)) {
            if (!quiet)
                fprintf(stderr, "cilscale sweep: %s\n", err.msg);
            return -1;
        }
    if (j->seed != ULLONG_MAX) /* ULLONG_MAX: the experiment's own */
        e->seed = j->seed;
    return 0;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* DIR/resnet18-psi-1M-3fa9c2d1-s1: readable, and unique through the hash of the settings. */
static void name_job(const sweep *s, const cs_experiment *e, job *j)
{
    char how[160], settings[sizeof((cs_run_result *)0)->settings], budget[32];
    cs_experiment_settings(e, settings, sizeof settings);
    cs_budget_short(e->budget, budget, sizeof budget);
    if (e->manual)
        snprintf(how, sizeof how, "w%g", e->width);
    else if (e->n_depths)
        snprintf(how, sizeof how, "widest-%s", budget);
    else
        snprintf(how, sizeof how, "%s-%s", e->policy, budget);
    size_t u = strlen(how);
    if (e->n_depths)
        for (int i = 0; i < e->n_depths && u + 8 < sizeof how; i++)
            u += (size_t)snprintf(how + u, sizeof how - u, "%s%d", i ? "." : "-d", e->depths[i]);
    else if (e->manual)
        snprintf(how + u, sizeof how - u, "-d%g", e->depth);
    /* keep the name to one safe word: letters, digits, '.', '-' and '_' */
    char name[400];
    snprintf(name, sizeof name, "%s-%s-%08x-s%llu", e->arch, how, fnv1a(settings), (unsigned long long)j->seed);
    for (char *p = name; *p; p++)
        if (!(*p == '.' || *p == '-' || *p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            *p = '_';
    snprintf(j->dir, sizeof j->dir, "%s/%s", s->out, name);
}

/* The authors' depth coefficients (models/scaler.py, d <= 1). */
static const double figure1_d[] = {0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0};

static int push_job(sweep *s, char **args, int n, unsigned long long seed)
{
    if (s->n_runs == MAX_RUNS) {
        fprintf(stderr, "cilscale sweep: more than %d runs\n", MAX_RUNS);
        return -1;
    }
    job *j = &s->runs[s->n_runs++];
    memset(j, 0, sizeof *j);
    for (int i = 0; i < n; i++)
        j->args[i] = xstrdup(args[i]);
    j->n_args = n;
    j->seed = seed;
    return 0;
}

/* Every combination of b's axes (the first axis slowest), each with every
 * seed; a figure-1 block adds one run per distinct depth vector. */
static int expand_block(sweep *s, const block *b, const cs_registry *reg)
{
    int idx[MAX_SETS] = {0};
    for (;;) {
        char *args[MAX_SETS + 2], kv[MAX_SETS][640];
        for (int a = 0; a < b->n_axes; a++) {
            snprintf(kv[a], sizeof kv[a], "%s=%s", b->axes[a].key, b->axes[a].values[idx[a]]);
            args[a] = kv[a];
        }
        int n = b->n_axes;
        if (!b->figure1) {
            for (int k = 0; k < s->n_seeds; k++)
                if (push_job(s, args, n, s->seeds[k]))
                    return -1;
        } else {
            /* the architecture and convention this combination resolves to */
            static cs_experiment e;
            job probe = {.n_args = n, .seed = ULLONG_MAX};
            for (int a = 0; a < n; a++)
                probe.args[a] = args[a];
            if (resolve(s, &probe, &e, 0))
                return -1;
            cs_error err;
            const cs_plugin *p = cs_plugin_lookup(reg, CS_KIND_ARCH, e.arch, &err);
            cs_convention conv;
            if (!p) {
                fprintf(stderr, "cilscale sweep: --figure1: %s\n", err.msg);
                return -1;
            }
            if (cs_convention_parse(e.convention, &conv)) {
                fprintf(stderr, "cilscale sweep: model.convention '%s': expected authors or cilscale-0.1\n",
                        e.convention);
                return -1;
            }
            if (e.manual) {
                fprintf(stderr, "cilscale sweep: --figure1 needs a budget (model.budget), not model.width/depth\n");
                return -1;
            }
            const cs_arch_iface *arch = p->iface;
            int prev[CS_MAX_STAGES] = {0};
            for (size_t d = 0; d < sizeof figure1_d / sizeof figure1_d[0]; d++) {
                int depths[CS_MAX_STAGES] = {0};
                cs_arch_depths_for(arch, figure1_d[d], cs_convention_depths(conv), depths);
                if (d && !memcmp(depths, prev, sizeof depths))
                    continue;
                memcpy(prev, depths, sizeof prev);
                char dv[640] = "model.depths=";
                size_t u = strlen(dv);
                for (int i = 0; i < arch->n_stages; i++)
                    u += (size_t)snprintf(dv + u, sizeof dv - u, "%s%d", i ? "," : "", depths[i]);
                args[n] = dv;
                for (int k = 0; k < s->n_seeds; k++)
                    if (push_job(s, args, n + 1, s->seeds[k]))
                        return -1;
            }
        }
        int a = b->n_axes - 1;
        while (a >= 0 && ++idx[a] == b->axes[a].n)
            idx[a--] = 0;
        if (a < 0)
            return 0;
    }
}

/* What DIR holds: done, resume or new; -1 (said why) when it holds another run. */
static int classify(const cs_experiment *e, job *j)
{
    char path[PATH_MAX + 16], want[sizeof((cs_run_result *)0)->settings];
    struct stat st;
    cs_experiment_settings(e, want, sizeof want);
    static cs_run_result r;
    cs_error err;
    if (cs_results_read(j->dir, &r, &err) == CS_OK) {
        if (strcmp(r.settings, want) || r.seed != e->seed) {
            fprintf(stderr, "cilscale sweep: %s holds a run of other settings or another seed; move it away "
                            "(nothing was run there)\n", j->dir);
            return -1;
        }
        snprintf(j->state, sizeof j->state, "%s",
                 r.n_states_planned && r.n_states >= r.n_states_planned ? "done" : "resume");
        return 0;
    }
    snprintf(path, sizeof path, "%s/run.cfg", j->dir);
    snprintf(j->state, sizeof j->state, "%s", stat(path, &st) == 0 ? "resume" : "new");
    return 0;
}

/* ---- running ---- */

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static pid_t start(const sweep *s, const job *j, const char *exe, int threads)
{
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/log.txt", j->dir);
    if (cli_mkdirs(j->dir)) {
        fprintf(stderr, "cilscale sweep: %s: cannot make the folder (%s)\n", j->dir, strerror(errno));
        return -1;
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) {
        fprintf(stderr, "cilscale sweep: %s: cannot write (%s)\n", log, strerror(errno));
        return -1;
    }
    char *argv[2 * (MAX_SETS + MAX_VALUES) + 16], seed[64], dev[64];
    int n = 0;
    argv[n++] = (char *)exe;
    argv[n++] = "run";
    if (!strcmp(j->state, "resume")) {
        argv[n++] = "--resume";
        argv[n++] = (char *)j->dir;
    } else {
        argv[n++] = (char *)s->experiment;
        for (int i = 0; i < s->common.n; i++) {
            argv[n++] = "--set";
            argv[n++] = s->common.values[i];
        }
        for (int i = 0; i < j->n_args; i++) {
            argv[n++] = "--set";
            argv[n++] = j->args[i];
        }
        snprintf(seed, sizeof seed, "seed=%llu", j->seed);
        argv[n++] = "--set";
        argv[n++] = seed;
        if (threads > 0) {
            snprintf(dev, sizeof dev, "backend.device=threads=%d", threads);
            argv[n++] = "--set";
            argv[n++] = dev;
        }
        argv[n++] = "--out";
        argv[n++] = (char *)j->dir;
    }
    if (s->have_plugins) {
        argv[n++] = "--plugins";
        argv[n++] = (char *)s->plugins;
    }
    argv[n] = NULL;
    fflush(NULL);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        setenv("CILSCALE_NO_MPI", "1", 1); /* the run is one process, not a rank of the sweep's job */
#ifdef __linux__
        /* the sweep killed outright (SIGKILL, a dead MPI rank's launcher):
         * the run gets SIGTERM, saves and stops, rather than going on
         * unwatched, holding its folder's lock against the next launch */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(143);
#else
        (void)parent;
#endif
        execv(exe, argv);
        fprintf(stderr, "cilscale sweep: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(fd);
    if (pid < 0)
        fprintf(stderr, "cilscale sweep: cannot start a run: %s\n", strerror(errno));
    return pid;
}

/* The last line of DIR/log.txt, for a failure's message. */
static void last_line(const char *dir, char *buf, size_t size)
{
    char path[PATH_MAX + 16], line[1024];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n' && line[0] != '\r') {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(buf, size, "%s", line);
        }
    fclose(f);
}

static void finished(const job *j, int k, int total, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        static cs_run_result r;
        cs_error err;
        cs_run_summary sum = {0};
        if (cs_results_read(j->dir, &r, &err) == CS_OK)
            cs_run_summarize(&r, &sum);
        printf("[%d/%d] done    %s: last top-1 %.2f%%, avg inc %.2f%%\n", k, total, j->dir, 100 * sum.last,
               100 * sum.avg_inc);
        return;
    }
    char why[1024];
    last_line(j->dir, why, sizeof why);
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 130 || WEXITSTATUS(status) == 143))
        printf("[%d/%d] stopped %s (saved; the same command resumes it)\n", k, total, j->dir);
    else
        fprintf(stderr, "cilscale sweep: %s failed (exit %d): %s (see %s/log.txt)\n", j->dir,
                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), why, j->dir);
}

static const char *self_exe(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

typedef struct opts {
    sweep *s;
    const char *file, *sets[MAX_SETS];
    int n_sets, figure1;
    const char *seeds;
} opts;

enum { O_SET = 256, O_SEEDS, O_FIGURE1, O_FILE, O_OUT, O_JOBS, O_SHARD, O_LIST, O_NOREPORT, O_PLUGINS };

static int take_option(void *ctx, int opt, const char *arg)
{
    opts *o = ctx;
    sweep *s = o->s;
    switch (opt) {
    case O_SET:
        if (o->n_sets == MAX_SETS) {
            fprintf(stderr, "cilscale sweep: at most %d --set options\n", MAX_SETS);
            return CLI_OPT_BAD;
        }
        o->sets[o->n_sets++] = arg;
        return CLI_OPT_TAKEN;
    case O_SEEDS: o->seeds = arg; return CLI_OPT_TAKEN;
    case O_FIGURE1: o->figure1 = 1; return CLI_OPT_TAKEN;
    case O_FILE: o->file = arg; return CLI_OPT_TAKEN;
    case O_OUT: snprintf(s->out, sizeof s->out, "%s", arg); return CLI_OPT_TAKEN;
    case O_JOBS: return cli_int("sweep", "jobs", arg, 1, 256, &s->jobs) ? CLI_OPT_BAD : CLI_OPT_TAKEN;
    case O_SHARD: {
        char *end;
        long k = strtol(arg, &end, 10), n = *end == '/' ? strtol(end + 1, &end, 10) : 0;
        if (*end || k < 1 || n < 1 || k > n || n > 1000000) {
            fprintf(stderr, "cilscale sweep: --shard '%s': expected K/N with 1 <= K <= N\n", arg);
            return CLI_OPT_BAD;
        }
        s->shard_k = (int)k;
        s->shard_n = (int)n;
        return CLI_OPT_TAKEN;
    }
    case O_LIST: s->list = 1; return CLI_OPT_TAKEN;
    case O_NOREPORT: s->no_report = 1; return CLI_OPT_TAKEN;
    case O_PLUGINS:
        snprintf(s->plugins, sizeof s->plugins, "%s", arg);
        s->have_plugins = 1;
        return CLI_OPT_TAKEN;
    default: return CLI_OPT_UNKNOWN;
    }
}

/* The scheduling steps a serial and an MPI sweep share. */

/* Starts runs until `running` reaches s->jobs; returns how many started. */
static int start_local(sweep *s, int running, int *next, int *k, int total, const char *exe, int threads, int *failed)
{
    int started = 0;
    while (!stop_signal && running + started < s->jobs && *next < s->n_runs) {
        job *j = &s->runs[(*next)++];
        if (!strcmp(j->state, "done"))
            continue;
        j->index = ++*k;
        printf("[%d/%d] %-7s %s\n", *k, total, !strcmp(j->state, "resume") ? "resume" : "start", j->dir);
        fflush(stdout);
        j->pid = start(s, j, exe, threads);
        if (j->pid < 0)
            ++*failed;
        else
            started++;
    }
    return started;
}

/* A run ended with status: it is reported; a failure (not 0, not an interrupt) counted. */
static void account(const job *j, int total, int status, int *failed)
{
    finished(j, j->index, total, status);
    if (!(WIFEXITED(status) &&
          (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 130 || WEXITSTATUS(status) == 143)))
        ++*failed;
}

/* The child pid ended: its run is accounted; returns 1 if it was one of ours. */
static int reap(sweep *s, pid_t pid, int status, int total, int *failed)
{
    for (int i = 0; i < s->n_runs; i++)
        if (s->runs[i].pid == pid) {
            s->runs[i].pid = 0;
            account(&s->runs[i], total, status, failed);
            fflush(stdout);
            return 1;
        }
    return 0;
}

/* How the sweep ends: interrupted, some runs failed, or done. */
static int sweep_end(int failed, int total)
{
    if (stop_signal) {
        printf("cilscale sweep: interrupted; run the same command again to go on\n");
        return 128 + stop_signal;
    }
    if (failed) {
        fprintf(stderr, "cilscale sweep: %d of %d runs failed\n", failed, total);
        return CLI_FAIL;
    }
    return CLI_OK;
}

static int execute(sweep *s, const char *exe)
{
    int total = 0;
    for (int i = 0; i < s->n_runs; i++)
        total += strcmp(s->runs[i].state, "done") != 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = s->jobs > 1 ? (int)(cores / s->jobs > 0 ? cores / s->jobs : 1) : 0;
    printf("cilscale sweep: %d runs in %s (%d done already, %d to go), %d at a time%s\n", s->n_runs, s->out,
           s->n_runs - total, total, s->jobs, threads ? "" : "");
    fflush(stdout);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int next = 0, running = 0, k = 0, failed = 0;
    for (;;) {
        running += start_local(s, running, &next, &k, total, exe, threads, &failed);
        if (!running)
            break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) {
                if (stop_signal == SIGTERM) /* Ctrl-C reaches the runs itself; a SIGTERM is passed on */
                    for (int i = 0; i < s->n_runs; i++)
                        if (s->runs[i].pid > 0)
                            kill(s->runs[i].pid, SIGTERM);
                continue;
            }
            break;
        }
        running -= reap(s, pid, status, total, &failed);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return sweep_end(failed, total);
}

#ifdef CS_HAVE_MPI
enum { TAG_ASK = 1, TAG_JOB = 2 };

/* Rank r > 0: asks rank 0 for a run, runs it, reports its exit status with
 * the next request; index -1 means nothing is left (or the sweep stops). */
static int mpi_worker(sweep *s, const char *exe, int threads)
{
    int msg[2] = {-1, 0}, got[2];
    for (;;) {
        MPI_Send(msg, 2, MPI_INT, 0, TAG_ASK, MPI_COMM_WORLD);
        MPI_Recv(got, 2, MPI_INT, 0, TAG_JOB, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (got[0] < 0 || got[0] >= s->n_runs)
            return CLI_OK;
        job *j = &s->runs[got[0]];
        snprintf(j->state, sizeof j->state, "%s", got[1] ? "resume" : "new");
        int status = 127 << 8;
        pid_t pid = start(s, j, exe, threads);
        while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
            if (stop_signal == SIGTERM)
                kill(pid, SIGTERM);
        msg[0] = got[0];
        msg[1] = status;
    }
}

/* Rank 0: hands the runs out one at a time to whichever rank asks (itself
 * included: it runs s->jobs at a time as a serial sweep does), so uneven run
 * times balance; prints every start and end, and counts failures. */
static int mpi_dispatch(sweep *s, const char *exe, int threads, int size, int total)
{
    int next = 0, running = 0, k = 0, failed = 0, workers = size - 1;
    while (running || workers > 0) {
        running += start_local(s, running, &next, &k, total, exe, threads, &failed);
        int flag = 0, status;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
            int msg[2], reply[2] = {-1, 0};
            MPI_Recv(msg, 2, MPI_INT, st.MPI_SOURCE, TAG_ASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (msg[0] >= 0 && msg[0] < s->n_runs)
                account(&s->runs[msg[0]], total, msg[1], &failed);
            while (!stop_signal && next < s->n_runs && !strcmp(s->runs[next].state, "done"))
                next++;
            if (!stop_signal && next < s->n_runs) {
                job *j = &s->runs[next];
                j->index = ++k;
                reply[0] = next++;
                reply[1] = !strcmp(j->state, "resume");
                printf("[%d/%d] %-7s %s (rank %d)\n", k, total, reply[1] ? "resume" : "start", j->dir, st.MPI_SOURCE);
            } else {
                workers--;
            }
            MPI_Send(reply, 2, MPI_INT, st.MPI_SOURCE, TAG_JOB, MPI_COMM_WORLD);
            fflush(stdout);
            continue;
        }
        pid_t pid = running ? waitpid(-1, &status, WNOHANG) : 0;
        if (pid > 0) {
            running -= reap(s, pid, status, total, &failed);
            continue;
        }
        if (stop_signal == SIGTERM)
            for (int i = 0; i < s->n_runs; i++)
                if (s->runs[i].pid > 0)
                    kill(s->runs[i].pid, SIGTERM);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return sweep_end(failed, total);
}

/* The sweep over MPI ranks: every rank has made the same list of runs; rank
 * 0 hands them out. Returns -1 when not launched by an MPI launcher (or with
 * one rank): the caller runs the sweep serially. *rank is set. */
static int execute_mpi(sweep *s, const char *exe, int *rank)
{
    *rank = 0;
    if (!cli_under_mpi())
        return -1;
    int size = 1;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        MPI_Finalize();
        return -1;
    }
    int threads = cli_rank_cores(cli_mpi_node_ranks()) / s->jobs;
    if (threads < 1)
        threads = 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc;
    if (*rank == 0) {
        int total = 0;
        for (int i = 0; i < s->n_runs; i++)
            total += strcmp(s->runs[i].state, "done") != 0;
        printf("cilscale sweep: %d runs in %s (%d done already, %d to go) over %d MPI ranks, %d threads each\n",
               s->n_runs, s->out, s->n_runs - total, total, size, threads);
        fflush(stdout);
        rc = mpi_dispatch(s, exe, threads, size, total);
    } else {
        rc = mpi_worker(s, exe, threads);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    MPI_Finalize();
    return rc;
}
#endif

static int report(const sweep *s, const char *exe)
{
    char out[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/report", s->out);
    char *argv[] = {(char *)exe, "report", (char *)s->out, "--out", out, "--figure1", NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 1); /* the table is in DIR/report/report.csv; errors still show */
        execv(exe, argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "cilscale sweep: the report failed (cilscale report %s --out %s --figure1)\n", s->out, out);
        return CLI_FAIL;
    }
    printf("cilscale sweep: report in %s (report.csv, report.svg, figure1-ARCH.svg)\n", out);
    return CLI_OK;
}

static void free_sweep(sweep *s)
{
    for (int b = 0; b < s->n_blocks; b++)
        for (int a = 0; a < s->blocks[b].n_axes; a++)
            for (int v = 0; v < s->blocks[b].axes[a].n; v++)
                free(s->blocks[b].axes[a].values[v]);
    for (int v = 0; v < s->common.n; v++)
        free(s->common.values[v]);
    for (int i = 0; i < s->n_runs; i++)
        for (int a = 0; a < s->runs[i].n_args; a++)
            free(s->runs[i].args[a]);
    free(s->runs);
    free(s);
}

int cmd_sweep(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"set", required_argument, 0, O_SET},     {"seeds", required_argument, 0, O_SEEDS},
        {"figure1", no_argument, 0, O_FIGURE1},   {"file", required_argument, 0, O_FILE},
        {"out", required_argument, 0, O_OUT},     {"jobs", required_argument, 0, O_JOBS},
        {"shard", required_argument, 0, O_SHARD}, {"list", no_argument, 0, O_LIST},
        {"no-report", no_argument, 0, O_NOREPORT}, {"plugins", required_argument, 0, O_PLUGINS},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    sweep *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "cilscale sweep: out of memory\n");
        return CLI_FAIL;
    }
    s->jobs = 1;
    opts o = {.s = s};
    int rc = cli_getopt("sweep", argc, argv, longopts, usage, NULL, take_option, &o, 1);
    if (rc != CLI_CONTINUE)
        goto out;
    rc = CLI_USAGE;
    char exe_buf[PATH_MAX];
    const char *exe = self_exe(exe_buf, sizeof exe_buf);
    if (!exe) {
        fprintf(stderr, "cilscale sweep: cannot find its own executable (/proc/self/exe)\n");
        rc = CLI_FAIL;
        goto out;
    }
    if (o.file && optind < argc) {
        fprintf(stderr, "cilscale sweep: give an experiment file or --file SWEEP.cfg, not both\n");
        goto out;
    }
    char outbuf[PATH_MAX];
    snprintf(outbuf, sizeof outbuf, "%s", s->out); /* --out wins over the file's out */
    s->out[0] = '\0';
    if (o.file && load_file(o.file, s))
        goto out;
    if (*outbuf)
        snprintf(s->out, sizeof s->out, "%s", outbuf);
    if (!*s->experiment) {
        if (optind < argc)
            snprintf(s->experiment, sizeof s->experiment, "%s", argv[optind]);
        else {
            char root[PATH_MAX];
            if (cs_build_tree_root(root, sizeof root))
                snprintf(s->experiment, sizeof s->experiment, "%s/configs/fashion-mnist.cfg", root);
            else
                snprintf(s->experiment, sizeof s->experiment, "%s/configs/fashion-mnist.cfg", CS_INSTALL_DATA);
        }
    }
    if (!*s->out) {
        fprintf(stderr, "cilscale sweep: --out DIR is required (the sweep's folder)\n");
        goto out;
    }
    if (!o.file || o.n_sets || o.figure1) { /* the command line's block */
        if (s->n_blocks == MAX_BLOCKS) {
            fprintf(stderr, "cilscale sweep: more than %d blocks\n", MAX_BLOCKS);
            goto out;
        }
        block *b = &s->blocks[s->n_blocks++];
        b->figure1 = o.figure1;
        for (int i = 0; i < o.n_sets; i++) {
            axis probe;
            if (parse_axis("--set", o.sets[i], &probe))
                goto out;
            int several = probe.n > 1;
            for (int v = 0; v < probe.n; v++)
                free(probe.values[v]);
            /* a single value sets it for every run (the file's blocks too) */
            if (add_set(s, several ? b : NULL, "--set", o.sets[i]))
                goto out;
        }
    }
    if (o.seeds && parse_seeds("--seeds", o.seeds, s))
        goto out;
    if (!s->n_seeds) {
        static cs_experiment e;
        job none = {.seed = ULLONG_MAX};
        if (resolve(s, &none, &e, 0))
            goto out;
        s->seeds[s->n_seeds++] = e.seed;
    }
    cs_registry *reg = cli_load_plugins("sweep", s->have_plugins ? s->plugins : NULL, 1);
    if (!reg) {
        rc = CLI_FAIL;
        goto out;
    }
    s->runs = calloc(MAX_RUNS, sizeof *s->runs);
    int bad = !s->runs;
    for (int b = 0; b < s->n_blocks && !bad; b++)
        bad = expand_block(s, &s->blocks[b], reg) != 0;
    cs_registry_free(reg);
    if (bad)
        goto out;
    /* resolve every run before starting any: a bad value stops the sweep here */
    static cs_experiment e;
    int kept = 0;
    for (int i = 0; i < s->n_runs; i++) {
        job *j = &s->runs[i];
        if (resolve(s, j, &e, 0))
            goto out;
        name_job(s, &e, j);
        for (int k = 0; k < kept; k++)
            if (!strcmp(s->runs[k].dir, j->dir))
                goto duplicate;
        if (s->shard_n && i % s->shard_n != s->shard_k - 1)
            goto duplicate; /* another shard's */
        if (classify(&e, j))
            goto out;
        if (kept != i) {
            s->runs[kept] = *j;
            memset(j, 0, sizeof *j);
        }
        kept++;
        continue;
    duplicate:
        for (int a = 0; a < j->n_args; a++)
            free(j->args[a]);
        j->n_args = 0;
    }
    s->n_runs = kept;
    if (s->list) {
        for (int i = 0; i < s->n_runs && !(cli_under_mpi() && cli_launch_rank() != 0); i++) /* rank 0 lists them */
            printf("%-7s %s\n", s->runs[i].state, s->runs[i].dir);
        rc = CLI_OK;
        goto out;
    }
    if (cli_mkdirs(s->out)) {
        fprintf(stderr, "cilscale sweep: %s: cannot make the folder (%s)\n", s->out, strerror(errno));
        rc = CLI_FAIL;
        goto out;
    }
    int rank = 0;
#ifdef CS_HAVE_MPI
    rc = execute_mpi(s, exe, &rank);
    if (rc < 0)
        rc = execute(s, exe);
#else
    rc = execute(s, exe);
#endif
    if (rc == CLI_OK && rank == 0 && !s->no_report && !s->shard_n)
        rc = report(s, exe);
out:
    free_sweep(s);
    return rc;
}
