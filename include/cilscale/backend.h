/* backend.h: the compute-backend interface (prepare a whole graph once, then run
 * it per batch) and the front door through which everything calls a backend. */
#ifndef CILSCALE_BACKEND_H
#define CILSCALE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The arenas a plan holds. PARAMS, GRADS and MOMENTUM share one layout
 * (cs_tensor.offset of each CS_TENSOR_PARAM, g->n_params floats); BUFFERS
 * holds the CS_TENSOR_BUFFER tensors (g->n_buffers floats). FROZEN_* are a
 * second copy of parameters and buffers that a forward pass can run with
 * (the previous state's model in class-incremental learning). */
typedef enum cs_arena {
    CS_ARENA_PARAMS = 0,
    CS_ARENA_GRADS,
    CS_ARENA_MOMENTUM,
    CS_ARENA_BUFFERS,
    CS_ARENA_FROZEN_PARAMS,
    CS_ARENA_FROZEN_BUFFERS,
    CS_ARENA_COUNT_
} cs_arena;

/* forward() flags */
enum {
    CS_FWD_TRAIN = 1,  /* batch norm uses batch statistics and updates running ones; save for backward */
    CS_FWD_FROZEN = 2, /* run with the FROZEN arenas (eval mode only) */
};

/* One SGD step: v = momentum * v + (g + weight_decay * p); p -= lr * v
 * (Nesterov: p -= lr * (g + weight_decay * p + momentum * v)), PyTorch's
 * torch.optim.SGD exactly. Parameters whose tensor is not needs_grad are
 * left alone, and so are the frozen ranges of the parameter arena (their
 * values and momentum do not change: LUCIR's old-class weights). */
typedef struct cs_sgd {
    float lr;
    float momentum;
    float weight_decay;
    int nesterov;
    const int64_t (*frozen)[2]; /* [offset, count) ranges in the PARAMS arena, or NULL */
    int n_frozen;
} cs_sgd;

/* Data-parallel training (core/runtime/dp.h): what a plan's training pass
 * exchanges with the other ranks of a run, each of which trains a copy of
 * the graph on its share of every batch. A backend that takes a cs_comm
 * (set_comm) calls it from inside forward and backward; one that does not
 * trains each copy alone and the runtime averages the gradients through
 * host copies of the GRADS arena (slower: nothing overlaps). */
typedef struct cs_comm {
    void *ctx;
    /* Sums count doubles elementwise over every rank, in place; every rank
     * calls it the same number of times in the same order. Non-zero (with
     * err filled) when the exchange failed. */
    int (*allreduce)(void *ctx, double *buf, int count, cs_error *err);
    /* Called from backward once the gradients of the PARAMS floats [offset,
     * offset + count) are final, with those floats (host memory) or NULL
     * when the backend keeps them on a device; backward goes on meanwhile.
     * NULL = not wanted. */
    void (*grads_ready)(void *ctx, float *grads, int64_t offset, int64_t count);
    /* Batch norm in training normalises with the mean and variance over
     * every rank's rows (two allreduce calls of the channel count + 1 and
     * the channel count per node forward, one of twice the channels
     * backward), and its running statistics follow them. */
    int sync_bn;
    /* backward starts each loss term's gradient at weight x loss_scale
     * (this rank's rows over the global batch's, so that the ranks'
     * gradients sum to the global batch's mean) instead of weight. */
    float loss_scale;
} cs_comm;

/* The entries a backend plugin implements. They are called only through the
 * front door below, with arguments it has already checked: a live plan, an
 * arena range inside its arena and a buffer, 1 <= n <= the graph's batch, an
 * INPUT tensor to set, an INPUT or ACT tensor to read, known forward flags,
 * backward only right after a training forward of the same n rows, valid SGD
 * settings and frozen ranges. An entry reports only what it alone can see (a
 * label out of range, a device failure, an op it cannot run). */
typedef struct cs_backend_iface {
    /* Opens a device: "" is the backend's default; otherwise an index or a
     * name the backend documents. Fills err with one line when it cannot. */
    int (*open)(const char *device, void **ctx, cs_error *err);
    void (*close)(void *ctx);
    /* One line naming the device (and driver, threads, ...), for logs and benchmarks. */
    void (*describe)(void *ctx, char *buf, size_t size);

    /* Takes the graph as it is (its shapes, order and attributes; the graph
     * must outlive the plan) and allocates every arena, zeroed. The front
     * door has run cs_graph_check on it; an op the backend cannot run is
     * refused here, by name. */
    int (*prepare)(void *ctx, const cs_graph *g, void **plan, cs_error *err);
    void (*release)(void *plan);

    /* Host <-> plan copies of arena ranges, in floats. */
    int (*write)(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err);
    int (*read)(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err);

    /* Sets the first n rows of an INPUT tensor (n <= g->batch), or reads the
     * first n rows of any ACT or INPUT tensor (a loss is one value). */
    int (*set_input)(void *plan, int tensor, const float *src, int n, cs_error *err);
    int (*read_tensor)(void *plan, int tensor, float *dst, int n, cs_error *err);

    /* Runs every node on the first n rows. */
    int (*forward)(void *plan, int n, int flags, cs_error *err);
    /* Zeroes the gradients, then back-propagates the weighted sum of the
     * graph's losses from the last training forward() of n rows. */
    int (*backward)(void *plan, int n, cs_error *err);
    /* One SGD step on PARAMS with GRADS and MOMENTUM. */
    int (*update)(void *plan, const cs_sgd *opt, cs_error *err);
    /* optional: forward(TRAIN) + backward + update in one go (a GPU backend
     * records it once); NULL = the front door calls the three. */
    int (*step)(void *plan, int n, const cs_sgd *opt, cs_error *err);
    /* optional: device time per op, for `cilscale bench --profile`. With
     * report NULL, starts (or restarts) collecting: every later submission is
     * timed (a GPU backend re-records its command buffers with timestamps, so
     * the first steps after it are slower). With a buffer, writes a table of
     * what was collected since, one line per op and direction, and the
     * slowest nodes. NULL = the backend has no profiler. */
    int (*profile)(void *plan, char *report, size_t size, cs_error *err);
    /* optional: trains as one rank of a data-parallel run from now on
     * (comm copied; its ctx and functions outlive the plan), or alone again
     * with comm NULL. NULL = the backend has none: the runtime averages
     * gradients through host copies and refuses synchronised batch norm. */
    int (*set_comm)(void *plan, const cs_comm *comm, cs_error *err);
} cs_backend_iface;

/* ---- the front door: how the core (and any program) calls a backend ----
 *
 * Nothing calls a cs_backend_iface entry directly: these wrappers check every
 * argument once (arena ranges, rows, tensor kinds, flags, SGD settings, the
 * order of forward and backward), supply the default for every optional entry
 * (step = forward + backward + update; no profiler = a clear error) and keep
 * the wall time of each call. A backend therefore receives only valid calls
 * and implements kernels, nothing else. Messages start with "NAME backend: ". */
typedef struct cs_device cs_device; /* an opened device of one backend */
typedef struct cs_plan cs_plan;     /* a graph prepared on a device */

/* Wall time the front door measured, per entry, since prepare. */
typedef struct cs_plan_timing {
    double forward_s, backward_s, update_s, step_s, copy_s;
    int64_t forwards, backwards, updates, steps;
} cs_plan_timing;

/* name: the backend's plugin name, for messages ("cpu"). */
int cs_device_open(const cs_backend_iface *be, const char *name, const char *device, cs_device **out,
                   cs_error *err);
void cs_device_close(cs_device *d); /* NULL is fine */
void cs_device_describe(const cs_device *d, char *buf, size_t size);
const char *cs_device_name(const cs_device *d);
/* 1 when the device's backend takes a cs_comm (set_comm): synchronised batch
 * norm and gradients handed over during the backward. */
int cs_device_can_comm(const cs_device *d);

/* cs_graph_check, then the backend's prepare. The graph must outlive the plan. */
int cs_plan_prepare(cs_device *d, const cs_graph *g, cs_plan **out, cs_error *err);
void cs_plan_release(cs_plan *p); /* NULL is fine */
const cs_graph *cs_plan_graph(const cs_plan *p);

int cs_plan_write(cs_plan *p, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err);
int cs_plan_read(cs_plan *p, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err);
int cs_plan_set_input(cs_plan *p, int tensor, const float *src, int n, cs_error *err);
int cs_plan_read_tensor(cs_plan *p, int tensor, float *dst, int n, cs_error *err);
int cs_plan_forward(cs_plan *p, int n, int flags, cs_error *err);
int cs_plan_backward(cs_plan *p, int n, cs_error *err);
int cs_plan_update(cs_plan *p, const cs_sgd *opt, cs_error *err);
/* forward(TRAIN) + backward + update: the backend's step where it has one. */
int cs_plan_step(cs_plan *p, int n, const cs_sgd *opt, cs_error *err);
/* 1 when the backend can profile; cs_plan_profile starts (report NULL) or reports. */
int cs_plan_can_profile(const cs_plan *p);
int cs_plan_profile(cs_plan *p, char *report, size_t size, cs_error *err);
void cs_plan_timing_get(const cs_plan *p, cs_plan_timing *t);
/* 1 when the backend takes a cs_comm; cs_plan_set_comm hands it one (NULL:
 * alone again). Without set_comm, a comm asking for sync_bn is refused by
 * name and any other is a clear error too (the runtime stages through the
 * host instead). */
int cs_plan_can_comm(const cs_plan *p);
int cs_plan_set_comm(cs_plan *p, const cs_comm *comm, cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
