/* results.h: what a class-incremental run measured, and the files that keep it
 * (results.json, results.csv, accuracy.svg). */
#ifndef CILSCALE_RESULTS_H
#define CILSCALE_RESULTS_H

#include <stdint.h>

#include "cilscale/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CS_MAX_STATES 64
/* results.json's schema: 2 added schema, build, started, ended, command, host,
 * budget_counted, budget_counts, budget_use, settings, run_id, class_order
 * and the top-5 summaries (keys are only added, never renamed or removed). */
#define CS_RESULTS_SCHEMA 2

typedef struct cs_state_result {
    int state;          /* 0-based */
    int n_new, n_seen;  /* classes added in this state, seen so far */
    double top1, top5;  /* on the test images of all classes seen so far, in [0, 1];
                           NaN (not applicable) while k or fewer classes have been seen */
    double train_loss;  /* mean loss of the state's last epoch */
    double train_seconds, eval_seconds;
    /* top-1 on the test images of the classes of each state j <= state, in [0, 1] */
    double group_top1[CS_MAX_STATES];
} cs_state_result;

typedef struct cs_run_result {
    char label[160];      /* how tables and plots name the run: "lucir psi resnet18 seed 1" */
    char arch[64], policy[64], cil[64], backend[64];
    char device[256], version[32], data[256];
    int64_t budget, params; /* budget 0: none (hand-given network) */
    int64_t counted;        /* the count the budget was held to (model.count; = params when trained) */
    char count[128];        /* what that count counts: "trained: cosine head, 10 classes, ..." */
    char settings[3072];    /* cs_experiment_settings: equal for runs that differ only in their seed */
    char run_id[17];        /* cs_experiment_identity: the run folder's files belong together */
    /* provenance (results.json schema 2) */
    char started[32], ended[32]; /* ISO 8601 UTC: the run's first start (kept over resumes), the last write */
    char command[1024];     /* the command line that ran it (the last one, after a resume) */
    char host[256];         /* CPU model and count */
    char build[128];        /* cilscale's version, build type and compiler */
    int n_classes;          /* classes of the data set */
    int class_order[4096];  /* model label i is data-set class class_order[i] */
    double w, d, resolution;
    int n_stages, depths[16], widths[16];
    uint64_t seed;
    int n_states;           /* finished states */
    int n_states_planned;
    cs_state_result states[CS_MAX_STATES];
    double seconds;         /* wall time of the whole run, summed over its resumes */
    const char *config_text; /* the resolved experiment, libconfig syntax (may be NULL) */
} cs_run_result;

/* Metrics over the finished states:
 * last: top-1 after the last state;
 * avg_inc: mean top-1 over the states after the first (as the paper's code reports);
 * avg_inc_all: the same including the first state;
 * forgetting: mean over the groups of classes j < last of (best top-1 the
 * group ever had before the last state - its top-1 after the last state).
 * Fractions in [0, 1]; NaN where not defined: avg_inc and forgetting with
 * fewer than 2 states, all four with none. A state whose top-1 is NaN (one
 * class seen) is left out of the means. */
typedef struct cs_run_summary {
    double last, avg_inc, avg_inc_all, forgetting;
    /* the same means of top-5, over the states where it applies (more than 5
     * classes seen); NaN when no state counts */
    double last5, avg_inc5, avg_inc5_all;
} cs_run_summary;
void cs_run_summarize(const cs_run_result *r, cs_run_summary *s);

/* Writes DIR/results.json, DIR/results.csv and DIR/accuracy.svg (formats in
 * docs/user-guide.md, "Results and reports"). All three are written to
 * NAME.tmp first and renamed into place only when all are complete; on failure
 * the temporary files are removed and earlier results are left as they were.
 * CS_ERR_ARG for a run out of range (n_states, n_stages), CS_ERR_IO otherwise. */
int cs_results_write(const char *dir, const cs_run_result *r, cs_error *err);

/* Reads back what cs_results_write wrote to DIR/results.csv, for `cilscale
 * report`: label (the folder's name when there is no label line), arch, policy,
 * cil, backend, version, params, budget, w, seed, n_states_planned and the
 * states; the rest of r is zeroed (config_text NULL). Anything malformed is
 * CS_ERR_IO with one line "DIR/results.csv:LINE: what is wrong". */
int cs_results_read(const char *dir, cs_run_result *r, cs_error *err);

/* DIR/per_class-S.csv and DIR/confusion-S.csv (or, with s < 0,
 * DIR/per_class.csv and DIR/confusion.csv) for k model labels: hits[i] of
 * count[i] test images right for label i (data-set class order[i]),
 * confusion[k x k] with rows the true label; each atomically. */
int cs_results_write_classes(const char *dir, int s, int k, const int *order, const int64_t *hits,
                             const int64_t *count, const int64_t *confusion, cs_error *err);

/* One training epoch of a run, for epochs.csv and losses.svg. */
#define CS_EPOCH_TERMS 4
typedef struct cs_epoch_row {
    int state, epoch;          /* both from 0 */
    double lr, loss;           /* the epoch's learning rate; mean weighted loss over its batches */
    double train_top1;         /* on the training batches, in [0, 1] */
    double images_per_s, seconds;
    int n_terms;
    double term[CS_EPOCH_TERMS], weight[CS_EPOCH_TERMS]; /* each loss term's mean (unweighted) and weight */
    char term_name[CS_EPOCH_TERMS][32];
} cs_epoch_row;

/* DIR/epochs.csv (one row per epoch and loss term: state,epoch,lr,loss,
 * train_top1,images_per_s,seconds,term,value,weight) and DIR/losses.svg (each
 * term, weighted, and the total against the epoch), both atomically. */
int cs_epochs_write(const char *dir, const cs_epoch_row *rows, int n, cs_error *err);

/* Reads DIR/epochs.csv back, keeping the rows of states before before_state
 * (a resume redoes the rest); *rows is malloc'ed (free it). No file: 0 rows.
 * A malformed file: CS_ERR_IO naming the line. */
int cs_epochs_read(const char *dir, int before_state, cs_epoch_row **rows, int *n, cs_error *err);

/* One self-contained SVG plot of top-1 (%) against classes seen, one coloured
 * line with markers per run (runs without a finished state get only a legend
 * entry), a legend of the labels, and title (a default when NULL or empty);
 * written to PATH.tmp and renamed into place. */
int cs_results_svg(const char *path, const cs_run_result *const *runs, int n, const char *title, cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
