/* experiment.h: a class-incremental experiment as an experiment file (libconfig) describes it. */
#ifndef CILSCALE_EXPERIMENT_H
#define CILSCALE_EXPERIMENT_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "cilscale/error.h"
#include "cilscale/registry.h"
#include "runtime/results.h"
#include "runtime/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CS_EXP_MAX_ORDER 4096
#define CS_EXP_MAX_CIL_OPTS 16
#define CS_EXP_MAX_STAGES 16 /* = CS_MAX_STAGES */

typedef struct cs_experiment {
    /* data */
    char data_format[16];   /* idx, cifar10, cifar100, folder */
    char data_path[PATH_MAX];
    int image_size;         /* folder: resize to this */
    int train_per_class;    /* at most this many training images per class (0 = all) */
    int test_per_class;     /* likewise for the test images */
    int max_pixels;         /* folder and list formats: refuse larger images (0 = CS_IMAGE_MAX_PIXELS) */
    /* scenario */
    int states;
    int first;              /* classes in the first state (0 = equal split) */
    int order[CS_EXP_MAX_ORDER]; /* class order; n_order = 0: drawn from the seed */
    int n_order;
    /* model */
    char arch[64], policy[64], stem[16];
    int64_t budget;         /* 0 with a hand-given width/depth */
    double width, depth;    /* used when manual */
    int depths[CS_EXP_MAX_STAGES]; /* manual: blocks per stage, in place of depth (n_depths > 0) */
    int n_depths;
    int manual;
    char convention[16];    /* authors or cilscale-0.1: the scaling rules */
    char count[16];         /* what the budget counts: trained, authors-100 or authors-1000 */
    char resolution[16];    /* policy (the policy's input resolution factor) or keep */
    /* cil */
    char cil[64];
    int n_cil_opts;
    char cil_keys[CS_EXP_MAX_CIL_OPTS][64]; /* "lucir.lambda_base" (for one algorithm) or "key" (any) */
    char cil_values[CS_EXP_MAX_CIL_OPTS][128];
    /* train */
    int epochs, first_epochs, batch;
    double lr, first_lr, momentum, weight_decay;
    char schedule[64];
    int nesterov, augment;
    /* backend */
    char backend[64], device[128];
    uint64_t seed;
    char out[PATH_MAX];
} cs_experiment;

/* The defaults (documented in the user guide; the shipped configs set them). */
void cs_experiment_defaults(cs_experiment *e);

/* Reads an experiment file over the defaults. One line per problem, naming
 * the file, the line and the key: a syntax error, an unknown key, a value of
 * the wrong type or out of range. */
int cs_experiment_load(const char *path, cs_experiment *e, cs_error *err);

/* Applies one "group.key=value" override (cilscale run --set). */
int cs_experiment_set(cs_experiment *e, const char *assignment, cs_error *err);

/* Writes the resolved experiment as an experiment file that loads back to
 * the same values. */
void cs_experiment_write(const cs_experiment *e, FILE *f);

/* The resolved settings that decide a run's numbers, as "key=value" pairs
 * joined by "; " in the key table's order: every key except seed, out and
 * backend.device (threads: the same numbers), and only the model keys in use
 * (width and depth or depths by hand, else policy and budget). Two runs whose
 * settings are equal differ only in their seed. Returns the length (it is
 * cut at size - 1). */
size_t cs_experiment_settings(const cs_experiment *e, char *buf, size_t size);

/* Every key of an experiment file: its type and range, default and meaning,
 * one a line (cilscale run --keys). */
void cs_experiment_print_keys(FILE *f);

/* A run's identity: 16 hex digits of a 64-bit FNV-1a hash of its settings
 * and its seed. Every file of a run folder records it (run.cfg implies it,
 * results.json/csv and the checkpoints carry it as run_id). */
void cs_experiment_identity(const cs_experiment *e, char id[17]);

/* What evaluating a run's checkpoint measured (cs_experiment_eval). */
typedef struct cs_eval_result {
    int state, n_seen, n_test;  /* the state evaluated (from 0), its classes, its test images */
    double top1, top5;          /* top5 NaN with 5 or fewer classes */
    int64_t *hits, *count;      /* [n_seen]: per model label, correct and total */
    int64_t *confusion;         /* [n_seen * n_seen]: row the true label, column the predicted */
    int *class_order;           /* [n_seen]: model label i is data-set class class_order[i] */
    float *logits;              /* [n_test * n_seen], with keep_logits */
    int *labels;                /* [n_test], the true model labels, with keep_logits */
    float *inputs;              /* [n_test * c * h * w]: the images as the network saw them, with CS_EVAL_INPUTS */
    int in_c, in_h, in_w;       /* the network's input shape */
} cs_eval_result;
void cs_eval_result_free(cs_eval_result *r);

/* cs_experiment_eval's keep flags. */
enum {
    CS_EVAL_LOGITS = 1, /* keep logits and labels */
    CS_EVAL_INPUTS = 2, /* also keep the input images (normalised, N x C x H x W) */
};

/* Evaluates the checkpoint of state (or, state < 0, the last finished one)
 * in the run folder e->out on the test images of the classes seen by then,
 * exactly as the run evaluated it (same network, batches and device): the run
 * folder's run.cfg is e. The checkpoint must be this run's (run_id). */
int cs_experiment_eval(const cs_experiment *e, const cs_registry *reg, int state, int keep, cs_eval_result *out,
                       cs_error *err);

/* cs_experiment_run's flags. */
enum {
    CS_RUN_RESUME = 1, /* continue after the last finished state in e->out */
    CS_RUN_FORCE = 2,  /* a folder holding another run: move its files aside (DIR/replaced-TIME/) */
};

/* What a run reports while it works. */
typedef struct cs_run_callbacks {
    void *ctx;
    /* a line worth keeping: the network chosen, each state's accuracy */
    void (*log)(void *ctx, const char *line);
    /* after each training batch; non-zero stops the run at this batch */
    int (*batch)(void *ctx, int state, int n_states, int epoch, int epochs, int batch, int n_batches,
                 const cs_epoch_stats *so_far);
    /* the command line, for results.json's provenance (may be NULL) */
    const char *command;
} cs_run_callbacks;

/* The network the experiment would train, without training it: the plugins
 * found, the data read (for its classes, channels and image size), the
 * network scaled as cs_experiment_run scales it; res filled as a run's
 * results start (label, params, budget_counted, budget_counts, depths,
 * widths, settings). net is the scaled network (trained head and classes). */
struct cs_scale_result;
int cs_experiment_network(const cs_experiment *e, const cs_registry *reg, struct cs_scale_result *net,
                          cs_run_result *res, cs_error *err);

/* Runs the experiment: every state in turn (after the last finished one in
 * e->out with CS_RUN_RESUME in flags), writing after each state the model
 * (e->out/state-K.safetensors), results.json/.csv and accuracy.svg, and at
 * the start the resolved experiment (e->out/run.cfg). Returns CS_OK, 1 when
 * a callback stopped it (the model so far is saved to
 * e->out/interrupted.safetensors), or a negative status with err naming the
 * state, epoch and batch where it matters. res holds what was measured. */
int cs_experiment_run(const cs_experiment *e, const cs_registry *reg, int flags, const cs_run_callbacks *cb,
                      cs_run_result *res, cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
