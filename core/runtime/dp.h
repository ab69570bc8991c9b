/* dp.h: data-parallel training. Every rank of a run trains a copy of the
 * network on its share of each global batch (the same batches, sampling and
 * augmentation as one rank: the batcher draws them from the seed and each
 * rank keeps its rows); the ranks' gradients are summed with an allreduce in
 * buckets, launched from inside the backward as each bucket's gradients are
 * final, so the exchange overlaps the rest of the backward. Batch norm runs
 * on each rank's rows, or, synchronised, on the global batch's.
 *
 * The runtime knows no MPI: a cs_dp_ops is the communicator (the CLI's is
 * Open MPI, core/cli/dp_mpi.c), so the runtime and its tests build without
 * one. One process holds at most one cs_dp, set with cs_dp_set. */
#ifndef CILSCALE_DP_H
#define CILSCALE_DP_H

#include <stddef.h>
#include <stdint.h>

#include "cilscale/error.h"
#include "runtime/train.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CS_DP_SUM = 0, CS_DP_MIN, CS_DP_MAX };

/* What the runtime asks of a communicator. Every call is collective (every
 * rank makes it, in the same order) except abort. Each returns 0, or
 * non-zero with err filled. */
typedef struct cs_dp_ops {
    void *ctx;
    int rank, world;
    int (*allreduce_f64)(void *ctx, double *buf, int count, cs_error *err);        /* sum, in place */
    int (*allreduce_i64)(void *ctx, int64_t *buf, int count, int op, cs_error *err); /* CS_DP_*, in place */
    /* Starts a sum of count floats in place; *req is its handle. */
    int (*iallreduce_f32)(void *ctx, float *buf, int64_t count, void **req, cs_error *err);
    int (*test)(void *ctx, void *req); /* drives the exchange on; 1 when req is done */
    int (*wait)(void *ctx, void *req, cs_error *err);
    int (*bcast)(void *ctx, void *buf, int64_t bytes, int root, cs_error *err);
    /* Rank `from` sends text (NUL-terminated, at most size bytes) to rank 0,
     * which receives it into text; the other ranks do nothing. */
    int (*to_root)(void *ctx, char *text, size_t size, int from, cs_error *err);
    /* Prints "cilscale: rank R of W: line" and ends every rank (for a failure
     * in the middle of an exchange, which the others cannot be told of). */
    void (*abort)(void *ctx, const char *line);
} cs_dp_ops;

/* What the exchanges cost, since cs_dp_new. */
typedef struct cs_dp_stats {
    int64_t steps;
    int64_t grad_bytes;    /* gradient floats summed, x 4 (what one rank sends in) */
    int64_t bn_bytes;      /* batch-norm statistics summed, x 8 */
    int64_t buckets;       /* gradient allreduce calls */
    double step_s;         /* wall time of the steps (forward to update) */
    double wait_s;         /* of that, waiting for the gradient sums after the backward */
    double staged_s;       /* of that, copying gradients to and from a device (no set_comm) */
} cs_dp_stats;

typedef struct cs_dp cs_dp;

/* bucket_bytes: gradient floats per allreduce call at most (x 4), 0 = 1 MiB. */
int cs_dp_new(const cs_dp_ops *ops, int sync_bn, int64_t bucket_bytes, cs_dp **out, cs_error *err);
void cs_dp_free(cs_dp *dp);
/* The process's data-parallel context (NULL: one rank, nothing exchanged). */
void cs_dp_set(cs_dp *dp);
cs_dp *cs_dp_get(void);
int cs_dp_rank(const cs_dp *dp);  /* 0 for NULL */
int cs_dp_world(const cs_dp *dp); /* 1 for NULL */
int cs_dp_sync_bn(const cs_dp *dp);
void cs_dp_stats_get(const cs_dp *dp, cs_dp_stats *st);
/* One line: "2 ranks, synchronised batch norm" or "..., batch norm per rank". */
void cs_dp_describe(const cs_dp *dp, char *buf, size_t size);

/* Refuses synchronised batch norm on a device whose backend has no set_comm
 * (one line naming the backend), before anything is built on it. */
int cs_dp_check_device(const cs_dp *dp, const cs_device *dev, cs_error *err);
/* Starts (and ends, with m NULL) training m's plan as one rank: hands the
 * plan a cs_comm where its backend takes one, and lays the gradient buckets
 * out. Refuses synchronised batch norm on a backend without set_comm. */
int cs_dp_attach(cs_dp *dp, cs_model *m, cs_error *err);
/* Rows [lo, hi) of a global batch of N that this rank trains on: equal
 * shares, the first N % world ranks one more. */
void cs_dp_share(const cs_dp *dp, int N, int *lo, int *hi);
/* A training forward and backward of this rank's n rows of a global batch
 * of N (inputs set), then the gradients summed over the ranks, so that
 * every rank holds the global batch's mean-loss gradient. With rc non-zero
 * (this rank already failed) it runs nothing but still takes part in the
 * gradient exchange, so that the others are not left waiting. Returns rc
 * or the pass's own failure. */
int cs_dp_forward_backward(cs_dp *dp, cs_model *m, int n, int N, int rc, cs_error *err);

/* Collective: every rank's rc. CS_OK when all are; else every rank returns
 * an error, rank 0's err naming the first failing rank and holding its
 * message ("rank 1 of 2: ...", unprefixed when every rank failed). */
int cs_dp_agree(cs_dp *dp, int rc, cs_error *err);
int cs_dp_sum(cs_dp *dp, double *v, int count, cs_error *err);
int cs_dp_bcast(cs_dp *dp, void *buf, int64_t bytes, cs_error *err); /* from rank 0 */
/* After an epoch: the batch-norm running statistics averaged over the ranks
 * (each saw only its rows when not synchronised), and a check that every
 * rank's parameters are the same bits (an error naming the first rank that
 * differs). */
int cs_dp_epoch_end(cs_dp *dp, cs_model *m, cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
