/* backend.h: the compute-backend interface: prepare a whole graph once, then run it per batch. */
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

typedef struct cs_backend_iface {
    /* Opens a device: "" is the backend's default; otherwise an index or a
     * name the backend documents. Fills err with one line when it cannot. */
    int (*open)(const char *device, void **ctx, cs_error *err);
    void (*close)(void *ctx);
    /* One line naming the device (and driver, threads, ...), for logs and benchmarks. */
    void (*describe)(void *ctx, char *buf, size_t size);

    /* Takes the graph as it is (its shapes, order and attributes; the graph
     * must outlive the plan) and allocates every arena, zeroed. An op the
     * backend cannot run is refused here, by name. */
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
     * records it once); NULL = the core calls the three. */
    int (*step)(void *plan, int n, const cs_sgd *opt, cs_error *err);
    /* optional: device time per op, for `cilscale bench --profile`. With
     * report NULL, starts (or restarts) collecting: every later submission is
     * timed (a GPU backend re-records its command buffers with timestamps, so
     * the first steps after it are slower). With a buffer, writes a table of
     * what was collected since, one line per op and direction, and the
     * slowest nodes. NULL = the backend has no profiler. */
    int (*profile)(void *plan, char *report, size_t size, cs_error *err);
} cs_backend_iface;

#ifdef __cplusplus
}
#endif
#endif
