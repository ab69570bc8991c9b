/* arch.h: the architecture interface (stages, exact parameter count) and the
 * scaling arithmetic every architecture and policy shares. */
#ifndef CILSCALE_ARCH_H
#define CILSCALE_ARCH_H

#include <stdint.h>

#include "error.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CS_MAX_STAGES 16

typedef enum cs_stem {
    CS_STEM_IMAGENET = 0, /* torchvision's stem (ResNet: 7x7/2 conv + max-pool) */
    CS_STEM_SMALL = 1,    /* for 28-32 px images: first conv 3x3 stride 1, no max-pool */
} cs_stem;

/* Which scaling rules turn (w, d) into a network. */
typedef enum cs_convention {
    CS_CONVENTION_AUTHORS = 0, /* the AdvisIL authors' code (docs/advisil-reference.md): depth
                                  _make_divisible(d * n, 1); ShuffleNetV2 widths, stem included, to
                                  multiples of 8 whenever (w, depths) is not the reference */
    CS_CONVENTION_CILSCALE_01 = 1, /* cilscale 0.1: depth max(1, round_half_up(d * n)); ShuffleNetV2
                                  widths to multiples of 4 (exact at w = 1 at every depth) */
} cs_convention;

typedef enum cs_head {
    CS_HEAD_LINEAR = 0, /* linear classifier with bias */
    CS_HEAD_COSINE = 1, /* cosine-normalised classifier: no bias, one learnable scale */
} cs_head;

/* One stage of the reference network: a run of blocks of one width. */
typedef struct cs_stage {
    const char *name; /* "layer1", "features.2-3", "stage2" */
    int ref_depth;    /* blocks in the reference network */
    int ref_width;    /* output channels in the reference network */
} cs_stage;

/* One concrete network: what an architecture is asked to count (and, later,
 * to build). n_stages and depths follow the architecture's stage list. */
typedef struct cs_arch_config {
    double w;                   /* width coefficient (1 = reference) */
    int depths[CS_MAX_STAGES];  /* blocks per stage, each >= 1 */
    int in_channels;            /* input image channels */
    int n_classes;              /* classifier outputs */
    cs_stem stem;
    cs_head head;
    int no_last_relu;           /* build: leave out the ReLU right before the features (LUCIR) */
    cs_convention convention;   /* the scaling rules (0: the authors') */
} cs_arch_config;

typedef struct cs_arch_iface {
    int n_stages;            /* 1..CS_MAX_STAGES */
    const cs_stage *stages;  /* n_stages entries, static storage */
    /* optional: channel counts are rounded to multiples of this (0 = 8) */
    int width_divisor;
    /* optional: per-stage output widths for cfg; NULL = the core's rule,
     * cs_make_divisible(cfg->w * ref_width, divisor) */
    void (*stage_widths)(const cs_arch_config *cfg, int *widths);
    /* required: the exact number of trainable parameters of the network
     * cfg describes, classifier included (batch-norm running statistics are
     * buffers, not parameters, as in PyTorch). cfg is already validated. */
    int64_t (*count_params)(const cs_arch_config *cfg);
    /* optional (needed to train): adds the network without its classifier
     * to g, from input x [N, in_channels, H, W] to the features [N, F] after
     * global average pooling, and returns the feature tensor (or -1; the
     * reason is in cs_graph_status). Layer names follow torchvision's
     * state_dict ("layer1.0.conv1"), so parameters are "layer1.0.conv1.weight". */
    int (*build)(cs_graph *g, const cs_arch_config *cfg, int x);
    /* with build: torchvision's name of the classifier layer ("fc", "classifier.1") */
    const char *head_name;
    /* with build: how the linear classifier starts (torchvision's choice) */
    cs_init head_init;
} cs_arch_iface;

/* ---- shared scaling arithmetic (libcilscale) ---- */

/* TensorFlow's / torchvision's _make_divisible: v rounded to the nearest
 * multiple of divisor, at least divisor, and never more than 10% below v. */
int cs_make_divisible(double v, int divisor);

/* floor(x + 0.5), with a small tolerance so 2 * 0.25 rounds like 0.5 does. */
int cs_round_half_up(double x);
/* ceil(x), with the same tolerance (1.2^phi * n is often a hair above n). */
int cs_ceil_tol(double x);

typedef enum cs_depth_rounding {
    CS_DEPTH_ROUND_HALF_UP = 0, /* max(1, round_half_up(d * n_ref)): cilscale's rule before 0.2 */
    CS_DEPTH_CEIL = 1,          /* max(1, ceil(d * n_ref)): EfficientNet */
    CS_DEPTH_AUTHORS = 2,       /* the AdvisIL authors' _make_divisible(d * n_ref, 1): max(1, int(x + 0.5)),
                                   plus one more block when that is below 0.9 x (docs/advisil-reference.md) */
} cs_depth_rounding;

/* depths[i] for depth coefficient d under the given rounding. */
void cs_arch_depths_for(const cs_arch_iface *a, double d, cs_depth_rounding r, int *depths);

/* The depth rounding a convention uses for a depth coefficient
 * (CS_DEPTH_AUTHORS or CS_DEPTH_ROUND_HALF_UP). */
cs_depth_rounding cs_convention_depths(cs_convention c);

/* 1 when cfg is the reference network's shape: w == 1 and every stage at
 * its reference depth (an architecture's width rule may special-case it). */
int cs_arch_is_reference(const cs_arch_iface *a, const cs_arch_config *cfg);

/* The width divisor in force (a->width_divisor or 8). */
int cs_arch_divisor(const cs_arch_iface *a);

/* Per-stage widths of cfg (the architecture's rule or the core's). */
void cs_arch_widths(const cs_arch_iface *a, const cs_arch_config *cfg, int *widths);

/* Total reference blocks (sum of ref_depth) and blocks in depths[]. */
int cs_arch_ref_blocks(const cs_arch_iface *a);
int cs_arch_blocks(const cs_arch_iface *a, const int *depths);

/* Checks cfg (w > 0, depths >= 1, classes and channels >= 1, known stem and
 * head) and the interface itself; fills err naming the bad field. */
int cs_arch_check(const cs_arch_iface *a, const cs_arch_config *cfg, cs_error *err);

/* cs_arch_check, then the architecture's count. */
int cs_arch_count(const cs_arch_iface *a, const cs_arch_config *cfg, int64_t *params, cs_error *err);

/* cfg with w = 1 and the reference depths, other fields from base. */
cs_arch_config cs_arch_reference(const cs_arch_iface *a, const cs_arch_config *base);

/* Builds the whole network for cfg into g: a->build, then the classifier cfg->head
 * asks for (linear with bias, or cosine with scale 1) with cfg->n_classes outputs,
 * named a->head_name. Fills the feature and logit tensor ids. Fails (naming the
 * architecture) when it has no build entry. */
int cs_arch_build(const cs_arch_iface *a, const char *arch_name, cs_graph *g, const cs_arch_config *cfg, int x,
                  int *features, int *logits, cs_error *err);

const char *cs_stem_name(cs_stem s); /* "imagenet", "small" */
const char *cs_convention_name(cs_convention c); /* "authors", "cilscale-0.1" */
int cs_convention_parse(const char *s, cs_convention *out);
const char *cs_head_name(cs_head h); /* "linear", "cosine" */
int cs_stem_parse(const char *s, cs_stem *out);
int cs_head_parse(const char *s, cs_head *out);

#ifdef __cplusplus
}
#endif
#endif
