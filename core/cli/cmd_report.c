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
#include "runtime/svgplot.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: cilscale report DIR... [--out DIR] [--title T] [--csv] [--figure1] [--metric top1|top5] [--x w|params]\n"
    "\n"
    "Reads the results.csv of each run folder DIR (or, when DIR has none, of each\n"
    "of its immediate subfolders that has one, in name order) and prints one table:\n"
    "label, architecture, policy, CIL algorithm, parameters, budget use (the count\n"
    "the budget was held to / the budget), states finished, and in %: top-1 after\n"
    "the last state (last), mean top-1 over the states after the first (avg inc),\n"
    "mean top-1 over all states (avg all), mean top-5 over the states after the\n"
    "first with more than 5 classes seen (avg inc5), and forgetting (mean over the\n"
    "earlier states' classes of their best top-1 before the last state less their\n"
    "top-1 after it). '-' marks a value that is not defined.\n"
    "\n"
    "Runs whose resolved settings are equal except for the seed also get a row of\n"
    "their own: mean +- sample standard deviation over the seeds. Runs of other\n"
    "settings are never merged: when two groups would share a label, a warning\n"
    "names the settings that differ and the labels show them. A seed that appears\n"
    "twice in a group is warned about and its second run kept apart. Runs written\n"
    "before settings were recorded group by their label less a trailing 'seed N'.\n"
    "\n"
    "  --out DIR         also write DIR/report.csv (the table), DIR/report.svg (top-1\n"
    "                    against classes seen: a line per run, mean +- std bands for\n"
    "                    groups); makes DIR\n"
    "  --figure1         with --out: DIR/figure1-ARCH.svg per architecture: the metric\n"
    "                    against w, one line per depth vector (through its budgets),\n"
    "                    psi's point ringed, error bars over seeds; other policies as\n"
    "                    points\n"
    "  --x X             figure 1's x axis: w (default) or params (log, budgets as lines)\n"
    "  --metric M        figure 1's metric: top1 (average incremental top-1, default) or\n"
    "                    top5 (average incremental top-5, the paper's)\n"
    "  --title T         the plot's title (default: top-1 accuracy against classes seen)\n"
    "  --csv             print the table as CSV (values in %, std columns for groups)\n"
    "  --help            this text\n"
    "\n"
    "Exit status: 0 done; 1 a run could not be read (each named on one line; the\n"
    "others are still reported) or the output could not be written; 2 bad usage.\n";

#define N_METRICS 5

typedef struct run {
    cs_run_result *r;
    cs_run_summary s;
} run;

/* One row of the table: a run, or the mean of runs that differ in their seed. */
typedef struct row {
    char label[sizeof((cs_run_result *)0)->label + 256];
    int runs;
    int first;      /* index of its first run */
    int *members;   /* groups: the runs' indices (owned) */
    int in_group;   /* a single run's row whose run also counts in a group row */
    double use;     /* budget use, NaN without a budget */
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
    v[3] = 100 * s->avg_inc5;
    v[4] = 100 * s->forgetting;
}

static double budget_use(const cs_run_result *r)
{
    return r->budget > 0 ? (double)(r->counted ? r->counted : r->params) / (double)r->budget : NAN;
}

static void run_row(const run *u, row *w)
{
    snprintf(w->label, sizeof w->label, "%s", u->r->label);
    w->runs = 1;
    w->arch = u->r->arch;
    w->policy = u->r->policy;
    w->cil = u->r->cil;
    w->params = u->r->params;
    w->use = budget_use(u->r);
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
    w->use = budget_use(a);
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

#define N_COLS 12
#define FIRST_METRIC 7
static const char *const col_names[N_COLS] = {"label", "arch",    "policy",  "cil",      "params",     "use",
                                              "states", "last",   "avg inc", "avg all",  "avg inc5",   "forgetting"};

static void format_row(const row *w, char cells[N_COLS][480])
{
    snprintf(cells[0], 480, "%s", w->label);
    snprintf(cells[1], 224, "%s", *w->arch ? w->arch : "-");
    snprintf(cells[2], 224, "%s", *w->policy ? w->policy : "-");
    snprintf(cells[3], 224, "%s", *w->cil ? w->cil : "-");
    if (w->params > 0)
        cli_thousands(w->params, cells[4], 224);
    else
        snprintf(cells[4], 224, "-");
    if (isnan(w->use))
        snprintf(cells[5], 224, "-");
    else
        snprintf(cells[5], 224, "%.1f%%", 100 * w->use);
    snprintf(cells[6], 224, "%s", w->states);
    for (int k = 0; k < N_METRICS; k++) {
        char *c = cells[FIRST_METRIC + k];
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
    static char cells[N_COLS][480];
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
    fputs("label,runs,arch,policy,cil,params,budget_use,states,last_top1,last_top1_std,avg_inc_top1,"
          "avg_inc_top1_std,avg_inc_all_top1,avg_inc_all_top1_std,avg_inc_top5,avg_inc_top5_std,forgetting,"
          "forgetting_std\n",
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
        fputc(',', f);
        if (!isnan(w->use))
            fprintf(f, "%.4f", w->use);
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
typedef struct report_opts {
    const char *out, *title;
    int csv, figure1, metric5, x_params;
} report_opts;

/* Row i is a single run that also counts in a group row (its line is then the group's band). */
static int grouped(const row *rows, int n_runs, int n_rows, int i)
{
    for (int g = n_runs; g < n_rows; g++)
        for (int k = 0; k < rows[g].runs; k++)
            if (rows[g].members && rows[g].members[k] == i)
                return 1;
    return 0;
}

/* report.svg: top-1 against classes seen; a group is its mean with a +- std band. */
static int bands_svg(const char *path, const char *title, const run *runs, const row *rows, int n_runs, int n_rows)
{
    cs_plot_series *se = calloc((size_t)n_rows + 1, sizeof *se);
    cs_plot_point *pts = calloc(((size_t)n_rows + 1) * CS_MAX_STATES, sizeof *pts);
    int ns = 0, rc = CLI_OK;
    if (!se || !pts) {
        fprintf(stderr, "cilscale report: out of memory\n");
        rc = CLI_FAIL;
        goto out;
    }
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        if (i < n_runs && grouped(rows, n_runs, n_rows, i))
            continue;
        cs_plot_point *p = pts + (size_t)ns * CS_MAX_STATES;
        int np = 0;
        for (int st = 0; st < CS_MAX_STATES; st++) {
            double sum = 0, ss = 0, x = NAN;
            int m = 0;
            for (int k = 0; k < w->runs; k++) {
                const cs_run_result *r = runs[w->members ? w->members[k] : w->first].r;
                if (st < r->n_states && isfinite(r->states[st].top1)) {
                    sum += 100 * r->states[st].top1, m++;
                    x = r->states[st].n_seen;
                }
            }
            if (!m)
                continue;
            double mean = sum / m;
            for (int k = 0; k < w->runs; k++) {
                const cs_run_result *r = runs[w->members ? w->members[k] : w->first].r;
                if (st < r->n_states && isfinite(r->states[st].top1))
                    ss += (100 * r->states[st].top1 - mean) * (100 * r->states[st].top1 - mean);
            }
            p[np++] = (cs_plot_point){x, mean, m >= 2 ? sqrt(ss / (m - 1)) : NAN, 0};
        }
        se[ns++] = (cs_plot_series){w->label, p, np, 1, w->runs > 1, 0};
    }
    cs_plot plot = {.title = title && *title ? title : "top-1 accuracy against classes seen",
                    .xlabel = "classes seen", .ylabel = "top-1 accuracy (%)", .series = se, .n_series = ns,
                    .fixed_y = 1, .y_lo = 0, .y_hi = 100,
                    .note = n_rows > n_runs ? "groups: mean over seeds, shaded +- one sample standard deviation"
                                            : NULL};
    cs_error err;
    if (cs_plot_write(path, &plot, &err)) {
        fprintf(stderr, "cilscale report: %s\n", err.msg);
        rc = CLI_FAIL;
    }
out:
    free(se);
    free(pts);
    return rc;
}

static int all_ones(const cs_run_result *r)
{
    for (int i = 0; i < r->n_stages; i++)
        if (r->depths[i] != 1)
            return 0;
    return r->n_stages > 0;
}

static int cmp_x(const void *a, const void *b)
{
    double x = ((const cs_plot_point *)a)->x, y = ((const cs_plot_point *)b)->x;
    return x < y ? -1 : x > y;
}

/* DIR/figure1-ARCH.svg: the metric against parameters, a line per depth
 * vector (widest-with-depths and hand-given runs), a point set per policy,
 * the budgets as dashed lines, psi's point (psi, or one block per stage under
 * a budget) ringed, error bars over seeds. */
static int figure1_svg(const char *dir, const char *arch, int top5, int x_params, const run *runs, const row *rows,
                       int n_rows)
{
    int n_runs = 0;
    while (n_runs < n_rows && !rows[n_runs].members)
        n_runs++;
    cs_plot_series *se = calloc((size_t)n_rows + 1, sizeof *se);
    cs_plot_point *pts = calloc((size_t)n_rows + 1, sizeof *pts);
    char (*names)[160] = calloc((size_t)n_rows + 1, sizeof *names);
    cs_plot_vline *vl = calloc((size_t)n_rows + 1, sizeof *vl);
    char (*vnames)[48] = calloc((size_t)n_rows + 1, sizeof *vnames);
    int *order = calloc((size_t)n_rows + 1, sizeof *order);
    int ns = 0, nv = 0, np = 0, rc = CLI_OK;
    if (!se || !pts || !names || !vl || !vnames || !order) {
        fprintf(stderr, "cilscale report: out of memory\n");
        rc = CLI_FAIL;
        goto out;
    }
    /* the series, each a run of consecutive points */
    for (int pass = 0; pass < 2; pass++) /* first the depth vectors, then the policies */
        for (int i = 0; i < n_rows; i++) {
            const row *w = &rows[i];
            const cs_run_result *r = runs[w->first].r;
            if (strcmp(r->arch, arch) || (i < n_runs && grouped(rows, n_runs, n_rows, i)))
                continue;
            int by_depths = !strcmp(r->policy, "widest") || !strcmp(r->policy, "none");
            if (by_depths != (pass == 0))
                continue;
            char name[160];
            if (by_depths) {
                size_t u = (size_t)snprintf(name, sizeof name, "depths [");
                for (int k = 0; k < r->n_stages && u < sizeof name; k++)
                    u += (size_t)snprintf(name + u, sizeof name - u, "%s%d", k ? "," : "", r->depths[k]);
                snprintf(name + (u < sizeof name ? u : sizeof name - 1), sizeof name - (u < sizeof name ? u : sizeof name - 1), "]");
            } else {
                snprintf(name, sizeof name, "%s%s", r->policy, strstr(w->label, "keep-res") ? " (input kept)" : "");
            }
            int s;
            for (s = 0; s < ns && strcmp(names[s], name); s++)
                ;
            if (s == ns) {
                snprintf(names[ns], sizeof names[ns], "%s", name);
                se[ns] = (cs_plot_series){names[ns], NULL, 0, by_depths, 0, 0};
                ns++;
            }
            order[np] = s;
            double y = w->mean[top5 ? 3 : 1], sd = w->runs > 1 ? w->sd[top5 ? 3 : 1] : NAN;
            pts[np++] = (cs_plot_point){x_params ? (double)r->params : r->w, y, sd,
                                        !strcmp(r->policy, "psi") || (by_depths && all_ones(r) && r->budget)};
            if (r->budget) {
                int v;
                for (v = 0; v < nv && vl[v].x != (double)r->budget; v++)
                    ;
                if (v == nv) {
                    cs_budget_short(r->budget, vnames[nv], sizeof vnames[nv]);
                    char tmp[48];
                    snprintf(tmp, sizeof tmp, "budget %s", vnames[nv]);
                    snprintf(vnames[nv], sizeof vnames[nv], "%s", tmp);
                    vl[nv] = (cs_plot_vline){(double)r->budget, vnames[nv]};
                    nv++;
                }
            }
        }
    /* points grouped by series (stable), each series sorted by parameters */
    cs_plot_point *sorted = calloc((size_t)np + 1, sizeof *sorted);
    if (!sorted) {
        rc = CLI_FAIL;
        goto out;
    }
    int u = 0;
    for (int s = 0; s < ns; s++) {
        int start = u;
        for (int k = 0; k < np; k++)
            if (order[k] == s)
                sorted[u++] = pts[k];
        qsort(sorted + start, (size_t)(u - start), sizeof *sorted, cmp_x);
        se[s].pts = sorted + start;
        se[s].n = u - start;
    }
    char title[160], path[PATH_MAX], ylabel[96];
    snprintf(title, sizeof title, "%s: average incremental top-%d against %s", arch, top5 ? 5 : 1,
             x_params ? "parameters" : "width");
    snprintf(ylabel, sizeof ylabel, "average incremental top-%d (%%)", top5 ? 5 : 1);
    snprintf(path, sizeof path, "%s/figure1-%s.svg", dir, arch);
    /* against w (the default), each depth vector's points sit apart even at one budget; the budgets go in the
     * note. Against parameters (log), every point of a budget is just under it: budgets are dashed lines. */
    char note[400];
    size_t nu = (size_t)snprintf(note, sizeof note, "ringed: psi's pick (one block per stage, widest under the budget); "
                                 "bars: +- one sample std over seeds");
    if (!x_params && nv) {
        nu += (size_t)snprintf(note + nu, sizeof note - nu, "; budget%s", nv > 1 ? "s" : "");
        for (int v = 0; v < nv && nu < sizeof note; v++)
            nu += (size_t)snprintf(note + nu, sizeof note - nu, "%s %s", v ? "," : "", vl[v].label + 7);
    }
    cs_plot plot = {.title = title, .xlabel = x_params ? "parameters" : "width coefficient w", .ylabel = ylabel,
                    .log_x = x_params, .series = se, .n_series = ns, .vlines = x_params ? vl : NULL,
                    .n_vlines = x_params ? nv : 0, .note = note};
    cs_error err;
    if (cs_plot_write(path, &plot, &err)) {
        fprintf(stderr, "cilscale report: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    free(sorted);
out:
    free(se), free(pts), free(names), free(vl), free(vnames), free(order);
    return rc;
}

static int write_out(const char *dir, const report_opts *o, const run *runs, int n_runs, const row *rows, int n_rows)
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
    snprintf(path, sizeof path, "%s/report.svg", dir);
    if (bands_svg(path, o->title, runs, rows, n_runs, n_rows))
        return CLI_FAIL;
    if (o->figure1)
        for (int i = 0; i < n_rows; i++) { /* one figure per architecture, in the order they come */
            int seen = 0;
            for (int k = 0; k < i; k++)
                seen |= !strcmp(runs[rows[k].first].r->arch, runs[rows[i].first].r->arch);
            if (!seen && figure1_svg(dir, runs[rows[i].first].r->arch, o->metric5, o->x_params, runs, rows, n_rows))
                return CLI_FAIL;
        }
    return CLI_OK;
}

/* The key a run groups by: its settings, or (runs written before settings
 * were kept) its label less a trailing "seed N"; 0 when it groups with none. */
static int group_key(const cs_run_result *r, char *key, size_t size)
{
    if (r->settings[0]) {
        snprintf(key, size, "S%s", r->settings);
        return 1;
    }
    key[0] = 'L';
    return seed_base(r->label, key + 1, size - 1);
}

/* "train.epochs=1; model.budget=2M": the settings of a that b lacks or has otherwise. */
static void settings_diff(const char *a, const char *b, char *out, size_t size)
{
    size_t u = 0;
    out[0] = '\0';
    const char *p = a;
    while (*p) {
        const char *end = strstr(p, "; ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = 0;
        for (const char *q = b; *q;) {
            const char *e2 = strstr(q, "; ");
            size_t l2 = e2 ? (size_t)(e2 - q) : strlen(q);
            if (l2 == len && !strncmp(p, q, len))
                found = 1;
            q = e2 ? e2 + 2 : q + l2;
        }
        if (!found && u < size)
            u += (size_t)snprintf(out + u, size - u, "%s%.*s", u ? "; " : "", (int)len, p);
        p = end ? end + 2 : p + len;
    }
}

/* The group rows, after one row per run: runs of equal settings (or, for old
 * runs, equal label bases), in the order their first run came. A seed seen
 * twice in a group keeps its later run out of the mean, with a warning; groups
 * that would share a label get the settings that set them apart in it. */
static int group_runs(const run *rv, int n, list *rows)
{
    size_t cap = n > 0 ? (size_t)n : 1;
    char *taken = calloc(cap, 1);
    int *idx = malloc(cap * sizeof *idx);
    if (!taken || !idx) {
        free(taken), free(idx);
        return -1;
    }
    int first_group = rows->n;
    static char key[sizeof((cs_run_result *)0)->settings + 8], other[sizeof key];
    for (int i = 0; i < n; i++) {
        if (taken[i] || !group_key(rv[i].r, key, sizeof key))
            continue;
        int m = 0;
        for (int j = i; j < n; j++) {
            if (taken[j] || !group_key(rv[j].r, other, sizeof other) || strcmp(key, other))
                continue;
            int repeat = -1;
            for (int k = 0; k < m && key[0] == 'S'; k++)
                if (rv[idx[k]].r->seed == rv[j].r->seed)
                    repeat = idx[k];
            if (repeat >= 0) { /* left as a row of its own */
                fprintf(stderr, "cilscale report: warning: '%s' and '%s' are the same settings and seed %llu: "
                                "the second is kept out of the mean\n",
                        rv[repeat].r->label, rv[j].r->label, (unsigned long long)rv[j].r->seed);
                continue;
            }
            idx[m++] = j;
            taken[j] = 1;
        }
        if (m < 2)
            continue;
        row *w = list_push(rows);
        if (!w) {
            free(taken), free(idx);
            return -1;
        }
        char base[sizeof rv[i].r->label];
        if (!seed_base(rv[i].r->label, base, sizeof base))
            snprintf(base, sizeof base, "%s", rv[i].r->label);
        group_row(rv, idx, m, base, w);
        w->first = idx[0];
        w->members = malloc((size_t)m * sizeof(int));
        if (!w->members) {
            free(taken), free(idx);
            return -1;
        }
        memcpy(w->members, idx, (size_t)m * sizeof(int));
    }
    /* groups whose labels collide: say what differs, and show it */
    row *r = rows->v;
    for (int a = first_group; a < rows->n; a++)
        for (int b = a + 1; b < rows->n; b++) {
            if (strcmp(r[a].label, r[b].label))
                continue;
            const char *sa = rv[r[a].first].r->settings, *sb = rv[r[b].first].r->settings;
            char da[512], db[512];
            settings_diff(sa, sb, da, sizeof da);
            settings_diff(sb, sa, db, sizeof db);
            fprintf(stderr, "cilscale report: warning: two groups are labelled '%s' but their settings differ "
                            "(%s vs %s): kept apart\n",
                    r[a].label, *da ? da : "-", *db ? db : "-");
        }
    int ng = rows->n - first_group;
    char (*extra)[512] = calloc((size_t)(ng > 0 ? ng : 1), sizeof *extra);
    if (!extra) {
        free(taken), free(idx);
        return -1;
    }
    for (int a = first_group; a < rows->n; a++)
        for (int b = first_group; b < rows->n; b++) /* the first other group with its label says what to show */
            if (b != a && !strcmp(r[a].label, r[b].label)) {
                settings_diff(rv[r[a].first].r->settings, rv[r[b].first].r->settings, extra[a - first_group], 512);
                if (!extra[a - first_group][0])
                    snprintf(extra[a - first_group], 512, "?");
                break;
            }
    for (int a = first_group; a < rows->n; a++)
        if (extra[a - first_group][0]) {
            size_t l = strlen(r[a].label);
            snprintf(r[a].label + l, sizeof r[a].label - l, " {%s}", extra[a - first_group]);
        }
    free(extra);
    free(taken);
    free(idx);
    return 0;
}

static int take_option(void *ctx, int opt, const char *arg)
{
    report_opts *o = ctx;
    switch (opt) {
    case 'o': o->out = arg; return CLI_OPT_TAKEN;
    case 't': o->title = arg; return CLI_OPT_TAKEN;
    case 'c': o->csv = 1; return CLI_OPT_TAKEN;
    case 'f': o->figure1 = 1; return CLI_OPT_TAKEN;
    case 'X':
        if (strcmp(arg, "w") && strcmp(arg, "params")) {
            fprintf(stderr, "cilscale report: --x '%s': expected w or params\n", arg);
            return CLI_OPT_BAD;
        }
        o->x_params = !strcmp(arg, "params");
        return CLI_OPT_TAKEN;
    case 'M':
        if (strcmp(arg, "top1") && strcmp(arg, "top5")) {
            fprintf(stderr, "cilscale report: --metric '%s': expected top1 or top5\n", arg);
            return CLI_OPT_BAD;
        }
        o->metric5 = !strcmp(arg, "top5");
        return CLI_OPT_TAKEN;
    default: return CLI_OPT_UNKNOWN;
    }
}

int cmd_report(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},
        {"title", required_argument, 0, 't'},
        {"csv", no_argument, 0, 'c'},
        {"figure1", no_argument, 0, 'f'},
        {"metric", required_argument, 0, 'M'},
        {"x", required_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    report_opts ro = {0};
    int prc = cli_getopt("report", argc, argv, longopts, usage, NULL, take_option, &ro, -1);
    if (prc != CLI_CONTINUE)
        return prc;
    const char *out = ro.out;
    int csv = ro.csv;
    if (optind == argc) {
        fprintf(stderr, "cilscale report: no run folders given (see cilscale report --help)\n");
        return CLI_USAGE;
    }
    if (ro.figure1 && !out) {
        fprintf(stderr, "cilscale report: --figure1 writes DIR/figure1-ARCH.svg: give --out DIR\n");
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
        w->first = i;
    }
    if (group_runs(rv, runs.n, &rows))
        goto nomem;
    if (csv)
        print_csv(stdout, rows.v, rows.n);
    else
        print_table(stdout, rows.v, runs.n, rows.n);
    fflush(stdout);
    if (out && write_out(out, &ro, rv, runs.n, rows.v, rows.n))
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
    for (int i = 0; i < rows.n; i++)
        free(((row *)rows.v)[i].members);
    free(rows.v);
    return rc;
}
