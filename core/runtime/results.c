/* results.c: the metrics of a class-incremental run, and the files that keep
 * it: results.json, results.csv and accuracy.svg, each written through the
 * atomic writer (NAME.tmp, renamed into place); results.csv read back for
 * `cilscale report`. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/atomic.h"
#include "runtime/json.h"
#include "runtime/results.h"
#include "runtime/svgplot.h"

#define CSV_HEADER "state,n_new,n_seen,top1,top5,train_loss,train_seconds,eval_seconds,group_top1"
#define CSV_COLUMNS 9
#define MAX_STAGES_KEPT ((int)(sizeof((cs_run_result *)0)->depths / sizeof(int)))

/* ---- metrics ---- */

/* The mean of top-k (k = 1 or 5) over states [from, n), skipping NaN; NaN when none counts. */
static double mean_top(const cs_state_result *st, int from, int n, int k)
{
    double sum = 0;
    int m = 0;
    for (int i = from; i < n; i++) {
        double v = k == 1 ? st[i].top1 : st[i].top5;
        if (!isnan(v))
            sum += v, m++;
    }
    return m ? sum / m : NAN;
}

void cs_run_summarize(const cs_run_result *r, cs_run_summary *s)
{
    s->last = s->avg_inc = s->avg_inc_all = s->forgetting = NAN;
    s->last5 = s->avg_inc5 = s->avg_inc5_all = NAN;
    int n = r->n_states;
    if (n < 1 || n > CS_MAX_STATES)
        return;
    const cs_state_result *st = r->states;
    int last = n - 1;
    s->last = st[last].top1;
    s->last5 = st[last].top5;
    s->avg_inc_all = mean_top(st, 0, n, 1);
    s->avg_inc5_all = mean_top(st, 0, n, 5);
    if (n < 2)
        return;
    s->avg_inc = mean_top(st, 1, n, 1);
    s->avg_inc5 = mean_top(st, 1, n, 5);
    /* Group j (the classes state j added) for j < last: the best top-1 it had in
     * states j .. last-1, less its top-1 after the last state. */
    double drop = 0;
    for (int j = 0; j < last; j++) {
        double best = st[j].group_top1[j];
        for (int i = j + 1; i < last; i++)
            if (st[i].group_top1[j] > best)
                best = st[i].group_top1[j];
        drop += best - st[last].group_top1[j];
    }
    s->forgetting = drop / last;
}

/* ---- results.json ---- */

/* The top level: one member a line, indented by two. */
static const cs_json_layout top_layout = {"\n  ", ",\n  ", "\n", ": "};
/* The states: one a line, indented by four. */
static const cs_json_layout states_layout = {"\n    ", ",\n    ", "\n  ", ""};

static void write_json(FILE *f, const cs_run_result *r)
{
    cs_run_summary s;
    cs_run_summarize(r, &s);
    cs_json j;
    cs_json_start(&j, f, CS_JSON_ESC_NT | CS_JSON_ESC_DEL);
    cs_json_object(&j, &top_layout);
    cs_json_key(&j, "schema");
    cs_json_int(&j, CS_RESULTS_SCHEMA);
    cs_json_key(&j, "version");
    cs_json_text(&j, r->version);
    const char *const prov[][2] = {{"build", r->build},     {"started", r->started}, {"ended", r->ended},
                                   {"command", r->command}, {"host", r->host}};
    for (size_t i = 0; i < sizeof prov / sizeof prov[0]; i++) {
        cs_json_key(&j, prov[i][0]);
        cs_json_text(&j, prov[i][1]);
    }
    cs_json_key(&j, "label");
    cs_json_string(&j, r->label);
    const char *const texts[][2] = {{"arch", r->arch},     {"policy", r->policy}, {"cil", r->cil},
                                    {"backend", r->backend}, {"device", r->device}, {"data", r->data}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        cs_json_key(&j, texts[i][0]);
        cs_json_text(&j, texts[i][1]);
    }
    cs_json_key(&j, "budget");
    if (r->budget)
        cs_json_int(&j, (long long)r->budget);
    else
        cs_json_null(&j);
    cs_json_key(&j, "params");
    cs_json_int(&j, (long long)r->params);
    cs_json_key(&j, "budget_counted");
    cs_json_int(&j, (long long)r->counted);
    cs_json_key(&j, "budget_counts");
    cs_json_text(&j, r->count);
    cs_json_key(&j, "budget_use");
    if (r->budget)
        cs_json_double(&j, (double)r->counted / (double)r->budget, 6);
    else
        cs_json_null(&j);
    cs_json_key(&j, "settings");
    cs_json_string(&j, r->settings);
    cs_json_key(&j, "run_id");
    cs_json_text(&j, r->run_id);
    cs_json_key(&j, "class_order");
    cs_json_ints(&j, r->class_order, r->n_classes, &cs_json_spaced);
    cs_json_key(&j, "w");
    cs_json_double(&j, r->w, 6);
    cs_json_key(&j, "d");
    cs_json_double(&j, r->d, 6);
    cs_json_key(&j, "resolution");
    cs_json_double(&j, r->resolution, 6);
    cs_json_key(&j, "depths");
    cs_json_ints(&j, r->depths, r->n_stages, &cs_json_spaced);
    cs_json_key(&j, "widths");
    cs_json_ints(&j, r->widths, r->n_stages, &cs_json_spaced);
    cs_json_key(&j, "seed");
    cs_json_uint(&j, (unsigned long long)r->seed);
    cs_json_key(&j, "n_states");
    cs_json_int(&j, r->n_states);
    cs_json_key(&j, "n_states_planned");
    cs_json_int(&j, r->n_states_planned);
    cs_json_key(&j, "seconds");
    cs_json_double(&j, r->seconds, 6);
    cs_json_key(&j, "summary");
    cs_json_object(&j, &cs_json_spaced);
    const char *const keys[] = {"last_top1",        "avg_incremental_top1",     "avg_incremental_top1_all",
                                "forgetting",       "last_top5",                "avg_incremental_top5",
                                "avg_incremental_top5_all"};
    const double vals[] = {s.last, s.avg_inc, s.avg_inc_all, s.forgetting, s.last5, s.avg_inc5, s.avg_inc5_all};
    for (int i = 0; i < 7; i++) {
        cs_json_key(&j, keys[i]);
        cs_json_double(&j, vals[i], 6);
    }
    cs_json_end(&j);
    cs_json_key(&j, "states");
    cs_json_array(&j, &states_layout);
    for (int i = 0; i < r->n_states; i++) {
        const cs_state_result *st = &r->states[i];
        cs_json_object(&j, &cs_json_spaced);
        cs_json_key(&j, "state");
        cs_json_int(&j, st->state);
        cs_json_key(&j, "n_new");
        cs_json_int(&j, st->n_new);
        cs_json_key(&j, "n_seen");
        cs_json_int(&j, st->n_seen);
        const char *const names[] = {"top1", "top5", "train_loss", "train_seconds", "eval_seconds"};
        const double v[] = {st->top1, st->top5, st->train_loss, st->train_seconds, st->eval_seconds};
        for (int k = 0; k < 5; k++) {
            cs_json_key(&j, names[k]);
            cs_json_double(&j, v[k], 6);
        }
        cs_json_key(&j, "group_top1");
        cs_json_array(&j, &cs_json_spaced);
        for (int g = 0; g <= i; g++)
            cs_json_double(&j, st->group_top1[g], 6);
        cs_json_end(&j);
        cs_json_end(&j);
    }
    cs_json_end(&j);
    cs_json_key(&j, "config");
    if (r->config_text)
        cs_json_string(&j, r->config_text);
    else
        cs_json_null(&j);
    cs_json_end(&j);
    fputc('\n', f);
}

/* ---- results.csv ---- */

static void csv_number(FILE *f, double v)
{
    if (isnan(v))
        fputs("nan", f);
    else
        fprintf(f, "%.6g", v);
}

/* "# key: value", the value on one line. */
static void csv_comment(FILE *f, const char *key, const char *value)
{
    fprintf(f, "# %s:", key);
    if (*value)
        fputc(' ', f);
    for (const char *p = value; *p; p++)
        fputc((unsigned char)*p < 0x20 ? ' ' : *p, f);
    fputc('\n', f);
}

static void write_csv(FILE *f, const cs_run_result *r)
{
    char num[64];
    csv_comment(f, "label", r->label);
    csv_comment(f, "arch", r->arch);
    csv_comment(f, "policy", r->policy);
    csv_comment(f, "cil", r->cil);
    csv_comment(f, "backend", r->backend);
    snprintf(num, sizeof num, "%lld", (long long)r->params);
    csv_comment(f, "params", num);
    if (r->budget)
        snprintf(num, sizeof num, "%lld", (long long)r->budget);
    else
        snprintf(num, sizeof num, "none");
    csv_comment(f, "budget", num);
    snprintf(num, sizeof num, "%lld", (long long)r->counted);
    csv_comment(f, "budget_counted", num);
    csv_comment(f, "budget_counts", r->count);
    snprintf(num, sizeof num, "%.6g", r->w);
    csv_comment(f, "w", num);
    snprintf(num, sizeof num, "%.6g", r->d);
    csv_comment(f, "d", num);
    snprintf(num, sizeof num, "%.6g", r->resolution);
    csv_comment(f, "resolution", num);
    {
        char list[2][CS_MAX_STATES * 8] = {"", ""};
        size_t u[2] = {0, 0};
        for (int i = 0; i < r->n_stages && i < MAX_STAGES_KEPT; i++) {
            u[0] += (size_t)snprintf(list[0] + u[0], sizeof list[0] - u[0], "%s%d", i ? "," : "", r->depths[i]);
            u[1] += (size_t)snprintf(list[1] + u[1], sizeof list[1] - u[1], "%s%d", i ? "," : "", r->widths[i]);
        }
        csv_comment(f, "depths", list[0]);
        csv_comment(f, "widths", list[1]);
    }
    csv_comment(f, "settings", r->settings);
    csv_comment(f, "run_id", r->run_id);
    csv_comment(f, "started", r->started);
    snprintf(num, sizeof num, "%.17g", r->seconds);
    csv_comment(f, "seconds", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)r->seed);
    csv_comment(f, "seed", num);
    snprintf(num, sizeof num, "%d", r->n_states_planned);
    csv_comment(f, "n_states_planned", num);
    csv_comment(f, "version", r->version);
    fputs(CSV_HEADER "\n", f);
    for (int i = 0; i < r->n_states; i++) {
        const cs_state_result *st = &r->states[i];
        fprintf(f, "%d,%d,%d,", st->state, st->n_new, st->n_seen);
        const double v[] = {st->top1, st->top5, st->train_loss, st->train_seconds, st->eval_seconds};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            csv_number(f, v[k]);
            fputc(',', f);
        }
        for (int j = 0; j <= i; j++) {
            if (j)
                fputc(';', f);
            csv_number(f, st->group_top1[j]);
        }
        fputc('\n', f);
    }
}

/* ---- accuracy_matrix.csv ---- */

/* One row per finished state: top-1 on all classes seen, on the old classes
 * (those of earlier states) and on the state's new ones (each the mean of
 * the groups' top-1 weighted by their classes), then top-1 on each group
 * (the classes state j added), empty where group j has not come yet. */
static void write_matrix(FILE *f, const cs_run_result *r)
{
    int planned = r->n_states_planned > r->n_states ? r->n_states_planned : r->n_states;
    fputs("state,n_seen,top1,old_top1,new_top1", f);
    for (int j = 0; j < planned; j++)
        fprintf(f, ",group_%d", j);
    fputc('\n', f);
    for (int i = 0; i < r->n_states; i++) {
        const cs_state_result *st = &r->states[i];
        double old = 0;
        int n_old = 0;
        for (int j = 0; j < i; j++) {
            old += r->states[j].n_new * st->group_top1[j];
            n_old += r->states[j].n_new;
        }
        fprintf(f, "%d,%d,", i, st->n_seen);
        csv_number(f, st->top1);
        fputc(',', f);
        csv_number(f, n_old ? old / n_old : NAN);
        fputc(',', f);
        csv_number(f, st->group_top1[i]);
        for (int j = 0; j < planned; j++) {
            fputc(',', f);
            if (j <= i)
                csv_number(f, st->group_top1[j]);
        }
        fputc('\n', f);
    }
}

/* ---- accuracy_matrix.svg: the matrix as a heatmap ---- */

/* A cell per (state, group): white (0%) to dark blue (100%), its value written in
 * it; empty where the group has not come yet. */
static void write_heatmap(FILE *f, const cs_run_result *r)
{
    int n = r->n_states, planned = r->n_states_planned > n ? r->n_states_planned : n;
    const double cell = 56, left = 90, top = 60;
    double width = left + (planned > 0 ? planned : 1) * cell + 30, height = top + (n > 0 ? n : 1) * cell + 30;
    width = width < 560 ? 560 : width; /* room for the title (the run's label) */
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
               "fill=\"#ffffff\"/>\n<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"14\" "
               "font-weight=\"bold\">",
            width, height, width, height, width, height, width / 2);
    cs_svg_text(f, r->label);
    fputs("</text>\n", f);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">top-1 (%%) on the classes each state added</text>\n",
            left + planned * cell / 2, top - 22);
    for (int j = 0; j < planned; j++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">group %d</text>\n", left + (j + 0.5) * cell,
                top - 6, j);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">after state %d</text>\n", left - 6,
                top + (i + 0.5) * cell + 4, i);
        for (int j = 0; j <= i && j < planned; j++) {
            double v = r->states[i].group_top1[j];
            int shade = isfinite(v) ? (int)(255 - 200 * fmin(1, fmax(0, v))) : 255;
            fprintf(f, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" "
                       "fill=\"rgb(%d,%d,255)\" stroke=\"#ffffff\"/>\n",
                    left + j * cell, top + i * cell, cell, cell, shade, shade);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">", left + (j + 0.5) * cell,
                    top + (i + 0.5) * cell + 4, isfinite(v) && v > 0.6 ? "#ffffff" : "#000000");
            if (isfinite(v))
                fprintf(f, "%.0f", 100 * v);
            else
                fputs("-", f);
            fputs("</text>\n", f);
        }
    }
    fputs("</svg>\n", f);
}

/* ---- per_class and confusion ---- */

int cs_results_write_classes(const char *dir, int s, int k, const int *order, const int64_t *hits,
                             const int64_t *count, const int64_t *confusion, cs_error *err)
{
    char path[PATH_MAX + 64], suffix[32] = "";
    if (s >= 0)
        snprintf(suffix, sizeof suffix, "-%d", s);
    cs_atomic a;
    snprintf(path, sizeof path, "%s/per_class%s.csv", dir, suffix);
    int rc = cs_atomic_open(&a, path, 0666, err);
    if (rc == CS_OK) {
        fputs("label,class,test_images,top1\n", a.f);
        for (int i = 0; i < k; i++)
            fprintf(a.f, "%d,%d,%lld,%.6g\n", i, order[i], (long long)count[i],
                    count[i] ? (double)hits[i] / (double)count[i] : NAN);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/confusion%s.csv", dir, suffix);
    if ((rc = cs_atomic_open(&a, path, 0666, err)) == CS_OK) {
        fputs("true\\predicted", a.f);
        for (int j = 0; j < k; j++)
            fprintf(a.f, ",%d", j);
        fputc('\n', a.f);
        for (int i = 0; i < k; i++) {
            fprintf(a.f, "%d", i);
            for (int j = 0; j < k; j++)
                fprintf(a.f, ",%lld", (long long)confusion[(size_t)i * (size_t)k + (size_t)j]);
            fputc('\n', a.f);
        }
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}

/* ---- epochs.csv, losses.svg ---- */

#define EPOCHS_HEADER "state,epoch,lr,loss,train_top1,images_per_s,seconds,term,value,weight"

static void write_epochs(FILE *f, const cs_epoch_row *rows, int n)
{
    fputs(EPOCHS_HEADER "\n", f);
    for (int i = 0; i < n; i++) {
        const cs_epoch_row *e = &rows[i];
        for (int t = 0; t < (e->n_terms > 0 ? e->n_terms : 1); t++) {
            fprintf(f, "%d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,", e->state, e->epoch, e->lr, e->loss, e->train_top1,
                    e->images_per_s, e->seconds);
            if (e->n_terms > 0)
                fprintf(f, "%s,%.6g,%.6g\n", e->term_name[t], e->term[t], e->weight[t]);
            else
                fputs(",,\n", f);
        }
    }
}

int cs_epochs_write(const char *dir, const cs_epoch_row *rows, int n, cs_error *err)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/epochs.csv", dir) >= sizeof path)
        return cs_error_set(err, CS_ERR_ARG, "%s: path too long", dir);
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, 0666, err);
    if (rc == CS_OK) {
        write_epochs(a.f, rows, n);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    if (rc)
        return rc;
    /* losses.svg: the total and each weighted term against the epoch, counted over the whole run */
    char names[CS_EPOCH_TERMS + 1][40];
    int n_series = 1;
    snprintf(names[0], sizeof names[0], "total (weighted)");
    for (int i = 0; i < n; i++)
        for (int t = 0; t < rows[i].n_terms; t++) {
            int k = 1;
            while (k < n_series && strncmp(names[k], rows[i].term_name[t], strlen(rows[i].term_name[t])))
                k++;
            if (k == n_series && n_series < CS_EPOCH_TERMS + 1)
                snprintf(names[n_series++], sizeof names[0], "%s (weighted)", rows[i].term_name[t]);
        }
    cs_plot_point *pts = calloc((size_t)(n > 0 ? n : 1) * (size_t)n_series, sizeof *pts);
    cs_plot_series se[CS_EPOCH_TERMS + 1];
    if (!pts)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n_series; k++) {
        int m = 0;
        cs_plot_point *p = pts + (size_t)k * (size_t)(n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            double y = NAN;
            if (k == 0)
                y = rows[i].loss;
            else
                for (int t = 0; t < rows[i].n_terms; t++)
                    if (!strncmp(names[k], rows[i].term_name[t], strlen(rows[i].term_name[t])))
                        y = rows[i].term[t] * rows[i].weight[t];
            if (isfinite(y))
                p[m++] = (cs_plot_point){(double)(i + 1), y, NAN, 0};
        }
        se[k] = (cs_plot_series){names[k], p, m, 1, 0, 0};
    }
    cs_plot plot = {.title = "training loss per epoch", .xlabel = "epoch (over the whole run)",
                    .ylabel = "mean loss over the epoch's batches", .series = se, .n_series = n_series,
                    .note = "each state restarts at its first epoch; terms are shown times their weight"};
    if ((size_t)snprintf(path, sizeof path, "%s/losses.svg", dir) >= sizeof path)
        rc = cs_error_set(err, CS_ERR_ARG, "%s: path too long", dir);
    else
        rc = cs_plot_write(path, &plot, err);
    free(pts);
    return rc;
}

int cs_epochs_read(const char *dir, int before_state, cs_epoch_row **rows, int *n, cs_error *err)
{
    char path[PATH_MAX];
    *rows = NULL;
    *n = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/epochs.csv", dir) >= sizeof path)
        return cs_error_set(err, CS_ERR_ARG, "%s: path too long", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? CS_OK : cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    char line[512];
    int ln = 0, cap = 0, rc = CS_OK;
    cs_epoch_row *v = NULL;
    while (rc == CS_OK && fgets(line, sizeof line, f)) {
        ln++;
        if (ln == 1) {
            if (strncmp(line, EPOCHS_HEADER, strlen(EPOCHS_HEADER)))
                rc = cs_error_set(err, CS_ERR_IO, "%s:1: expected the header '" EPOCHS_HEADER "'", path);
            continue;
        }
        cs_epoch_row e = {0};
        char name[32] = "";
        double value = NAN, weight = NAN;
        int got = sscanf(line, "%d,%d,%lf,%lf,%lf,%lf,%lf,%31[^,],%lf,%lf", &e.state, &e.epoch, &e.lr, &e.loss,
                         &e.train_top1, &e.images_per_s, &e.seconds, name, &value, &weight);
        if (got != 10 && got != 7) {
            rc = cs_error_set(err, CS_ERR_IO, "%s:%d: expected " EPOCHS_HEADER, path, ln);
            break;
        }
        if (e.state < 0 || e.state >= before_state)
            continue;
        cs_epoch_row *last = *n ? &v[*n - 1] : NULL;
        if (!last || last->state != e.state || last->epoch != e.epoch) { /* a new epoch */
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                cs_epoch_row *bigger = realloc(v, sizeof *v * (size_t)cap);
                if (!bigger) {
                    rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
                    break;
                }
                v = bigger;
            }
            v[(*n)++] = e;
            last = &v[*n - 1];
        }
        if (got == 10 && last->n_terms < CS_EPOCH_TERMS) {
            snprintf(last->term_name[last->n_terms], sizeof last->term_name[0], "%s", name);
            last->term[last->n_terms] = value;
            last->weight[last->n_terms++] = weight;
        }
    }
    fclose(f);
    if (rc) {
        free(v);
        *n = 0;
        return rc;
    }
    *rows = v;
    return CS_OK;
}

/* ---- SVG ---- */

/* The accuracy plot of runs: top-1 (%) against classes seen, one line per run
 * (and, with top5, its top-5 dashed in the same colour), y from 0 to 100,
 * ticks at the class counts of the states. */
static void write_svg(FILE *f, const cs_run_result *const *runs, int n, const char *title, int top5)
{
    int ns = 0, nt = 0;
    cs_plot_series *se = calloc((size_t)(2 * n + 1), sizeof *se);
    cs_plot_point *pts = calloc((size_t)(2 * n + 1) * CS_MAX_STATES, sizeof *pts);
    double ticks[CS_MAX_STATES];
    if (!se || !pts) { /* an empty chart rather than none: the caller's write still fails on a full disk */
        free(se);
        free(pts);
        fputs("<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n", f);
        return;
    }
    for (int k = 0; k < n; k++) {
        for (int kind = 0; kind < (top5 ? 2 : 1); kind++) {
            cs_plot_point *p = pts + (size_t)ns * CS_MAX_STATES;
            int m = 0;
            for (int i = 0; i < runs[k]->n_states && i < CS_MAX_STATES; i++) {
                const cs_state_result *st = &runs[k]->states[i];
                double y = 100 * (kind ? st->top5 : st->top1);
                if (isfinite(y))
                    p[m++] = (cs_plot_point){(double)st->n_seen, y, NAN, 0};
                int have = 0;
                for (int t = 0; t < nt; t++)
                    have |= ticks[t] == (double)st->n_seen;
                if (!have && nt < CS_MAX_STATES)
                    ticks[nt++] = st->n_seen;
            }
            int at = ns++;
            /* top-5: the colour of the top-1 line before it (series at - 1), dashed */
            se[at] = (cs_plot_series){kind ? "top-5" : top5 ? "top-1" : runs[k]->label, p, m, 1, 0, kind ? at : 0};
        }
    }
    cs_plot plot = {.title = title && *title ? title : "top-1 accuracy against classes seen",
                    .xlabel = "classes seen", .ylabel = top5 ? "accuracy (%)" : "top-1 accuracy (%)",
                    .series = se, .n_series = ns, .fixed_y = 1, .y_lo = 0, .y_hi = 100, .x_ticks = ticks,
                    .n_x_ticks = nt,
                    .note = top5 ? "top-5 only where more than 5 classes have been seen" : NULL};
    cs_plot_fwrite(f, &plot);
    free(se);
    free(pts);
}

int cs_results_svg(const char *path, const cs_run_result *const *runs, int n, const char *title, cs_error *err)
{
    if (!path || n < 0 || (n > 0 && !runs))
        return cs_error_set(err, CS_ERR_ARG, "cs_results_svg: no path or no runs");
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, 0666, err);
    if (rc == CS_OK) {
        write_svg(a.f, runs, n, title, 0);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}

int cs_results_write(const char *dir, const cs_run_result *r, cs_error *err)
{
    if (!dir || !r)
        return cs_error_set(err, CS_ERR_ARG, "cs_results_write: no folder or no run");
    if (r->n_states < 0 || r->n_states > CS_MAX_STATES)
        return cs_error_set(err, CS_ERR_ARG, "%s: %d states: expected 0 to %d", dir, r->n_states, CS_MAX_STATES);
    if (r->n_stages < 0 || r->n_stages > MAX_STAGES_KEPT)
        return cs_error_set(err, CS_ERR_ARG, "%s: %d stages: expected 0 to %d", dir, r->n_stages, MAX_STAGES_KEPT);
    static const char *const names[] = {"results.json", "results.csv", "accuracy.svg", "accuracy_matrix.csv",
                                        "accuracy_matrix.svg"};
    enum { N_FILES = 5 };
    cs_atomic o[N_FILES];
    memset(o, 0, sizeof o);
    int rc = CS_OK;
    /* all five complete before any is renamed into place */
    for (int i = 0; i < N_FILES && rc == CS_OK; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            rc = cs_error_set(err, CS_ERR_ARG, "%s: path too long", dir);
            break;
        }
        if ((rc = cs_atomic_open(&o[i], path, 0666, err)) != CS_OK)
            break;
        if (i == 0)
            write_json(o[i].f, r);
        else if (i == 1)
            write_csv(o[i].f, r);
        else if (i == 2)
            write_svg(o[i].f, &r, 1, r->label, 1);
        else if (i == 3)
            write_matrix(o[i].f, r);
        else
            write_heatmap(o[i].f, r);
        rc = cs_atomic_close(&o[i], err);
    }
    for (int i = 0; i < N_FILES && rc == CS_OK; i++)
        rc = cs_atomic_commit(&o[i], err);
    for (int i = 0; i < N_FILES; i++)
        cs_atomic_release(&o[i]);
    return rc;
}

/* ---- reading results.csv ---- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static int parse_double(const char *s, double *out)
{
    if (!*s)
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || (errno == ERANGE && isinf(v)))
        return -1;
    *out = v;
    return 0;
}

static int parse_int64(const char *s, long long min, long long *out)
{
    if (!*s)
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < min)
        return -1;
    *out = v;
    return 0;
}

typedef struct reader {
    const char *path;
    int line;
    cs_error *err;
} reader;

#define BAD(rd, ...) cs_error_set((rd)->err, CS_ERR_IO, __VA_ARGS__)

static int read_text(reader *rd, const char *key, const char *value, char *dst, size_t size)
{
    if (strlen(value) >= size)
        return BAD(rd, "%s:%d: %s is longer than %zu characters", rd->path, rd->line, key, size - 1);
    /* cilscale writes no control characters; a file that has them was not
     * written by it, and they must not reach a terminal through report */
    size_t i = 0;
    for (; value[i]; i++)
        dst[i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ? '?' : value[i];
    dst[i] = '\0';
    return CS_OK;
}

/* "# key: value": the keys cs_results_write writes; other comments are skipped. */
static int read_comment(reader *rd, char *line, cs_run_result *r)
{
    char *colon = strchr(line + 1, ':');
    if (!colon)
        return CS_OK;
    *colon = '\0';
    const char *key = trim(line + 1), *value = trim(colon + 1);
    long long v;
    if (!strcmp(key, "label"))
        return !*value ? CS_OK : read_text(rd, key, value, r->label, sizeof r->label);
    if (!strcmp(key, "arch"))
        return read_text(rd, key, value, r->arch, sizeof r->arch);
    if (!strcmp(key, "policy"))
        return read_text(rd, key, value, r->policy, sizeof r->policy);
    if (!strcmp(key, "cil"))
        return read_text(rd, key, value, r->cil, sizeof r->cil);
    if (!strcmp(key, "backend"))
        return read_text(rd, key, value, r->backend, sizeof r->backend);
    if (!strcmp(key, "version"))
        return read_text(rd, key, value, r->version, sizeof r->version);
    if (!strcmp(key, "settings"))
        return read_text(rd, key, value, r->settings, sizeof r->settings);
    if (!strcmp(key, "run_id"))
        return read_text(rd, key, value, r->run_id, sizeof r->run_id);
    if (!strcmp(key, "started"))
        return read_text(rd, key, value, r->started, sizeof r->started);
    if (!strcmp(key, "seconds")) {
        if (parse_double(value, &r->seconds) || !(r->seconds >= 0))
            return BAD(rd, "%s:%d: seconds '%s': expected a number >= 0", rd->path, rd->line, value);
        return CS_OK;
    }
    if (!strcmp(key, "budget_counts"))
        return read_text(rd, key, value, r->count, sizeof r->count);
    if (!strcmp(key, "depths") || !strcmp(key, "widths")) {
        int *dst = key[0] == 'd' ? r->depths : r->widths, n = 0;
        char *p = (char *)value;
        while (*p) {
            char *end;
            errno = 0;
            long x = strtol(p, &end, 10);
            if (end == p || errno || x < 1 || x > INT_MAX || n == MAX_STAGES_KEPT || (*end && *end != ','))
                return BAD(rd, "%s:%d: %s '%s': expected whole numbers >= 1 joined by ','", rd->path, rd->line,
                           key, value);
            dst[n++] = (int)x;
            p = *end ? end + 1 : end;
        }
        if (r->n_stages && n != r->n_stages)
            return BAD(rd, "%s:%d: %s has %d stages, depths %d", rd->path, rd->line, key, n, r->n_stages);
        r->n_stages = n;
        return CS_OK;
    }
    if (!strcmp(key, "params")) {
        if (parse_int64(value, 0, &v))
            return BAD(rd, "%s:%d: params '%s': expected a whole number >= 0", rd->path, rd->line, value);
        r->params = v;
    } else if (!strcmp(key, "budget")) {
        if (!strcmp(value, "none"))
            v = 0;
        else if (parse_int64(value, 0, &v))
            return BAD(rd, "%s:%d: budget '%s': expected a whole number >= 0 or none", rd->path, rd->line, value);
        r->budget = v;
    } else if (!strcmp(key, "budget_counted")) {
        if (parse_int64(value, 0, &v))
            return BAD(rd, "%s:%d: budget_counted '%s': expected a whole number >= 0", rd->path, rd->line, value);
        r->counted = v;
    } else if (!strcmp(key, "w") || !strcmp(key, "d") || !strcmp(key, "resolution")) {
        double *dst = key[0] == 'w' ? &r->w : key[0] == 'd' ? &r->d : &r->resolution;
        if (parse_double(value, dst))
            return BAD(rd, "%s:%d: %s '%s': expected a number", rd->path, rd->line, key, value);
    } else if (!strcmp(key, "seed")) {
        errno = 0;
        char *end;
        unsigned long long u = strtoull(value, &end, 10);
        if (!*value || *end || errno || *value == '-')
            return BAD(rd, "%s:%d: seed '%s': expected a whole number >= 0", rd->path, rd->line, value);
        r->seed = u;
    } else if (!strcmp(key, "n_states_planned")) {
        if (parse_int64(value, 0, &v) || v > INT_MAX)
            return BAD(rd, "%s:%d: n_states_planned '%s': expected a whole number >= 0", rd->path, rd->line,
                       value);
        r->n_states_planned = (int)v;
    }
    return CS_OK;
}

static int read_fraction(reader *rd, const char *name, const char *s, double *out)
{
    if (parse_double(s, out) || (!isnan(*out) && (*out < 0 || *out > 1)))
        return BAD(rd, "%s:%d: %s '%s': expected a fraction from 0 to 1 (or nan)", rd->path, rd->line, name, s);
    return CS_OK;
}

static int read_row(reader *rd, char *line, cs_run_result *r)
{
    char *col[CSV_COLUMNS];
    int n = 0;
    for (char *p = line;; n++) {
        char *comma = strchr(p, ',');
        if (n < CSV_COLUMNS)
            col[n] = p;
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    n++;
    if (n != CSV_COLUMNS)
        return BAD(rd, "%s:%d: %d columns, expected %d (" CSV_HEADER ")", rd->path, rd->line, n, CSV_COLUMNS);
    for (int i = 0; i < CSV_COLUMNS; i++)
        col[i] = trim(col[i]);
    if (r->n_states == CS_MAX_STATES)
        return BAD(rd, "%s:%d: more than %d states", rd->path, rd->line, CS_MAX_STATES);
    int i = r->n_states;
    cs_state_result *st = &r->states[i];
    memset(st, 0, sizeof *st);
    long long v[3];
    static const char *const int_names[] = {"state", "n_new", "n_seen"};
    for (int k = 0; k < 3; k++)
        if (parse_int64(col[k], 0, &v[k]) || v[k] > INT_MAX)
            return BAD(rd, "%s:%d: %s '%s': expected a whole number >= 0", rd->path, rd->line, int_names[k], col[k]);
    if (v[0] != i)
        return BAD(rd, "%s:%d: state %lld, expected %d (one row per state, in order from 0)", rd->path, rd->line,
                   v[0], i);
    st->state = i;
    st->n_new = (int)v[1];
    st->n_seen = (int)v[2];
    if (read_fraction(rd, "top1", col[3], &st->top1) || read_fraction(rd, "top5", col[4], &st->top5))
        return CS_ERR_IO;
    static const char *const names[] = {"train_loss", "train_seconds", "eval_seconds"};
    double *dst[] = {&st->train_loss, &st->train_seconds, &st->eval_seconds};
    for (int k = 0; k < 3; k++)
        if (parse_double(col[5 + k], dst[k]))
            return BAD(rd, "%s:%d: %s '%s': expected a number (or nan)", rd->path, rd->line, names[k], col[5 + k]);
    int g = 0;
    for (char *p = col[8];; g++) {
        char *semi = strchr(p, ';');
        if (semi)
            *semi = '\0';
        if (g <= i) {
            char name[32];
            snprintf(name, sizeof name, "group_top1[%d]", g);
            if (read_fraction(rd, name, trim(p), &st->group_top1[g]))
                return CS_ERR_IO;
        }
        if (!semi)
            break;
        p = semi + 1;
    }
    g++;
    if (g != i + 1)
        return BAD(rd, "%s:%d: group_top1 has %d value%s, expected %d (one per state so far, joined by ';')",
                   rd->path, rd->line, g, g == 1 ? "" : "s", i + 1);
    r->n_states++;
    return CS_OK;
}

int cs_results_read(const char *dir, cs_run_result *r, cs_error *err)
{
    char path[PATH_MAX];
    if (!dir || !r)
        return cs_error_set(err, CS_ERR_ARG, "cs_results_read: no folder or no run");
    if ((size_t)snprintf(path, sizeof path, "%s/results.csv", dir) >= sizeof path)
        return cs_error_set(err, CS_ERR_ARG, "%s: path too long", dir);
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    /* without a label comment, the run is named by its folder */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    const char *base = dir + dl;
    while (base > dir && base[-1] != '/')
        base--;
    snprintf(r->label, sizeof r->label, "%.*s", (int)(dir + dl - base), base);

    reader rd = {.path = path, .err = err};
    char *line = NULL;
    size_t cap = 0;
    int have_header = 0, rc = CS_OK;
    while (rc == CS_OK && getline(&line, &cap, f) != -1) {
        rd.line++;
        char *s = trim(line);
        if (!*s)
            continue;
        if (*s == '#')
            rc = have_header ? CS_OK : read_comment(&rd, s, r);
        else if (!have_header) {
            if (strcmp(s, CSV_HEADER) != 0)
                rc = BAD(&rd, "%s:%d: expected the header '" CSV_HEADER "', got '%.80s'", path, rd.line, s);
            have_header = 1;
        } else {
            rc = read_row(&rd, s, r);
        }
    }
    if (rc == CS_OK && ferror(f))
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    if (rc == CS_OK && !have_header)
        rc = cs_error_set(err, CS_ERR_IO, "%s:%d: no header row (expected '" CSV_HEADER "')", path, rd.line + 1);
    free(line);
    fclose(f);
    return rc;
}
