/* test_results.c: the metrics of a run (against hand computations), the files
 * that keep it (results.json, results.csv, accuracy.svg: written atomically,
 * read back, their error lines), and `cilscale report`. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/results.h"
#include "runtime/svgplot.h"
#include "testutil.h"

#define TOL 1e-12

static char out[1 << 16], err[1 << 14];
#define RUN(...) tu_run(out, sizeof out, err, sizeof err, __VA_ARGS__, (const char *)NULL)

static void assert_contains(const char *hay, const char *needle)
{
    ck_assert_msg(strstr(hay, needle) != NULL, "expected '%s' in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
    ck_assert_msg(strstr(hay, needle) == NULL, "did not expect '%s' in:\n%s", needle, hay);
}

/* text is exactly one line starting with prefix. */
static void assert_one_line(const char *text, const char *prefix)
{
    size_t n = strlen(text);
    ck_assert_msg(n > 0 && text[n - 1] == '\n' && strchr(text, '\n') == text + n - 1,
                  "expected one line, got:\n%s", text);
    ck_assert_msg(strncmp(text, prefix, strlen(prefix)) == 0, "expected a line starting '%s', got: %s", prefix, text);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The whole file, NUL-terminated, in a static buffer per slot. */
static const char *slurp(const char *path)
{
    static char bufs[4][1 << 16];
    static int slot;
    char *b = bufs[slot++ % 4];
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    size_t n = fread(b, 1, sizeof bufs[0] - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* dir/name, in one of 16 static buffers used in turn. */
static const char *path_in(const char *dir, const char *name)
{
    static char paths[16][1024];
    static int slot;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);
    char *p = paths[slot++ % 16];
    memcpy(p, tmp, sizeof tmp);
    return p;
}

/* A fresh folder under the test's temporary folder (its path in a buffer of
 * its own, which only the next 7 calls reuse). */
static const char *subdir(const char *name)
{
    static char paths[8][1024];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
    ck_assert_msg(mkdir(p, 0777) == 0, "cannot make %s", p);
    return p;
}

/* No NAME.tmp left in dir. */
static void assert_no_temps(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        ck_assert_msg(n < 4 || strcmp(e->d_name + n - 4, ".tmp") != 0, "temporary file %s left in %s", e->d_name,
                      dir);
    }
    closedir(d);
}

/* A run of n states: state i adds 10 classes, top-1 and per-group top-1 given
 * row by row (groups[i][j] for j <= i). */
static cs_run_result *make_run(const char *label, int n, const double *top1, const double groups[][8])
{
    static cs_run_result runs[4];
    static int slot;
    cs_run_result *r = &runs[slot++ % 4];
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    snprintf(r->arch, sizeof r->arch, "resnet18");
    snprintf(r->policy, sizeof r->policy, "psi");
    snprintf(r->cil, sizeof r->cil, "lucir");
    snprintf(r->backend, sizeof r->backend, "cpu");
    snprintf(r->device, sizeof r->device, "x86-64, 16 threads");
    snprintf(r->version, sizeof r->version, "0.1.0");
    snprintf(r->data, sizeof r->data, "/data/cifar100");
    r->budget = 1000000;
    r->params = 988500;
    r->w = 0.445;
    r->d = 0.5;
    r->resolution = 1;
    r->n_stages = 4;
    int depths[] = {1, 1, 1, 1}, widths[] = {32, 56, 112, 224};
    memcpy(r->depths, depths, sizeof depths);
    memcpy(r->widths, widths, sizeof widths);
    r->seed = 18446744073709551615ull;
    r->n_states = n;
    r->n_states_planned = n + 1;
    r->seconds = 1234.5;
    for (int i = 0; i < n; i++) {
        cs_state_result *st = &r->states[i];
        st->state = i;
        st->n_new = 10;
        st->n_seen = 10 * (i + 1);
        st->top1 = top1[i];
        st->top5 = fmin(1, top1[i] + 0.15);
        st->train_loss = 2.5 / (i + 1);
        st->train_seconds = 100.25 + i;
        st->eval_seconds = 3.125;
        for (int j = 0; j <= i; j++)
            st->group_top1[j] = groups[i][j];
    }
    return r;
}

/* ---- metrics ---- */

START_TEST(test_summary_three_states)
{
    static const double top1[] = {0.9, 0.7, 0.5};
    static const double g[][8] = {{0.9}, {0.6, 0.8}, {0.4, 0.5, 0.6}};
    cs_run_summary s;
    cs_run_summarize(make_run("a", 3, top1, g), &s);
    ck_assert_double_eq_tol(s.last, 0.5, TOL);
    ck_assert_double_eq_tol(s.avg_inc, (0.7 + 0.5) / 2, TOL);
    ck_assert_double_eq_tol(s.avg_inc_all, (0.9 + 0.7 + 0.5) / 3, TOL);
    /* group 0: best 0.9 (state 0) - 0.4; group 1: best 0.8 - 0.5 */
    ck_assert_double_eq_tol(s.forgetting, ((0.9 - 0.4) + (0.8 - 0.5)) / 2, TOL);
}
END_TEST

/* The best top-1 of a group may come after the state that added it; the last
 * state's own value never counts as the best. */
START_TEST(test_summary_best_later)
{
    static const double top1[] = {0.5, 0.75, 0.65, 0.3};
    static const double g[][8] = {{0.5}, {0.7, 0.8}, {0.6, 0.9, 0.4}, {0.2, 0.3, 0.45, 0.25}};
    cs_run_summary s;
    cs_run_summarize(make_run("b", 4, top1, g), &s);
    ck_assert_double_eq_tol(s.last, 0.3, TOL);
    ck_assert_double_eq_tol(s.avg_inc, (0.75 + 0.65 + 0.3) / 3, TOL);
    ck_assert_double_eq_tol(s.avg_inc_all, (0.5 + 0.75 + 0.65 + 0.3) / 4, TOL);
    /* group 0: max(0.5, 0.7, 0.6) - 0.2; group 1: max(0.8, 0.9) - 0.3; group 2: 0.4 - 0.45 (it improved) */
    ck_assert_double_eq_tol(s.forgetting, ((0.7 - 0.2) + (0.9 - 0.3) + (0.4 - 0.45)) / 3, TOL);
}
END_TEST

/* top-5 is not applicable (NaN) while five or fewer classes are seen: its
 * means count only the states where it is. */
START_TEST(test_summary_top5_not_applicable)
{
    static const double top1[] = {0.9, 0.7, 0.5, 0.4};
    static const double g[][8] = {{0.9}, {0.6, 0.8}, {0.4, 0.5, 0.6}, {0.3, 0.4, 0.5, 0.4}};
    cs_run_result *r = make_run("t5", 4, top1, g);
    r->states[0].top5 = r->states[1].top5 = NAN;
    r->states[2].top5 = 0.9;
    r->states[3].top5 = 0.8;
    cs_run_summary s;
    cs_run_summarize(r, &s);
    ck_assert_double_eq_tol(s.last5, 0.8, TOL);
    ck_assert_double_eq_tol(s.avg_inc5, (0.9 + 0.8) / 2, TOL);
    ck_assert_double_eq_tol(s.avg_inc5_all, (0.9 + 0.8) / 2, TOL);
    r->states[2].top5 = r->states[3].top5 = NAN;
    cs_run_summarize(r, &s);
    ck_assert(isnan(s.last5) && isnan(s.avg_inc5) && isnan(s.avg_inc5_all));
    ck_assert_double_eq_tol(s.avg_inc, (0.7 + 0.5 + 0.4) / 3, TOL); /* top-1 untouched */
}
END_TEST

START_TEST(test_summary_one_state)
{
    static const double top1[] = {0.8125};
    static const double g[][8] = {{0.8125}};
    cs_run_summary s;
    cs_run_summarize(make_run("c", 1, top1, g), &s);
    ck_assert_double_eq_tol(s.last, 0.8125, TOL);
    ck_assert_double_eq_tol(s.avg_inc_all, 0.8125, TOL);
    ck_assert(isnan(s.avg_inc));
    ck_assert(isnan(s.forgetting));

    cs_run_summarize(make_run("d", 0, top1, g), &s);
    ck_assert(isnan(s.last) && isnan(s.avg_inc) && isnan(s.avg_inc_all) && isnan(s.forgetting));
}
END_TEST

/* ---- files ---- */

/* The written JSON, key by key, in the documented order. */
START_TEST(test_json)
{
    static const double top1[] = {0.9, 0.7, 0.5};
    static const double g[][8] = {{0.9}, {0.6, 0.8}, {0.4, 0.5, 0.6}};
    cs_run_result *r = make_run("lucir psi \"resnet18\" seed 1", 3, top1, g);
    r->config_text = "experiment = {\n  seed = 1;\n};\n";
    r->states[1].train_loss = NAN;
    r->counted = r->params;
    snprintf(r->count, sizeof r->count, "trained: linear head, 100 classes, 3 input channels, imagenet stem");
    snprintf(r->settings, sizeof r->settings, "model.arch=resnet18; seed=\"x\"");
    snprintf(r->build, sizeof r->build, "cilscale test build");
    snprintf(r->started, sizeof r->started, "2026-12-02T10:00:00Z");
    snprintf(r->ended, sizeof r->ended, "2026-12-02T11:00:00Z");
    snprintf(r->command, sizeof r->command, "cilscale run x.cfg");
    r->n_classes = 3;
    r->class_order[0] = 2, r->class_order[1] = 0, r->class_order[2] = 1;
    const char *dir = subdir("json");
    cs_error e;
    ck_assert_msg(cs_results_write(dir, r, &e) == 0, "%s", e.msg);
    const char *j = slurp(path_in(dir, "results.json"));
    static const char *const keys[] = {
        "{\n  \"schema\": 2",
        "\"version\": \"0.1.0\"",
        "\"build\": \"cilscale test build\"",
        "\"started\": \"2026-12-02T10:00:00Z\"",
        "\"ended\": \"2026-12-02T11:00:00Z\"",
        "\"command\": \"cilscale run x.cfg\"",
        "\"host\": null",
        "\"label\": \"lucir psi \\\"resnet18\\\" seed 1\"",
        "\"arch\": \"resnet18\"",
        "\"policy\": \"psi\"",
        "\"cil\": \"lucir\"",
        "\"backend\": \"cpu\"",
        "\"device\": \"x86-64, 16 threads\"",
        "\"data\": \"/data/cifar100\"",
        "\"budget\": 1000000",
        "\"params\": 988500",
        "\"budget_counted\": 988500",
        "\"budget_counts\": \"trained: linear head, 100 classes, 3 input channels, imagenet stem\"",
        "\"budget_use\": 0.9885",
        "\"settings\": \"model.arch=resnet18; seed=\\\"x\\\"\"",
        "\"class_order\": [2, 0, 1]",
        "\"w\": 0.445",
        "\"d\": 0.5",
        "\"resolution\": 1",
        "\"depths\": [1, 1, 1, 1]",
        "\"widths\": [32, 56, 112, 224]",
        "\"seed\": 18446744073709551615",
        "\"n_states\": 3",
        "\"n_states_planned\": 4",
        "\"seconds\": 1234.5",
        "\"summary\": {\"last_top1\": 0.5, \"avg_incremental_top1\": 0.6, \"avg_incremental_top1_all\": 0.7, "
        "\"forgetting\": 0.4, \"last_top5\": 0.65, \"avg_incremental_top5\": 0.75, "
        "\"avg_incremental_top5_all\": 0.833333}",
        "\"states\": [\n    {\"state\": 0, \"n_new\": 10, \"n_seen\": 10, \"top1\": 0.9, \"top5\": 1, "
        "\"train_loss\": 2.5, \"train_seconds\": 100.25, \"eval_seconds\": 3.125, \"group_top1\": [0.9]}",
        "{\"state\": 1, \"n_new\": 10, \"n_seen\": 20, \"top1\": 0.7, \"top5\": 0.85, \"train_loss\": null",
        "\"group_top1\": [0.4, 0.5, 0.6]}\n  ]",
        "\"config\": \"experiment = {\\n  seed = 1;\\n};\\n\"\n}\n",
    };
    const char *p = j;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *q = strstr(p, keys[i]);
        ck_assert_msg(q != NULL, "expected '%s' after offset %td in:\n%s", keys[i], p - j, j);
        p = q + strlen(keys[i]);
    }
    ck_assert_str_eq(p, "");

    /* one state, no budget, no config: nulls */
    r = make_run("solo", 1, top1, g);
    r->budget = 0;
    r->policy[0] = '\0';
    ck_assert_msg(cs_results_write(dir, r, &e) == 0, "%s", e.msg);
    j = slurp(path_in(dir, "results.json"));
    assert_contains(j, "\"policy\": null");
    assert_contains(j, "\"budget\": null");
    assert_contains(j, "\"budget_use\": null");
    assert_contains(j, "\"summary\": {\"last_top1\": 0.9, \"avg_incremental_top1\": null, "
                       "\"avg_incremental_top1_all\": 0.9, \"forgetting\": null, \"last_top5\": 1, "
                       "\"avg_incremental_top5\": null, \"avg_incremental_top5_all\": 1}");
    assert_contains(j, "\"config\": null\n}\n");
    assert_no_temps(dir);
}
END_TEST

static void assert_close(double got, double want, const char *what, int i)
{
    if (isnan(want)) {
        ck_assert_msg(isnan(got), "%s[%d]: got %.17g, expected nan", what, i, got);
        return;
    }
    ck_assert_msg(fabs(got - want) <= 1e-6 * fmax(1, fabs(want)), "%s[%d]: got %.17g, expected %.17g", what, i, got,
                  want);
}

START_TEST(test_csv_roundtrip)
{
    static const double top1[] = {0.123456789, 0.987654321, 0.5, 0.25};
    static const double g[][8] = {{0.123456789}, {0.1, 0.2}, {0.3, 0.4, 0.5}, {0.6, 0.7, 0.8, 0.9}};
    cs_run_result *r = make_run("psi, seed 7: B50 # with commas", 4, top1, g);
    r->states[2].top5 = NAN;
    r->states[3].group_top1[1] = NAN;
    r->w = 0.123456789;
    snprintf(r->count, sizeof r->count, "count: a\nb");
    snprintf(r->settings, sizeof r->settings, "data.path=/x; model.arch=resnet18");
    snprintf(r->run_id, sizeof r->run_id, "0123456789abcdef");
    snprintf(r->started, sizeof r->started, "2026-12-02T10:00:00Z");
    const char *dir = subdir("csv");
    cs_error e;
    ck_assert_msg(cs_results_write(dir, r, &e) == 0, "%s", e.msg);
    const char *text = slurp(path_in(dir, "results.csv"));
    static const char head[] =
        "# label: psi, seed 7: B50 # with commas\n# arch: resnet18\n# policy: psi\n"
        "# cil: lucir\n# backend: cpu\n# params: 988500\n# budget: 1000000\n"
        "# budget_counted: 0\n# budget_counts: count: a b\n"
        "# w: 0.123457\n# d: 0.5\n# resolution: 1\n# depths: 1,1,1,1\n# widths: 32,56,112,224\n"
        "# settings: data.path=/x; model.arch=resnet18\n# run_id: 0123456789abcdef\n"
        "# started: 2026-12-02T10:00:00Z\n# seconds: 1234.5\n"
        "# seed: 18446744073709551615\n# n_states_planned: 5\n"
        "# version: 0.1.0\n"
        "state,n_new,n_seen,top1,top5,train_loss,train_seconds,eval_seconds,group_top1\n"
        "0,10,10,0.123457,0.273457,2.5,100.25,3.125,0.123457\n";
    ck_assert_msg(strncmp(text, head, strlen(head)) == 0, "expected it to start with:\n%s\ngot:\n%s", head, text);
    assert_contains(text, "\n2,10,30,0.5,nan,0.833333,102.25,3.125,0.3;0.4;0.5\n");
    assert_contains(text, "\n3,10,40,0.25,0.4,0.625,103.25,3.125,0.6;nan;0.8;0.9\n");

    cs_run_result back;
    ck_assert_msg(cs_results_read(dir, &back, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(back.label, r->label);
    ck_assert_str_eq(back.arch, "resnet18");
    ck_assert_str_eq(back.policy, "psi");
    ck_assert_str_eq(back.cil, "lucir");
    ck_assert_str_eq(back.backend, "cpu");
    ck_assert_str_eq(back.version, "0.1.0");
    ck_assert_int_eq(back.params, 988500);
    ck_assert_int_eq(back.budget, 1000000);
    ck_assert(back.seed == 18446744073709551615ull);
    ck_assert_int_eq(back.n_states_planned, 5);
    ck_assert_int_eq(back.n_states, 4);
    ck_assert_ptr_null(back.config_text);
    assert_close(back.w, r->w, "w", 0);
    assert_close(back.d, r->d, "d", 0);
    ck_assert_str_eq(back.settings, r->settings);
    ck_assert_str_eq(back.run_id, "0123456789abcdef");
    ck_assert_str_eq(back.started, "2026-12-02T10:00:00Z");
    assert_close(back.seconds, r->seconds, "seconds", 0);
    /* the accuracy matrix beside it: a row per state, old/new split weighted by classes */
    const char *m = slurp(path_in(dir, "accuracy_matrix.csv"));
    assert_contains(m, "state,n_seen,top1,old_top1,new_top1,group_0,group_1,group_2,group_3,group_4\n");
    assert_contains(m, "\n0,10,0.123457,nan,0.123457,0.123457,,,,\n");
    assert_contains(m, "\n2,30,0.5,0.35,0.5,0.3,0.4,0.5,,\n"); /* old: (0.3 + 0.4) / 2 */
    assert_contains(m, "\n3,40,0.25,nan,0.9,0.6,nan,0.8,0.9,\n"); /* a NaN group makes old NaN */
    /* and as a heatmap: a cell per (state, group so far), 4 states: 1 + 2 + 3 + 4 */
    const char *hm = slurp(path_in(dir, "accuracy_matrix.svg"));
    ck_assert_int_eq(count(hm, "class=\"cell\""), 10);
    assert_contains(hm, ">after state 3</text>");
    assert_contains(hm, ">group 4</text>"); /* 5 planned */
    ck_assert_str_eq(back.count, "count: a b"); /* one line */
    ck_assert_int_eq(back.n_stages, 4);
    ck_assert_int_eq(back.depths[3], 1);
    ck_assert_int_eq(back.widths[3], 224);
    for (int i = 0; i < 4; i++) {
        const cs_state_result *a = &r->states[i], *b = &back.states[i];
        ck_assert_int_eq(b->state, i);
        ck_assert_int_eq(b->n_new, a->n_new);
        ck_assert_int_eq(b->n_seen, a->n_seen);
        assert_close(b->top1, a->top1, "top1", i);
        assert_close(b->top5, a->top5, "top5", i);
        assert_close(b->train_loss, a->train_loss, "train_loss", i);
        assert_close(b->train_seconds, a->train_seconds, "train_seconds", i);
        assert_close(b->eval_seconds, a->eval_seconds, "eval_seconds", i);
        for (int j = 0; j <= i; j++)
            assert_close(b->group_top1[j], a->group_top1[j], "group_top1", 10 * i + j);
    }
    /* the summary of what was read is the summary of what was written */
    cs_run_summary s1, s2;
    cs_run_summarize(r, &s1);
    cs_run_summarize(&back, &s2);
    assert_close(s2.last, s1.last, "last", 0);
    assert_close(s2.avg_inc, s1.avg_inc, "avg_inc", 0);
    assert_close(s2.avg_inc_all, s1.avg_inc_all, "avg_inc_all", 0);
    ck_assert(isnan(s2.forgetting) && isnan(s1.forgetting)); /* a nan group */
}
END_TEST

/* No label comment: the run is named by its folder; budget none reads as 0. */
START_TEST(test_csv_minimal)
{
    const char *dir = subdir("my-run");
    tu_write("my-run/results.csv", "# budget: none\n\n" "state,n_new,n_seen,top1,top5,train_loss,train_seconds,"
                                   "eval_seconds,group_top1\r\n0, 50, 50, 0.75, 0.9, 1, 2, 3, 0.75\n\n");
    cs_run_result r;
    cs_error e;
    ck_assert_msg(cs_results_read(dir, &r, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(r.label, "my-run");
    ck_assert_int_eq(r.budget, 0);
    ck_assert_int_eq(r.n_states, 1);
    ck_assert_int_eq(r.states[0].n_seen, 50);
    ck_assert_double_eq_tol(r.states[0].group_top1[0], 0.75, TOL);
}
END_TEST

#define HDR "state,n_new,n_seen,top1,top5,train_loss,train_seconds,eval_seconds,group_top1\n"
static const struct {
    const char *text;
    int line; /* 0: no line number */
    const char *says;
} bad_csv[] = {
    {NULL, 0, "cannot read (No such file or directory)"},
    {"", 1, "no header row"},
    {"# label: x\n", 2, "no header row"},
    {"# label: x\n# arch: r\nstate,n_new,n_seen,top1\n", 3, "expected the header"},
    {"# label: x\n" HDR "0,10,10,0.5,0.6,1,2,3,0.5\n1,10,20,x7,0.6,1,2,3,0.5;0.5\n", 4,
     "top1 'x7': expected a fraction"},
    {HDR "0,10,10,1.5,0.6,1,2,3,1.5\n", 2, "top1 '1.5': expected a fraction from 0 to 1"},
    {HDR "0,10,10,0.5,0.6,1,2,3\n", 2, "8 columns, expected 9"},
    {HDR "0,10,10,0.5,0.6,1,2,3,0.5,9\n", 2, "10 columns, expected 9"},
    {HDR "0,10,10,0.5,0.6,1,2,3,0.5\n2,10,20,0.5,0.6,1,2,3,0.5;0.5\n", 3, "state 2, expected 1"},
    {HDR "0,10,10,0.5,0.6,1,2,3,0.5\n1,10,20,0.5,0.6,1,2,3,0.5\n", 3, "group_top1 has 1 value, expected 2"},
    {HDR "0,10,10,0.5,0.6,1,2,3,0.5;0.5\n", 2, "group_top1 has 2 values, expected 1"},
    {HDR "0,10,10,0.5,0.6,1,2,3,0.5\n1,10,20,0.5,0.6,1,2,3,0.5;\n", 3, "group_top1[1] '': expected a fraction"},
    {HDR "0,-1,10,0.5,0.6,1,2,3,0.5\n", 2, "n_new '-1': expected a whole number >= 0"},
    {HDR "0,10,10,0.5,0.6,loss,2,3,0.5\n", 2, "train_loss 'loss': expected a number"},
    {"# params: 12x\n" HDR, 1, "params '12x': expected a whole number"},
    {"# label: x\n# seed: -3\n" HDR, 2, "seed '-3': expected a whole number"},
};
#define N_BAD_CSV ((int)(sizeof bad_csv / sizeof bad_csv[0]))

START_TEST(test_csv_errors)
{
    char name[32], want[1200];
    snprintf(name, sizeof name, "bad%d", _i);
    const char *dir = subdir(name);
    if (bad_csv[_i].text) {
        char rel[64];
        snprintf(rel, sizeof rel, "%s/results.csv", name);
        tu_write(rel, bad_csv[_i].text);
    }
    const char *file = path_in(dir, "results.csv");
    if (bad_csv[_i].line)
        snprintf(want, sizeof want, "%s:%d: ", file, bad_csv[_i].line);
    else
        snprintf(want, sizeof want, "%s: ", file);
    cs_run_result r;
    cs_error e;
    ck_assert_int_eq(cs_results_read(dir, &r, &e), CS_ERR_IO);
    ck_assert_msg(strncmp(e.msg, want, strlen(want)) == 0, "expected '%s...', got: %s", want, e.msg);
    assert_contains(e.msg, bad_csv[_i].says);
    ck_assert_msg(strchr(e.msg, '\n') == NULL, "not one line: %s", e.msg);
}
END_TEST

START_TEST(test_csv_too_many_states)
{
    char text[1 << 16];
    size_t u = (size_t)snprintf(text, sizeof text, HDR);
    for (int i = 0; i <= CS_MAX_STATES; i++) {
        u += (size_t)snprintf(text + u, sizeof text - u, "%d,1,%d,0.5,0.5,1,1,1,", i, i + 1);
        for (int j = 0; j <= i; j++)
            u += (size_t)snprintf(text + u, sizeof text - u, "%s0.5", j ? ";" : "");
        u += (size_t)snprintf(text + u, sizeof text - u, "\n");
    }
    const char *dir = subdir("many");
    tu_write("many/results.csv", text);
    cs_run_result r;
    cs_error e;
    ck_assert_int_eq(cs_results_read(dir, &r, &e), CS_ERR_IO);
    char want[1100];
    snprintf(want, sizeof want, "%s:%d: more than %d states", path_in(dir, "results.csv"), CS_MAX_STATES + 2,
             CS_MAX_STATES);
    ck_assert_str_eq(e.msg, want);
}
END_TEST

START_TEST(test_svg)
{
    static const double t1[] = {0.9, 0.7, 0.5}, t2[] = {0.8, 0.75, 0.6};
    static const double g[][8] = {{0.9}, {0.6, 0.8}, {0.4, 0.5, 0.6}};
    const cs_run_result *runs[3];
    runs[0] = make_run("psi <w=0.4> & \"d\" 'x'", 3, t1, g);
    runs[1] = make_run("compound", 3, t2, g);
    runs[2] = make_run("one state", 1, t2, g);
    const char *path = path_in(tu_tmpdir(), "plot.svg");
    cs_error e;
    ck_assert_msg(cs_results_svg(path, runs, 3, "B0 <10 steps> & more", &e) == 0, "%s", e.msg);
    const char *s = slurp(path);
    ck_assert_msg(strncmp(s, "<svg", 4) == 0, "%s", s);
    size_t n = strlen(s);
    ck_assert_msg(n > 7 && strcmp(s + n - 7, "</svg>\n") == 0, "%s", s + (n > 40 ? n - 40 : 0));
    ck_assert_int_eq(count(s, "<polyline"), 3);
    ck_assert_int_eq(count(s, "<svg"), 1);
    assert_contains(s, "xmlns=\"http://www.w3.org/2000/svg\"");
    assert_contains(s, "psi &lt;w=0.4&gt; &amp; &quot;d&quot; &apos;x&apos;");
    assert_contains(s, "B0 &lt;10 steps&gt; &amp; more");
    assert_lacks(s, "<w=0.4>");
    assert_lacks(s, "<10 steps>");
    assert_contains(s, "classes seen");
    assert_contains(s, "top-1 accuracy (%)");
    /* no external resources */
    assert_lacks(s, "<script");
    assert_lacks(s, "@import");
    assert_lacks(s, "href");
    /* every '&' starts an entity */
    for (const char *p = strchr(s, '&'); p; p = strchr(p + 1, '&'))
        ck_assert_msg(!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
                          !strncmp(p, "&quot;", 6) || !strncmp(p, "&apos;", 6),
                      "bare & at: %.20s", p);
    /* distinct colours for the runs */
    ck_assert_int_eq(count(s, "#1f77b4"), 4); /* the run's stroke and fill, its legend line and marker */
    ck_assert_int_eq(count(s, "#d62728"), 4);
    assert_no_temps(tu_tmpdir());
}
END_TEST

/* The plot of a run is written with its results. */
START_TEST(test_write_svg)
{
    static const double t1[] = {0.9, 0.7};
    static const double g[][8] = {{0.9}, {0.6, 0.8}};
    const char *dir = subdir("svg");
    cs_error e;
    ck_assert_msg(cs_results_write(dir, make_run("a & b", 2, t1, g), &e) == 0, "%s", e.msg);
    const char *s = slurp(path_in(dir, "accuracy.svg"));
    /* top-1 and, dashed in its colour, top-5; y from 0 to 100; ticks at the states' classes seen */
    ck_assert_int_eq(count(s, "<polyline"), 2);
    ck_assert_int_eq(count(s, "stroke-dasharray=\"7 4\""), 2); /* the line and its legend */
    assert_contains(s, ">a &amp; b</text>");
    assert_contains(s, ">top-5</text>");
    assert_contains(s, ">100</text>");
    assert_contains(s, ">0</text>");
    assert_contains(s, ">10</text>");
    assert_contains(s, ">20</text>");
}
END_TEST

START_TEST(test_write_missing_dir)
{
    static const double t1[] = {0.9};
    static const double g[][8] = {{0.9}};
    const char *dir = path_in(tu_tmpdir(), "nope/deeper");
    cs_error e;
    ck_assert_int_eq(cs_results_write(dir, make_run("x", 1, t1, g), &e), CS_ERR_IO);
    char want[1100];
    snprintf(want, sizeof want, "%s/results.json: cannot create %s/results.json.tmp (No such file or directory)", dir,
             dir);
    ck_assert_str_eq(e.msg, want);
    ck_assert(!exists(path_in(tu_tmpdir(), "nope")));
    assert_no_temps(tu_tmpdir());

    const cs_run_result *runs[] = {make_run("x", 1, t1, g)};
    ck_assert_int_eq(cs_results_svg(path_in(dir, "p.svg"), runs, 1, NULL, &e), CS_ERR_IO);
    assert_contains(e.msg, "p.svg.tmp (No such file or directory)");
}
END_TEST

/* A write that fails part-way (here: accuracy.svg.tmp cannot be made) leaves
 * the earlier results as they were and no temporary files. */
START_TEST(test_write_keeps_old)
{
    static const double t1[] = {0.9, 0.7}, t2[] = {0.1, 0.2};
    static const double g[][8] = {{0.9}, {0.6, 0.8}};
    const char *dir = subdir("keep");
    cs_error e;
    ck_assert_msg(cs_results_write(dir, make_run("old", 2, t1, g), &e) == 0, "%s", e.msg);
    char json[1 << 14], csv[1 << 14], svg[1 << 15];
    snprintf(json, sizeof json, "%s", slurp(path_in(dir, "results.json")));
    snprintf(csv, sizeof csv, "%s", slurp(path_in(dir, "results.csv")));
    snprintf(svg, sizeof svg, "%s", slurp(path_in(dir, "accuracy.svg")));
    ck_assert(mkdir(path_in(dir, "accuracy.svg.tmp"), 0777) == 0);
    ck_assert_int_eq(cs_results_write(dir, make_run("new", 2, t2, g), &e), CS_ERR_IO);
    assert_contains(e.msg, "accuracy.svg: cannot create");
    ck_assert_str_eq(slurp(path_in(dir, "results.json")), json);
    ck_assert_str_eq(slurp(path_in(dir, "results.csv")), csv);
    ck_assert_str_eq(slurp(path_in(dir, "accuracy.svg")), svg);
    ck_assert(!exists(path_in(dir, "results.json.tmp")));
    ck_assert(!exists(path_in(dir, "results.csv.tmp")));
    ck_assert(rmdir(path_in(dir, "accuracy.svg.tmp")) == 0);
    /* and it goes through once the way is clear */
    ck_assert_msg(cs_results_write(dir, make_run("new", 2, t2, g), &e) == 0, "%s", e.msg);
    assert_contains(slurp(path_in(dir, "results.csv")), "# label: new\n");
    assert_no_temps(dir);

    /* a run that cannot be written is refused before anything is touched */
    cs_run_result *bad = make_run("bad", 2, t2, g);
    bad->n_states = CS_MAX_STATES + 1;
    ck_assert_int_eq(cs_results_write(dir, bad, &e), CS_ERR_ARG);
    assert_contains(slurp(path_in(dir, "results.csv")), "# label: new\n");
}
END_TEST

/* ---- cilscale report ---- */

/* A results.csv by hand: two states of 50 classes each unless top1b < 0 (one state). */
static void hand_run(const char *folder, const char *label, const char *policy, double top1a, double top1b,
                     double g0, double g1)
{
    char rel[256], text[2048];
    snprintf(rel, sizeof rel, "runs/%s", folder);
    subdir(rel);
    size_t u = (size_t)snprintf(text, sizeof text,
                                "# label: %s\n# arch: resnet18\n# policy: %s\n# cil: lucir\n# backend: cpu\n"
                                "# params: 1000000\n# budget: 1000000\n# w: 0.5\n# seed: 1\n"
                                "# n_states_planned: %d\n# version: 0.1.0\n" HDR
                                "0,50,50,%g,%g,1.5,10,1,%g\n",
                                label, policy, top1b < 0 ? 3 : 2, top1a, top1a, top1a);
    if (top1b >= 0)
        snprintf(text + u, sizeof text - u, "1,50,100,%g,%g,1.25,10,1,%g;%g\n", top1b, top1b, g0, g1);
    snprintf(rel, sizeof rel, "runs/%s/results.csv", folder);
    tu_write(rel, text);
}

static const char *make_runs(void)
{
    subdir("runs");
    /* last, avg inc, avg all, forgetting (%): 60 60 70 30; 62 62 72 28; 64 64 74 26 */
    hand_run("psi-s1", "psi seed 1", "psi", 0.80, 0.60, 0.50, 0.70);
    hand_run("psi-s2", "psi seed 2", "psi", 0.82, 0.62, 0.54, 0.70);
    hand_run("psi-s3", "psi seed 3", "psi", 0.84, 0.64, 0.58, 0.70);
    /* 50 50 60 30; 56 56 65 26 */
    hand_run("compound-s1", "compound, seed=1", "compound", 0.70, 0.50, 0.40, 0.60);
    hand_run("compound-s2", "compound, seed=2", "compound", 0.74, 0.56, 0.48, 0.64);
    hand_run("solo", "solo", "width", 0.90, -1, 0, 0);
    subdir("runs/not-a-run"); /* no results.csv: skipped */
    static char runs[1024];
    snprintf(runs, sizeof runs, "%s/runs", tu_tmpdir());
    return runs;
}

/* The line of the table starting with label, its runs of spaces made one. */
static const char *table_row(const char *table, const char *label)
{
    static char row[1024];
    const char *p = table;
    while (p && strncmp(p, label, strlen(label)) != 0) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    ck_assert_msg(p != NULL, "no row '%s' in:\n%s", label, table);
    size_t n = 0;
    for (; *p && *p != '\n' && n + 1 < sizeof row; p++)
        if (!(*p == ' ' && n && row[n - 1] == ' '))
            row[n++] = *p;
    row[n] = '\0';
    return row;
}

START_TEST(test_report_table)
{
    const char *runs = make_runs();
    ck_assert_int_eq(RUN("report", runs), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(table_row(out, "label"),
                     "label arch policy cil params use states last avg inc avg all avg inc5 forgetting");
    ck_assert_str_eq(table_row(out, "compound, seed=1"),
                     "compound, seed=1 resnet18 compound lucir 1,000,000 100.0% 2 50.00 50.00 60.00 50.00 30.00");
    ck_assert_str_eq(table_row(out, "compound, seed=2"),
                     "compound, seed=2 resnet18 compound lucir 1,000,000 100.0% 2 56.00 56.00 65.00 56.00 26.00");
    ck_assert_str_eq(table_row(out, "psi seed 1"), "psi seed 1 resnet18 psi lucir 1,000,000 100.0% 2 60.00 60.00 70.00 60.00 30.00");
    ck_assert_str_eq(table_row(out, "psi seed 2"), "psi seed 2 resnet18 psi lucir 1,000,000 100.0% 2 62.00 62.00 72.00 62.00 28.00");
    ck_assert_str_eq(table_row(out, "psi seed 3"), "psi seed 3 resnet18 psi lucir 1,000,000 100.0% 2 64.00 64.00 74.00 64.00 26.00");
    ck_assert_str_eq(table_row(out, "solo"), "solo resnet18 width lucir 1,000,000 100.0% 1/3 90.00 - 90.00 - -");
    /* groups: mean ± sample std; compound: sqrt(18), sqrt(12.5), sqrt(8) */
    ck_assert_str_eq(table_row(out, "compound (2 seeds)"),
                     "compound (2 seeds) resnet18 compound lucir 1,000,000 100.0% 2 53.00 \xc2\xb1 4.24 "
                     "53.00 \xc2\xb1 4.24 62.50 \xc2\xb1 3.54 53.00 \xc2\xb1 4.24 28.00 \xc2\xb1 2.83");
    ck_assert_str_eq(table_row(out, "psi (3 seeds)"),
                     "psi (3 seeds) resnet18 psi lucir 1,000,000 100.0% 2 62.00 \xc2\xb1 2.00 62.00 \xc2\xb1 2.00 "
                     "72.00 \xc2\xb1 2.00 62.00 \xc2\xb1 2.00 28.00 \xc2\xb1 2.00");
    /* the runs in folder order, then the groups, after a rule */
    const char *a = strstr(out, "compound, seed=1"), *b = strstr(out, "psi seed 1"), *c = strstr(out, "solo"),
               *rule = strstr(out, "\n---"), *d = strstr(out, "compound (2 seeds)"), *e = strstr(out, "psi (3");
    ck_assert(a && b && c && rule && d && e);
    ck_assert(a < b && b < c && c < rule && rule < d && d < e);
    assert_lacks(out, "not-a-run");
    /* the columns line up: every row as wide as the header (in characters) */
    int header = -1;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        int w = 0;
        for (const char *q = p; q < nl; q++)
            w += ((unsigned char)*q & 0xc0) != 0x80;
        if (header < 0)
            header = w;
        ck_assert_msg(w == header, "row of %d characters, header %d:\n%s", w, header, out);
        p = nl + 1;
    }
}
END_TEST

static const char want_csv[] =
    "label,runs,arch,policy,cil,params,budget_use,states,last_top1,last_top1_std,avg_inc_top1,avg_inc_top1_std,"
    "avg_inc_all_top1,avg_inc_all_top1_std,avg_inc_top5,avg_inc_top5_std,forgetting,forgetting_std\n"
    "\"compound, seed=1\",1,resnet18,compound,lucir,1000000,1.0000,2,50.00,,50.00,,60.00,,50.00,,30.00,\n"
    "\"compound, seed=2\",1,resnet18,compound,lucir,1000000,1.0000,2,56.00,,56.00,,65.00,,56.00,,26.00,\n"
    "psi seed 1,1,resnet18,psi,lucir,1000000,1.0000,2,60.00,,60.00,,70.00,,60.00,,30.00,\n"
    "psi seed 2,1,resnet18,psi,lucir,1000000,1.0000,2,62.00,,62.00,,72.00,,62.00,,28.00,\n"
    "psi seed 3,1,resnet18,psi,lucir,1000000,1.0000,2,64.00,,64.00,,74.00,,64.00,,26.00,\n"
    "solo,1,resnet18,width,lucir,1000000,1.0000,1/3,90.00,,,,90.00,,,,,\n"
    "compound (2 seeds),2,resnet18,compound,lucir,1000000,1.0000,2,53.00,4.24,53.00,4.24,62.50,3.54,53.00,4.24,28.00,2.83\n"
    "psi (3 seeds),3,resnet18,psi,lucir,1000000,1.0000,2,62.00,2.00,62.00,2.00,72.00,2.00,62.00,2.00,28.00,2.00\n";

START_TEST(test_report_csv)
{
    const char *runs = make_runs();
    ck_assert_int_eq(RUN("report", "--csv", runs), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(out, want_csv);
    /* a run given twice (on its own and through its parent) counts once */
    ck_assert_int_eq(RUN("report", "--csv", runs, path_in(runs, "psi-s1/"), path_in(runs, "psi-s1/results.csv")), 0);
    ck_assert_str_eq(out, want_csv);
    /* run folders given one by one, and a results.csv by name, in the order given */
    ck_assert_int_eq(RUN("report", "--csv", path_in(runs, "solo"), path_in(runs, "psi-s2/results.csv"),
                         path_in(runs, "psi-s1")),
                     0);
    ck_assert_str_eq(out, "label,runs,arch,policy,cil,params,budget_use,states,last_top1,last_top1_std,avg_inc_top1,"
                          "avg_inc_top1_std,avg_inc_all_top1,avg_inc_all_top1_std,avg_inc_top5,avg_inc_top5_std,"
                          "forgetting,forgetting_std\n"
                          "solo,1,resnet18,width,lucir,1000000,1.0000,1/3,90.00,,,,90.00,,,,,\n"
                          "psi seed 2,1,resnet18,psi,lucir,1000000,1.0000,2,62.00,,62.00,,72.00,,62.00,,28.00,\n"
                          "psi seed 1,1,resnet18,psi,lucir,1000000,1.0000,2,60.00,,60.00,,70.00,,60.00,,30.00,\n"
                          "psi (2 seeds),2,resnet18,psi,lucir,1000000,1.0000,2,61.00,1.41,61.00,1.41,71.00,1.41,61.00,1.41,29.00,1.41\n");
}
END_TEST

START_TEST(test_report_out)
{
    const char *runs = make_runs();
    const char *dir = path_in(tu_tmpdir(), "report-out");
    ck_assert_int_eq(RUN("report", runs, "--out", dir, "--title", "psi & compound <B50>"), 0);
    ck_assert_str_eq(err, "");
    assert_contains(out, "psi (3 seeds)");
    const char *svg = slurp(path_in(dir, "report.svg"));
    ck_assert_int_eq(strncmp(svg, "<svg", 4), 0);
    /* the runs not in a group get a line; a group, its mean line and band */
    ck_assert_int_eq(count(svg, "<polyline"), 3);
    ck_assert_int_eq(count(svg, "<polygon"), 2);
    assert_contains(svg, "psi &amp; compound &lt;B50&gt;");
    assert_contains(svg, ">compound (2 seeds)</text>");
    assert_contains(svg, ">solo</text>");
    ck_assert_str_eq(slurp(path_in(dir, "report.csv")), want_csv);
    assert_no_temps(dir);
}
END_TEST

START_TEST(test_report_errors)
{
    const char *missing = path_in(tu_tmpdir(), "nope");
    char want[1200];
    ck_assert_int_eq(RUN("report", missing), 1);
    snprintf(want, sizeof want, "cilscale report: %s: cannot read (No such file or directory)", missing);
    assert_one_line(err, want);
    ck_assert_str_eq(out, "");

    ck_assert_int_eq(RUN("report"), 2);
    assert_one_line(err, "cilscale report: no run folders given");
    ck_assert_int_eq(RUN("report", "--frob", "x"), 2);
    assert_one_line(err, "cilscale report: unknown option or missing value: '--frob'");
    ck_assert_int_eq(RUN("report", "x", "--out"), 2);
    assert_one_line(err, "cilscale report: unknown option or missing value: '--out'");
    ck_assert_int_eq(RUN("report", "--help"), 0);
    assert_contains(out, "usage: cilscale report DIR...");
    ck_assert_str_eq(err, "");

    /* a folder with no runs in it */
    const char *empty = subdir("empty");
    ck_assert_int_eq(RUN("report", empty), 1);
    snprintf(want, sizeof want, "cilscale report: %s: no results.csv in it or in its subfolders", empty);
    assert_one_line(err, want);

    /* a broken run among good ones: named with its line, the rest still reported */
    const char *runs = make_runs();
    tu_write("runs/psi-s2/results.csv", "# label: psi seed 2\n" HDR "0,50,50,0.5,0.5,1,1,1\n");
    ck_assert_int_eq(RUN("report", runs), 1);
    snprintf(want, sizeof want, "cilscale report: %s/psi-s2/results.csv:3: 8 columns, expected 9", runs);
    assert_one_line(err, want);
    ck_assert_str_eq(table_row(out, "psi (2 seeds)"),
                     "psi (2 seeds) resnet18 psi lucir 1,000,000 100.0% 2 62.00 \xc2\xb1 2.83 62.00 \xc2\xb1 2.83 "
                     "72.00 \xc2\xb1 2.83 62.00 \xc2\xb1 2.83 28.00 \xc2\xb1 2.83");
    assert_lacks(out, "psi seed 2");

    /* the top-level usage names the command */
    ck_assert_int_eq(RUN("--help"), 0);
    assert_contains(out, "  report ");
}
END_TEST

/* A results.csv as cilscale writes it now: settings, budget count, depths. */
static void set_run(const char *folder, const char *label, const char *policy, unsigned seed, const char *settings,
                    long long params, long long budget, const char *depths, double top1a, double top1b)
{
    char rel[256], text[4096];
    snprintf(rel, sizeof rel, "grid/%s", folder);
    subdir(rel);
    snprintf(text, sizeof text,
             "# label: %s\n# arch: resnet18\n# policy: %s\n# cil: lucir\n# backend: cpu\n# params: %lld\n"
             "# budget: %lld\n# budget_counted: %lld\n# w: 0.5\n# depths: %s\n# settings: %s\n# seed: %u\n"
             "# n_states_planned: 2\n# version: 0.1.0\n" HDR "0,5,5,%g,nan,1.5,10,1,%g\n1,5,10,%g,%g,1.25,10,1,%g;%g\n",
             label, policy, params, budget, params, depths, settings, seed, top1a, top1a, top1b, top1b, top1b, top1b);
    snprintf(rel, sizeof rel, "grid/%s/results.csv", folder);
    tu_write(rel, text);
}

/* Groups are runs of equal settings; equal labels of other settings are kept
 * apart and told apart; a repeated seed stays out of the mean. */
START_TEST(test_report_groups_by_settings)
{
    subdir("grid");
    const char *a = "model.arch=resnet18; model.budget=1000000; train.epochs=4";
    const char *b = "model.arch=resnet18; model.budget=1000000; train.epochs=8";
    set_run("a1", "psi 1M seed 1", "psi", 1, a, 959409, 1000000, "1,1,1,1", 0.8, 0.5);
    set_run("a2", "psi 1M seed 2", "psi", 2, a, 959409, 1000000, "1,1,1,1", 0.8, 0.6);
    set_run("a2again", "psi 1M seed 2", "psi", 2, a, 959409, 1000000, "1,1,1,1", 0.8, 0.9);
    set_run("b1", "psi 1M seed 1", "psi", 1, b, 959409, 1000000, "1,1,1,1", 0.8, 0.3);
    set_run("b2", "psi 1M seed 2", "psi", 2, b, 959409, 1000000, "1,1,1,1", 0.8, 0.4);
    const char *dir = path_in(tu_tmpdir(), "grid");
    ck_assert_int_eq(RUN("report", dir), 0);
    /* two groups, each of two runs: 0.5/0.6 (a, the repeat of seed 2 kept out) and 0.3/0.4 (b) */
    assert_contains(out, "psi 1M (2 seeds) {train.epochs=4}");
    assert_contains(out, "psi 1M (2 seeds) {train.epochs=8}");
    ck_assert_str_eq(table_row(out, "psi 1M (2 seeds) {train.epochs=4}"),
                     "psi 1M (2 seeds) {train.epochs=4} resnet18 psi lucir 959,409 95.9% 2 55.00 \xc2\xb1 7.07 "
                     "55.00 \xc2\xb1 7.07 67.50 \xc2\xb1 3.54 55.00 \xc2\xb1 7.07 25.00 \xc2\xb1 7.07");
    ck_assert_str_eq(table_row(out, "psi 1M (2 seeds) {train.epochs=8}"),
                     "psi 1M (2 seeds) {train.epochs=8} resnet18 psi lucir 959,409 95.9% 2 35.00 \xc2\xb1 7.07 "
                     "35.00 \xc2\xb1 7.07 57.50 \xc2\xb1 3.54 35.00 \xc2\xb1 7.07 45.00 \xc2\xb1 7.07");
    assert_contains(err, "warning: 'psi 1M seed 2' and 'psi 1M seed 2' are the same settings and seed 2");
    assert_contains(err, "warning: two groups are labelled 'psi 1M (2 seeds)' but their settings differ "
                         "(train.epochs=4 vs train.epochs=8)");
}
END_TEST

/* --figure1: one chart per architecture, a line per depth vector, psi's point ringed, the budget marked. */
/* epochs.csv reads back what was written, the rows of the states before a
 * resume only, and a malformed line is named. */
START_TEST(test_epochs_roundtrip)
{
    cs_epoch_row rows[3] = {
        {.state = 0, .epoch = 0, .lr = 0.1, .loss = 0.7, .train_top1 = 0.5, .images_per_s = 100, .seconds = 2,
         .n_terms = 1, .term = {0.7}, .weight = {1}, .term_name = {"softmax_xent"}},
        {.state = 1, .epoch = 0, .lr = 0.1, .loss = 8.5, .train_top1 = 0.4, .images_per_s = 90, .seconds = 2,
         .n_terms = 2, .term = {1.3, 0.72}, .weight = {1, 10}, .term_name = {"softmax_xent", "cosine_embed"}},
        {.state = 1, .epoch = 1, .lr = 0.05, .loss = 5.25, .train_top1 = 0.55, .images_per_s = 95, .seconds = 2,
         .n_terms = 2, .term = {1.1, 0.415}, .weight = {1, 10}, .term_name = {"softmax_xent", "cosine_embed"}},
    };
    const char *dir = subdir("epochs");
    cs_error e;
    ck_assert_msg(cs_epochs_write(dir, rows, 3, &e) == CS_OK, "%s", e.msg);
    const char *text = slurp(path_in(dir, "epochs.csv"));
    assert_contains(text, "state,epoch,lr,loss,train_top1,images_per_s,seconds,term,value,weight\n"
                          "0,0,0.1,0.7,0.5,100,2,softmax_xent,0.7,1\n1,0,0.1,8.5,0.4,90,2,softmax_xent,1.3,1\n"
                          "1,0,0.1,8.5,0.4,90,2,cosine_embed,0.72,10\n");
    assert_contains(slurp(path_in(dir, "losses.svg")), ">cosine_embed (weighted)</text>");
    cs_epoch_row *back;
    int n;
    ck_assert_msg(cs_epochs_read(dir, 9, &back, &n, &e) == CS_OK, "%s", e.msg);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(back[2].n_terms, 2);
    ck_assert_str_eq(back[2].term_name[1], "cosine_embed");
    ck_assert_double_eq_tol(back[2].term[1], 0.415, 1e-9);
    ck_assert_double_eq_tol(back[2].lr, 0.05, 1e-12);
    free(back);
    ck_assert_int_eq(cs_epochs_read(dir, 1, &back, &n, &e), CS_OK); /* a resume after state 0 keeps state 0 */
    ck_assert_int_eq(n, 1);
    free(back);
    tu_write("epochs/epochs.csv", "state,epoch,lr,loss,train_top1,images_per_s,seconds,term,value,weight\n0,zero\n");
    ck_assert_int_eq(cs_epochs_read(dir, 9, &back, &n, &e), CS_ERR_IO);
    assert_contains(e.msg, "epochs.csv:2: expected state,epoch,lr");
    ck_assert_int_eq(n, 0);
    assert_no_temps(dir);
}
END_TEST

/* One epoch of one loss term: the total and the weighted term are the same
 * number up to rounding (term x weight), a y range of a few ulps. The plot's
 * tick step once came out below the values' resolution and the tick loop
 * never ended (cilscale train --epochs 1 filled the disk with losses.svg.tmp).
 * The file must be a few kB with a handful of grid lines. */
START_TEST(test_losses_one_epoch)
{
    const double loss = 2.17711;
    const double w = 1.0000000000000002; /* term x weight is loss + 1 ulp */
    cs_epoch_row row = {.state = 0, .epoch = 0, .lr = 0.1, .loss = loss, .train_top1 = 0.2, .images_per_s = 700,
                        .seconds = 1.3, .n_terms = 1, .term = {loss}, .weight = {w}, .term_name = {"softmax_xent"}};
    ck_assert(row.term[0] * row.weight[0] != loss); /* the range really is a few ulps, not one value */
    const char *dir = subdir("one-epoch");
    cs_error e;
    ck_assert_msg(cs_epochs_write(dir, &row, 1, &e) == CS_OK, "%s", e.msg);
    const char *svg = slurp(path_in(dir, "losses.svg"));
    ck_assert_uint_lt(strlen(svg), 20000);
    ck_assert_int_le(count(svg, "<line"), 20);
    ck_assert_int_ge(count(svg, "<line"), 4);
    assert_contains(svg, "</svg>\n");
    /* a single point: the same */
    row.weight[0] = 1;
    row.loss = loss;
    ck_assert_msg(cs_epochs_write(dir, &row, 1, &e) == CS_OK, "%s", e.msg);
    ck_assert_uint_lt(strlen(slurp(path_in(dir, "losses.svg"))), 20000);
    assert_no_temps(dir);
}
END_TEST

/* Plots fit for a paper (issue 14 item 9): 20 series get 20 distinct
 * (colour, dash) styles, and past 6 series the legend takes two columns, so
 * the figure is shorter than one legend row per series. */
START_TEST(test_plot_styles_and_legend)
{
    for (int a = 0; a < 20; a++)
        for (int b = a + 1; b < 20; b++) {
            const char *da = cs_svg_dash(a), *db = cs_svg_dash(b);
            int same_dash = (!da && !db) || (da && db && !strcmp(da, db));
            ck_assert_msg(!(same_dash && !strcmp(cs_svg_colour(a), cs_svg_colour(b))), "series %d and %d look alike",
                          a, b);
        }
    cs_plot_point pts[10][2];
    cs_plot_series se[10];
    char labels[10][16];
    for (int s = 0; s < 10; s++) {
        pts[s][0] = (cs_plot_point){2, 50 - s, NAN, 0};
        pts[s][1] = (cs_plot_point){4, 40 - s, NAN, 0};
        snprintf(labels[s], sizeof labels[s], "series %d", s);
        se[s] = (cs_plot_series){labels[s], pts[s], 2, 1, 0, 0};
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cs_plot p = {.title = "t", .xlabel = "x", .ylabel = "y", .series = se, .n_series = 10};
    cs_plot_fwrite(f, &p);
    fclose(f);
    /* 10 entries in 5 rows of 2: legend rows at 472 + 20 r, height 472 + 5 x 20 + 10 */
    ck_assert_msg(strstr(buf, "height=\"582\""), "%.200s", buf);
    ck_assert_msg(strstr(buf, "<text x=\"115.0\" y=\"476.0\">series 0</text>"), "%s", strstr(buf, "legend"));
    ck_assert_msg(strstr(buf, "<text x=\"462.5\" y=\"476.0\">series 5</text>"), "%s", strstr(buf, "legend"));
    free(buf);
    /* 3 series: one column */
    buf = NULL;
    f = open_memstream(&buf, &len);
    p.n_series = 3;
    cs_plot_fwrite(f, &p);
    fclose(f);
    ck_assert_msg(strstr(buf, "height=\"542\""), "%.200s", buf);
    ck_assert_msg(strstr(buf, "<text x=\"115.0\" y=\"516.0\">series 2</text>"), "%s", strstr(buf, "legend"));
    free(buf);
}
END_TEST

/* Control characters in a results.csv (not written by cilscale) never reach
 * the terminal through report (issue 13 item 9). */
START_TEST(test_report_control_chars)
{
    subdir("cc");
    subdir("cc/run");
    tu_write("cc/run/results.csv", "# label: evil\x1b[2J\x07 run\n# arch: resnet18\n" HDR "0,5,5,0.5,nan,1,1,1,0.5\n");
    ck_assert_int_eq(RUN("report", path_in(tu_tmpdir(), "cc")), 0);
    assert_contains(out, "evil?[2J? run");
    ck_assert_ptr_null(strchr(out, '\x1b'));
    ck_assert_ptr_null(strchr(out, '\x07'));
}
END_TEST

START_TEST(test_report_figure1)
{
    subdir("grid");
    const char *s1 = "model.arch=resnet18; model.budget=1000000; model.depths=1,1,1,1";
    const char *s2 = "model.arch=resnet18; model.budget=1000000; model.depths=2,2,2,2";
    const char *s3 = "model.arch=resnet18; model.budget=1000000; model.policy=compound";
    for (unsigned k = 1; k <= 2; k++) {
        char f[32];
        snprintf(f, sizeof f, "d1-s%u", k);
        set_run(f, "widest 1M [1,1,1,1]", "widest", k, s1, 959409, 1000000, "1,1,1,1", 0.8, 0.5 + 0.1 * k);
        snprintf(f, sizeof f, "d2-s%u", k);
        set_run(f, "widest 1M [2,2,2,2]", "widest", k, s2, 990833, 1000000, "2,2,2,2", 0.8, 0.4);
        snprintf(f, sizeof f, "c-s%u", k);
        set_run(f, "compound 1M", "compound", k, s3, 959409, 1000000, "1,1,1,1", 0.8, 0.45);
    }
    const char *dir = path_in(tu_tmpdir(), "grid"), *outdir = path_in(tu_tmpdir(), "fig");
    ck_assert_int_eq(RUN("report", dir, "--figure1"), 2);
    assert_one_line(err, "cilscale report: --figure1 writes DIR/figure1-ARCH.svg: give --out DIR");
    ck_assert_int_eq(RUN("report", dir, "--out", outdir, "--figure1", "--metric", "top7"), 2);
    assert_one_line(err, "cilscale report: --metric 'top7': expected top1 or top5");
    ck_assert_int_eq(RUN("report", dir, "--out", outdir, "--figure1"), 0);
    const char *svg = slurp(path_in(outdir, "figure1-resnet18.svg"));
    assert_contains(svg, ">depths [1,1,1,1]</text>");
    assert_contains(svg, ">depths [2,2,2,2]</text>");
    assert_contains(svg, ">compound</text>");
    assert_contains(svg, "; budget 1M</text>"); /* against w: the budget in the note */
    assert_contains(svg, ">width coefficient w</text>");
    ck_assert_int_eq(count(svg, "class=\"highlight\""), 1); /* the one-block-per-stage point */
    ck_assert_int_eq(count(svg, "class=\"series\""), 3);
    /* [1,1,1,1]: mean 65 +- 7.07 over the two seeds: an error bar */
    assert_contains(svg, "stroke-width=\"1.5\"");
    assert_no_temps(outdir);
    /* against parameters (log): the budget as a dashed line */
    ck_assert_int_eq(RUN("report", dir, "--out", outdir, "--figure1", "--x", "params"), 0);
    svg = slurp(path_in(outdir, "figure1-resnet18.svg"));
    assert_contains(svg, ">budget 1M</text>");
    ck_assert_int_eq(count(svg, "class=\"highlight\""), 1);
    ck_assert_int_eq(RUN("report", dir, "--out", outdir, "--figure1", "--x", "d"), 2);
    assert_one_line(err, "cilscale report: --x 'd': expected w or params");
}
END_TEST

static Suite *results_suite(void)
{
    Suite *s = suite_create("results");
    TCase *tc = tcase_create("summary");
    tcase_add_test(tc, test_summary_three_states);
    tcase_add_test(tc, test_summary_best_later);
    tcase_add_test(tc, test_summary_one_state);
    tcase_add_test(tc, test_summary_top5_not_applicable);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_csv_roundtrip);
    tcase_add_test(tc, test_csv_minimal);
    tcase_add_loop_test(tc, test_csv_errors, 0, N_BAD_CSV);
    tcase_add_test(tc, test_csv_too_many_states);
    tcase_add_test(tc, test_svg);
    tcase_add_test(tc, test_write_svg);
    tcase_add_test(tc, test_write_missing_dir);
    tcase_add_test(tc, test_write_keeps_old);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("report");
    tcase_add_test(tc, test_report_table);
    tcase_add_test(tc, test_report_csv);
    tcase_add_test(tc, test_report_out);
    tcase_add_test(tc, test_report_errors);
    tcase_add_test(tc, test_report_groups_by_settings);
    tcase_add_test(tc, test_report_figure1);
    tcase_add_test(tc, test_report_control_chars);
    tcase_add_test(tc, test_epochs_roundtrip);
    tcase_add_test(tc, test_losses_one_epoch);
    tcase_add_test(tc, test_plot_styles_and_legend);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(results_suite()) ? 1 : 0; }
