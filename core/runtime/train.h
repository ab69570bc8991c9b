/* train.h: a network on a backend, the loops that train and evaluate it, and
 * what the network sees of a data set (stem, input size, augmentation). */
#ifndef CILSCALE_TRAIN_H
#define CILSCALE_TRAIN_H

#include <stdint.h>

#include "cilscale/arch.h"
#include "cilscale/backend.h"
#include "runtime/data.h"
#include "cilscale/error.h"
#include "cilscale/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A built network prepared on a backend: what training, evaluation and
 * checkpoints work on. The host keeps no copy of the parameters between
 * steps; cs_model_read_params fetches them. */
typedef struct cs_model {
    cs_graph *g;
    const cs_arch_iface *arch;
    char arch_name[64];
    cs_arch_config cfg;
    int in_c, in_h, in_w, batch;
    int input, labels, features, logits, xent; /* tensor ids */
    cs_device *dev; /* the device it runs on; not owned */
    cs_plan *plan;  /* the graph prepared there (the backend front door, backend.h) */
} cs_model;

/* cs_model_build, then cs_model_prepare. */
int cs_model_init(cs_model *m, const cs_arch_iface *arch, const char *arch_name, const cs_arch_config *cfg,
                  int batch, int in_c, int in_h, int in_w, cs_device *dev, uint64_t seed, cs_error *err);
/* Builds arch at cfg for batch x in_c x in_h x in_w inputs, with a
 * cross-entropy loss on its logits (weight 1). The graph can still grow
 * (more loss terms) before cs_model_prepare. */
int cs_model_build(cs_model *m, const cs_arch_iface *arch, const char *arch_name, const cs_arch_config *cfg,
                   int batch, int in_c, int in_h, int in_w, cs_error *err);
/* Prepares the graph on the backend and initialises the parameters from seed. */
int cs_model_prepare(cs_model *m, cs_device *dev, uint64_t seed, cs_error *err);
void cs_model_free(cs_model *m);

/* A checkpoint's metadata for m: extra ({"key", "value", ..., NULL} or NULL)
 * followed by what rebuilding the network elsewhere takes
 * (python/cilscale/nets.py): arch, w, depths, widths, in_channels, stem,
 * head, last_relu (0 or 1), convention, input (CxHxW) and the input's mean
 * and std per channel (eval's normalisation). The strings live in meta. */
typedef struct cs_model_meta {
    char w[32], depths[128], widths[256], in_channels[16], input[64], mean[96], std[96];
    const char *kv[2 * 24 + 1];
} cs_model_meta;
const char *const *cs_model_meta_fill(cs_model_meta *meta, const cs_model *m, const cs_augment *eval,
                                      const char *const *extra);

/* Host copies of the parameter and buffer arenas (g->n_params, g->n_buffers floats). */
int cs_model_read_params(cs_model *m, float *params, float *buffers, cs_error *err);
int cs_model_write_params(cs_model *m, const float *params, const float *buffers, cs_error *err);

/* Learning-rate schedules over epochs. */
typedef enum cs_lr_schedule { CS_LR_CONSTANT = 0, CS_LR_COSINE, CS_LR_MULTISTEP } cs_lr_schedule;
typedef struct cs_schedule {
    cs_lr_schedule kind;
    float lr;           /* base rate */
    int milestones[8];  /* multistep: epochs at which lr *= gamma */
    int n_milestones;
    float gamma;
    int epochs;         /* cosine: period */
} cs_schedule;
float cs_schedule_lr(const cs_schedule *s, int epoch); /* epoch counts from 0 */
/* "cosine", "constant", "multistep:30,60" (gamma 0.1) */
int cs_schedule_parse(const char *text, float lr, int epochs, cs_schedule *out, cs_error *err);

/* What one pass over a batcher measured. */
#define CS_MAX_LOSS_TERMS 4
typedef struct cs_epoch_stats {
    double loss;       /* mean over batches of the (weighted) loss */
    int64_t seen, top1, top5;
    double seconds;
    int n_terms;       /* the graph's loss terms (at most CS_MAX_LOSS_TERMS kept) */
    double term[CS_MAX_LOSS_TERMS];   /* mean over batches of each term, unweighted */
    double weight[CS_MAX_LOSS_TERMS]; /* each term's weight */
    const char *term_name[CS_MAX_LOSS_TERMS]; /* the op that computes it ("softmax_xent") */
} cs_epoch_stats;

/* Called after each batch; return non-zero to stop at this batch boundary. */
typedef int (*cs_batch_cb)(void *ctx, int batch_index, int n_batches, const cs_epoch_stats *so_far);
/* Called after a batch's inputs are set and before its training step (to
 * feed more inputs, say); a failure stops the epoch with its message. */
typedef int (*cs_step_hook)(void *ctx, cs_model *m, int n, cs_error *err);

/* One epoch of SGD on every batch of b. A loss that is not finite stops it
 * with CS_ERR naming the batch. Returns 1 when the callback asked to stop. */
/* A run stops when its loss is not finite or above CS_LOSS_LIMIT (at the
 * batch), or a parameter is not finite or above CS_WEIGHT_LIMIT in magnitude,
 * or a batch-norm statistic above CS_STAT_LIMIT (after each epoch): trained
 * weights of these networks are of order 1 to 100, running variances of
 * normalised inputs' activations far below 1e8 (a standard deviation of 1e4),
 * a loss of order 1 to 100 (LUCIR's weighted terms included). */
#define CS_LOSS_LIMIT 1e6
#define CS_WEIGHT_LIMIT 1e6
#define CS_STAT_LIMIT 1e8

/* CS_ERR with one line naming the tensor when a parameter or batch-norm
 * statistic is not finite or over its limit; CS_OK otherwise. Reads them back. */
int cs_model_check_weights(cs_model *m, cs_error *err);

int cs_model_train_epoch(cs_model *m, cs_batcher *b, const cs_sgd *opt, cs_step_hook hook, void *hook_ctx,
                         cs_batch_cb cb, void *cb_ctx, cs_epoch_stats *st, cs_error *err);
/* Top-1 / top-5 over every batch of b (eval mode; frozen = use the frozen
 * arenas). With per_label (2 x classes int64s, zeroed by the caller), also
 * counts per true label: [0, K) hits, [K, 2K) images. */
/* cs_model_evaluate, also adding each image to confusion [k x k] (row the
 * true label, column the argmax) when not NULL. */
int cs_model_evaluate_ex(cs_model *m, cs_batcher *b, int frozen, cs_epoch_stats *st, int64_t *per_label,
                         int64_t *confusion, cs_error *err);
int cs_model_evaluate(cs_model *m, cs_batcher *b, int frozen, cs_epoch_stats *st, int64_t *per_label,
                      cs_error *err);

/* Per-channel mean and std of a data set's pixels on [0, 1]. */
void cs_dataset_stats(const cs_dataset *d, float mean[3], float std[3]);

/* The stem for images h pixels high when none is chosen: small (3x3 stride-1
 * first conv, no max-pool) up to 64 px, else imagenet. */
cs_stem cs_stem_auto(int h);

/* What a network at a resolution coefficient sees of a data set's images. */
typedef struct cs_image_input {
    int h, w;        /* each side scaled by the coefficient and rounded, 8 at least */
    cs_augment train; /* resized to h x w and normalised by the data set's channel
                         means and stds; with augment also a random crop (zero
                         padding of (h + 7) / 8) and a random horizontal flip */
    cs_augment eval;  /* the same without the crop and flip */
} cs_image_input;
/* The input of a network at resolution (1: the images' own size) on d. */
void cs_image_input_for(const cs_dataset *d, double resolution, int augment, cs_image_input *in);

#ifdef __cplusplus
}
#endif
#endif
