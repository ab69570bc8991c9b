/* cil.h: the class-incremental-learning algorithm interface: what changes in the
 * network, its loss and its training at each state. */
#ifndef CILSCALE_CIL_H
#define CILSCALE_CIL_H

#include <stdint.h>

#include "arch.h"
#include "error.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a run stands. Model labels are contiguous: the classes of earlier
 * states are 0 .. n_old-1, this state's are n_old .. n_old+n_new-1. */
typedef struct cs_cil_state {
    int index;    /* 0 = the first state */
    int n_states;
    int n_old;    /* classes learned in earlier states */
    int n_new;    /* classes this state adds */
} cs_cil_state;

/* The network of one state as the core built it: the architecture, a
 * classifier over n_old + n_new classes (the head the algorithm asked for),
 * and cross-entropy on it (loss weight 1). */
typedef struct cs_cil_net {
    cs_graph *g;
    int input, labels, features, logits, xent; /* tensor ids */
    int head_weight;   /* classifier weight [n_old + n_new, F] */
    int old_features;  /* [N, F] input holding the previous state's model's features of the
                        * batch, when the algorithm asked for it (else -1) */
} cs_cil_net;

/* What the core does for an algorithm on request. */
typedef struct cs_cil_host {
    void *core;
    /* The mean over this state's training images of class c (c in [first,
     * first + count)) of the L2-normalised features, computed with the model
     * as it is now (before training this state), into out [count, F]. */
    int (*class_feature_means)(void *core, int first, int count, float *out, cs_error *err);
    /* Host copies of one parameter tensor of the state's network. */
    int (*read_param)(void *core, int tensor, float *dst, cs_error *err);
    int (*write_param)(void *core, int tensor, const float *src, cs_error *err);
} cs_cil_host;

typedef struct cs_cil_iface {
    cs_head head;           /* the classifier it trains (linear or cosine) */
    int no_last_relu;       /* leave out the ReLU before the features (LUCIR) */
    int needs_old_features; /* the core feeds the frozen previous model's features */

    int (*create)(void **ctx, cs_error *err);
    void (*destroy)(void *ctx);
    /* optional: one key of the experiment's `cil` group, as text; an unknown
     * key returns CS_ERR_ARG and the core reports it by name. */
    int (*option)(void *ctx, const char *key, const char *value, cs_error *err);
    /* optional: after the core built the state's network: add loss terms
     * (cs_graph_add_loss) or change weights (cs_graph_set_loss_weight). */
    int (*build_state)(void *ctx, cs_graph *g, const cs_cil_net *net, const cs_cil_state *st, cs_error *err);
    /* optional: after the previous state's parameters were copied in, before
     * this state trains (imprinting new classes' weights, say). */
    int (*begin_state)(void *ctx, const cs_cil_host *host, const cs_cil_net *net, const cs_cil_state *st,
                       cs_error *err);
    /* optional: ranges [offset, count) of the parameter arena that stay
     * fixed while this state trains; returns how many it wrote (<= max). */
    int (*frozen_ranges)(void *ctx, const cs_cil_net *net, const cs_cil_state *st, int64_t (*ranges)[2], int max);
    /* optional: one line describing the settings, for logs and results.json */
    void (*describe)(void *ctx, char *buf, int size);
} cs_cil_iface;

#ifdef __cplusplus
}
#endif
#endif
