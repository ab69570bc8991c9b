/* cmd_report.c: `cilscale report`: one table (and plot) of finished runs, read
 * from their results.csv, with runs that differ only in their seed averaged. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/atomic.h"
#include "runtime/results.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: cilscale report DIR... [--out DIR] [--title T] [--csv]\n"
    "\n"
    "Reads the results.csv of each run folder DIR (or, when DIR has none, of each\n"
    "of its immediate subfolders that has one, in name order) and prints one table:\n"
    "label, architecture, policy, CIL algorithm, parameters, states finished, and\n"
    "in %: top-1 after the last state (last), mean top-1 over the states after the\n"
    "first (avg inc), mean top-1 over all states (avg all), and forgetting (mean\n"
    "over the earlier states' classes of their best top-1 before the last state\n"
    "less their top-1 after it). '-' marks a value that is not defined (avg inc and\n"
    "forgetting need two states). Runs whose labels differ only in a trailing\n"
    "'seed N' also get a row of their own: mean +- sample standard deviation over\n"
    "the seeds.\n"
    "\n"
    "  --out DIR         also write DIR/report.svg (top-1 against classes seen, one\n"
    "                    line per run) and DIR/report.csv (the table); makes DIR\n"
    "  --title T         the plot's title (default: top-1 accuracy against classes seen)\n"
    "  --csv             print the table as CSV (values in %, std columns for groups)\n"
    "  --help            this text\n"
    "\n"
    "Exit status: 0 done; 1 a run could not be read (each named on one line; the\n"
    "others are still reported) or the output could not be written; 2 bad usage.\n";

#define N_METRICS 4

typedef struct run {
    cs_run_result *r;
    cs_run_summary s;
} run;

/* One row of the table: a run, or the mean of runs that differ in their seed. */
typedef struct row {
    char label[sizeof((cs_run_result *)0)->label + 32];
    int runs;
    const char *arch, *policy, *cil; /* "" when the runs differ */
    int64_t params;                  /* -1 when the runs differ */
    char states[32];
    double mean[N_METRICS], sd[N_METRICS]; /* in %; sd NaN when not defined */
    int defined[N_METRICS];                /* runs the metric is defined for */
} row;

typedef struct list {
    void *v;
    int n, cap;
    size_t size;
} list;

static void *list_push(list *l)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        void *v = realloc(l->v, (size_t)cap * l->size);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    void *p = (char *)l->v + (size_t)l->n++ * l->size;
    memset(p, 0, l->size);
    return p;
}

static int has_results(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/results.csv", dir) >= sizeof path)
        return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Appends a copy of path to dirs unless the same folder is there already
 * (given twice, or both as a run and through its parent). -1 when out of memory. */
static int push_dir(list *dirs, const char *path, int len)
{
    char *copy = strndup(path, (size_t)len), real[PATH_MAX], other[PATH_MAX];
    if (!copy)
        return -1;
    if (realpath(copy, real))
        for (int i = 0; i < dirs->n; i++)
            if (realpath(((char **)dirs->v)[i], other) && !strcmp(real, other)) {
                free(copy);
                return 0;
            }
    char **d = list_push(dirs);
    if (!d) {
        free(copy);
        return -1;
    }
    *d = copy;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The run folders DIR stands for, appended to dirs (strings owned by the list). */
static int collect(const char *arg, list *dirs)
{
    struct stat st;
    if (stat(arg, &st) != 0) {
        fprintf(stderr, "cilscale report: %s: cannot read (%s)\n", arg, strerror(errno));
        return CLI_FAIL;
    }
    if (!S_ISDIR(st.st_mode)) {
        /* DIR/results.csv itself names its run */
        const char *slash = strrchr(arg, '/'), *name = slash ? slash + 1 : arg;
        if (strcmp(name, "results.csv") != 0) {
            fprintf(stderr, "cilscale report: %s: not a folder (expected a run folder holding results.csv)\n", arg);
            return CLI_FAIL;
        }
        if (push_dir(dirs, slash ? arg : ".", slash ? (slash == arg ? 1 : (int)(slash - arg)) : 1))
            goto nomem;
        return CLI_OK;
    }
    if (has_results(arg)) {
        if (push_dir(dirs, arg, (int)strlen(arg)))
            goto nomem;
        return CLI_OK;
    }
    DIR *dp = opendir(arg);
    if (!dp) {
        fprintf(stderr, "cilscale report: %s: cannot read (%s)\n", arg, strerror(errno));
        return CLI_FAIL;
    }
    int first = dirs->n, found = 0;
    size_t al = strlen(arg);
    while (al > 1 && arg[al - 1] == '/')
        al--;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%.*s/%s", (int)al, arg, e->d_name) >= sizeof path)
            continue;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !has_results(path))
            continue;
        found++;
        if (push_dir(dirs, path, (int)strlen(path))) {
            closedir(dp);
            goto nomem;
        }
    }
    closedir(dp);
    if (!found) {
        fprintf(stderr, "cilscale report: %s: no results.csv in it or in its subfolders\n", arg);
        return CLI_FAIL;
    }
    qsort((char **)dirs->v + first, (size_t)(dirs->n - first), sizeof(char *), compare_names);
    return CLI_OK;
nomem:
    fprintf(stderr, "cilscale report: out of memory\n");
    return CLI_FAIL;
}

/* The label without a trailing "seed N" (and the separators before it); 0 if it has none. */
static int seed_base(const char *label, char *base, size_t size)
{
    size_t n = strlen(label), i = n;
    while (i > 0 && isdigit((unsigned char)label[i - 1]))
        i--;
    if (i == n)
        return 0;
    while (i > 0 && (label[i - 1] == ' ' || label[i - 1] == '=' || label[i - 1] == '_' || label[i - 1] == '-'))
        i--;
    if (i < 4 || strncmp(label + i - 4, "seed", 4) != 0)
        return 0;
    i -= 4;
    if (i > 0 && isalnum((unsigned char)label[i - 1]))
        return 0;
    while (i > 0 && strchr(" ,;:_-/(", label[i - 1]))
        i--;
    if (i == 0)
        return 0;
    snprintf(base, size, "%.*s", (int)i, label);
    return 1;
}

static void metrics(const cs_run_summary *s, double v[N_METRICS])
{
    v[0] = 100 * s->last;
    v[1] = 100 * s->avg_inc;
    v[2] = 100 * s->avg_inc_all;
    v[3] = 100 * s->forgetting;
}

static void run_row(const run *u, row *w)
{
    snprintf(w->label, sizeof w->label, "%s", u->r->label);
    w->runs = 1;
    w->arch = u->r->arch;
    w->policy = u->r->policy;
    w->cil = u->r->cil;
    w->params = u->r->params;
    snprintf(w->states, sizeof w->states, "%d", u->r->n_states);
    if (u->r->n_states_planned > u->r->n_states)
        snprintf(w->states, sizeof w->states, "%d/%d", u->r->n_states, u->r->n_states_planned);
    metrics(&u->s, w->mean);
    for (int k = 0; k < N_METRICS; k++) {
        w->sd[k] = NAN;
        w->defined[k] = !isnan(w->mean[k]);
    }
}

/* The mean row of the runs in idx (n >= 2). */
static void group_row(const run *runs, const int *idx, int n, const char *base, row *w)
{
    snprintf(w->label, sizeof w->label, "%s (%d seeds)", base, n);
    w->runs = n;
    const cs_run_result *a = runs[idx[0]].r;
    w->arch = a->arch;
    w->policy = a->policy;
    w->cil = a->cil;
    w->params = a->params;
    int smin = a->n_states, smax = a->n_states;
    for (int i = 1; i < n; i++) {
        const cs_run_result *b = runs[idx[i]].r;
        if (strcmp(b->arch, w->arch))
            w->arch = "";
        if (strcmp(b->policy, w->policy))
            w->policy = "";
        if (strcmp(b->cil, w->cil))
            w->cil = "";
        if (b->params != w->params)
            w->params = -1;
        smin = b->n_states < smin ? b->n_states : smin;
        smax = b->n_states > smax ? b->n_states : smax;
    }
    if (smin == smax)
        snprintf(w->states, sizeof w->states, "%d", smin);
    else
        snprintf(w->states, sizeof w->states, "%d-%d", smin, smax);
    for (int k = 0; k < N_METRICS; k++) {
        double sum = 0, v[N_METRICS];
        int m = 0;
        for (int i = 0; i < n; i++) {
            metrics(&runs[idx[i]].s, v);
            if (!isnan(v[k]))
                sum += v[k], m++;
        }
        w->defined[k] = m;
        w->mean[k] = m ? sum / m : NAN;
        double ss = 0;
        for (int i = 0; i < n; i++) {
            metrics(&runs[idx[i]].s, v);
            if (!isnan(v[k]))
                ss += (v[k] - w->mean[k]) * (v[k] - w->mean[k]);
        }
        w->sd[k] = m >= 2 ? sqrt(ss / (m - 1)) : NAN;
    }
}

/* Characters a terminal shows for s (UTF-8: continuation bytes take no column). */
static int columns(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void cell(FILE *f, const char *s, int width, int right, int last)
{
    int pad = width - columns(s);
    if (right)
        for (int i = 0; i < pad; i++)
            fputc(' ', f);
    fputs(s, f);
    if (!right && !last)
        for (int i = 0; i < pad; i++)
            fputc(' ', f);
}

#define N_COLS 10
static const char *const col_names[N_COLS] = {"label",  "arch", "policy",  "cil",     "params",
                                              "states", "last", "avg inc", "avg all", "forgetting"};

static void format_row(const row *w, char cells[N_COLS][224])
{
    snprintf(cells[0], 224, "%s", w->label);
    snprintf(cells[1], 224, "%s", *w->arch ? w->arch : "-");
    snprintf(cells[2], 224, "%s", *w->policy ? w->policy : "-");
    snprintf(cells[3], 224, "%s", *w->cil ? w->cil : "-");
    if (w->params > 0)
        cli_thousands(w->params, cells[4], 224);
    else
        snprintf(cells[4], 224, "-");
    snprintf(cells[5], 224, "%s", w->states);
    for (int k = 0; k < N_METRICS; k++) {
        char *c = cells[6 + k];
        if (!w->defined[k])
            snprintf(c, 224, "-");
        else if (w->runs > 1 && !isnan(w->sd[k]))
            snprintf(c, 224, "%.2f \xc2\xb1 %.2f", w->mean[k], w->sd[k]);
        else
            snprintf(c, 224, "%.2f", w->mean[k]);
    }
}

static void print_table(FILE *f, const row *rows, int n_runs, int n_rows)
{
    static char cells[N_COLS][224];
    int width[N_COLS];
    for (int c = 0; c < N_COLS; c++)
        width[c] = columns(col_names[c]);
    for (int i = 0; i < n_rows; i++) {
        format_row(&rows[i], cells);
        for (int c = 0; c < N_COLS; c++)
            if (columns(cells[c]) > width[c])
                width[c] = columns(cells[c]);
    }
    for (int c = 0; c < N_COLS; c++) {
        if (c)
            fputs("  ", f);
        cell(f, col_names[c], width[c], c >= 4, c == N_COLS - 1);
    }
    fputc('\n', f);
    for (int i = 0; i < n_rows; i++) {
        if (i == n_runs) {
            int total = 2 * (N_COLS - 1);
            for (int c = 0; c < N_COLS; c++)
                total += width[c];
            for (int k = 0; k < total; k++)
                fputc('-', f);
            fputc('\n', f);
        }
        format_row(&rows[i], cells);
        for (int c = 0; c < N_COLS; c++) {
            if (c)
                fputs("  ", f);
            cell(f, cells[c], width[c], c >= 4, c == N_COLS - 1);
        }
        fputc('\n', f);
    }
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void print_csv(FILE *f, const row *rows, int n_rows)
{
    fputs("label,runs,arch,policy,cil,params,states,last_top1,last_top1_std,avg_inc_top1,avg_inc_top1_std,"
          "avg_inc_all_top1,avg_inc_all_top1_std,forgetting,forgetting_std\n",
          f);
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        csv_field(f, w->label);
        fprintf(f, ",%d,", w->runs);
        csv_field(f, w->arch);
        fputc(',', f);
        csv_field(f, w->policy);
        fputc(',', f);
        csv_field(f, w->cil);
        fputc(',', f);
        if (w->params >= 0)
            fprintf(f, "%lld", (long long)w->params);
        fprintf(f, ",%s", w->states);
        for (int k = 0; k < N_METRICS; k++) {
            fputc(',', f);
            if (w->defined[k])
                fprintf(f, "%.2f", w->mean[k]);
            fputc(',', f);
            if (w->runs > 1 && !isnan(w->sd[k]))
                fprintf(f, "%.2f", w->sd[k]);
        }
        fputc('\n', f);
    }
}

/* DIR/report.csv and DIR/report.svg, each through the atomic writer. */
static int write_out(const char *dir, const char *title, const run *runs, int n_runs, const row *rows, int n_rows)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cilscale report: %s: cannot make the folder (%s)\n", dir, strerror(errno));
        return CLI_FAIL;
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/report.csv", dir) >= sizeof path) {
        fprintf(stderr, "cilscale report: %s: path too long\n", dir);
        return CLI_FAIL;
    }
    cs_error err;
    cs_atomic csv;
    int rc = cs_atomic_open(&csv, path, 0666, &err);
    if (rc == CS_OK) {
        print_csv(csv.f, rows, n_rows);
        rc = cs_atomic_commit(&csv, &err);
    }
    cs_atomic_release(&csv);
    if (rc) {
        fprintf(stderr, "cilscale report: %s\n", err.msg);
        return CLI_FAIL;
    }
    const cs_run_result **rs = malloc((size_t)(n_runs ? n_runs : 1) * sizeof *rs);
    if (!rs) {
        fprintf(stderr, "cilscale report: out of memory\n");
        return CLI_FAIL;
    }
    for (int i = 0; i < n_runs; i++)
        rs[i] = runs[i].r;
    snprintf(path, sizeof path, "%s/report.svg", dir);
    rc = cs_results_svg(path, rs, n_runs, title, &err);
    free(rs);
    if (rc) {
        fprintf(stderr, "cilscale report: %s\n", err.msg);
        return CLI_FAIL;
    }
    return CLI_OK;
}

typedef struct report_opts {
    const char *out, *title;
    int csv;
} report_opts;

static int take_option(void *ctx, int opt, const char *arg)
{
    report_opts *o = ctx;
    switch (opt) {
    case 'o': o->out = arg; return CLI_OPT_TAKEN;
    case 't': o->title = arg; return CLI_OPT_TAKEN;
    case 'c': o->csv = 1; return CLI_OPT_TAKEN;
    default: return CLI_OPT_UNKNOWN;
    }
}

int cmd_report(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},
        {"title", required_argument, 0, 't'},
        {"csv", no_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    report_opts ro = {0};
    int prc = cli_getopt("report", argc, argv, longopts, usage, NULL, take_option, &ro, -1);
    if (prc != CLI_CONTINUE)
        return prc;
    const char *out = ro.out, *title = ro.title;
    int csv = ro.csv;
    if (optind == argc) {
        fprintf(stderr, "cilscale report: no run folders given (see cilscale report --help)\n");
        return CLI_USAGE;
    }
    if (out && !*out) {
        fprintf(stderr, "cilscale report: --out '': expected a folder\n");
        return CLI_USAGE;
    }

    int rc = CLI_OK;
    list dirs = {.size = sizeof(char *)}, runs = {.size = sizeof(run)}, rows = {.size = sizeof(row)};
    for (int i = optind; i < argc; i++)
        if (collect(argv[i], &dirs))
            rc = CLI_FAIL;
    for (int i = 0; i < dirs.n; i++) {
        const char *dir = ((char **)dirs.v)[i];
        cs_run_result *r = malloc(sizeof *r);
        run *u = r ? list_push(&runs) : NULL;
        if (!u) {
            free(r);
            fprintf(stderr, "cilscale report: out of memory\n");
            rc = CLI_FAIL;
            goto done;
        }
        cs_error err;
        if (cs_results_read(dir, r, &err)) {
            fprintf(stderr, "cilscale report: %s\n", err.msg);
            free(r);
            runs.n--;
            rc = CLI_FAIL;
            continue;
        }
        u->r = r;
        cs_run_summarize(r, &u->s);
    }
    if (runs.n == 0)
        goto done;

    run *rv = runs.v;
    for (int i = 0; i < runs.n; i++) {
        row *w = list_push(&rows);
        if (!w)
            goto nomem;
        run_row(&rv[i], w);
    }
    /* runs that differ only in their seed, in the order their first run came */
    size_t n_runs = runs.n > 0 ? (size_t)runs.n : 1;
    int *idx = malloc(n_runs * sizeof *idx);
    char *done_flags = calloc(n_runs, 1);
    if (!idx || !done_flags) {
        free(idx);
        free(done_flags);
        goto nomem;
    }
    for (int i = 0; i < runs.n; i++) {
        char base[sizeof rv[i].r->label], other[sizeof base];
        if (done_flags[i] || !seed_base(rv[i].r->label, base, sizeof base))
            continue;
        int n = 0;
        for (int j = i; j < runs.n; j++)
            if (!done_flags[j] && seed_base(rv[j].r->label, other, sizeof other) && !strcmp(base, other)) {
                idx[n++] = j;
                done_flags[j] = 1;
            }
        if (n < 2)
            continue;
        row *w = list_push(&rows);
        if (!w) {
            free(idx);
            free(done_flags);
            goto nomem;
        }
        group_row(rv, idx, n, base, w);
    }
    free(idx);
    free(done_flags);

    if (csv)
        print_csv(stdout, rows.v, rows.n);
    else
        print_table(stdout, rows.v, runs.n, rows.n);
    fflush(stdout);
    if (out && write_out(out, title, rv, runs.n, rows.v, rows.n))
        rc = CLI_FAIL;
    goto done;
nomem:
    fprintf(stderr, "cilscale report: out of memory\n");
    rc = CLI_FAIL;
done:
    for (int i = 0; i < dirs.n; i++)
        free(((char **)dirs.v)[i]);
    for (int i = 0; i < runs.n; i++)
        free(((run *)runs.v)[i].r);
    free(dirs.v);
    free(runs.v);
    free(rows.v);
    return rc;
}
