/* dp.c: data-parallel training over a cs_dp_ops communicator (dp.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/clock.h"
#include "runtime/dp.h"

#define DEFAULT_BUCKET_BYTES (1 << 20) /* small enough that the first sums start early in the backward */

/* A contiguous range [lo, hi) of the parameter arena whose gradients are
 * summed in one allreduce: consecutive trainable tensors, last first (the
 * order the backward finishes them). */
typedef struct bucket {
    int64_t lo, hi;
    int64_t need, got; /* trainable floats in it; reported final so far */
    int launched;
    void *req;
} bucket;

struct cs_dp {
    cs_dp_ops ops;
    int sync_bn;
    int64_t bucket_floats;
    cs_dp_stats st;
    /* the attached model */
    cs_model *m;
    bucket *b;
    int nb;
    float *grads_base; /* the plan's GRADS arena in host memory (from grads_ready), or NULL */
    float *host;       /* staging copy of the GRADS arena (backends without set_comm) */
    int comm_set;
    cs_error *pass_err; /* during a pass: where an exchange failure goes */
    int pass_failed;
};

static cs_dp *the_dp;

void cs_dp_set(cs_dp *dp) { the_dp = dp; }
cs_dp *cs_dp_get(void) { return the_dp; }
int cs_dp_rank(const cs_dp *dp) { return dp ? dp->ops.rank : 0; }
int cs_dp_world(const cs_dp *dp) { return dp ? dp->ops.world : 1; }
int cs_dp_sync_bn(const cs_dp *dp) { return dp ? dp->sync_bn : 0; }

void cs_dp_stats_get(const cs_dp *dp, cs_dp_stats *st)
{
    if (dp)
        *st = dp->st;
    else
        memset(st, 0, sizeof *st);
}

void cs_dp_describe(const cs_dp *dp, char *buf, size_t size)
{
    snprintf(buf, size, "%d rank%s, %s", cs_dp_world(dp), cs_dp_world(dp) == 1 ? "" : "s",
             cs_dp_sync_bn(dp) ? "synchronised batch norm" : "batch norm per rank");
}

int cs_dp_new(const cs_dp_ops *ops, int sync_bn, int64_t bucket_bytes, cs_dp **out, cs_error *err)
{
    *out = NULL;
    if (!ops || ops->world < 1 || ops->rank < 0 || ops->rank >= ops->world || !ops->allreduce_f64 ||
        !ops->allreduce_i64 || !ops->iallreduce_f32 || !ops->test || !ops->wait || !ops->bcast || !ops->to_root ||
        !ops->abort)
        return cs_error_set(err, CS_ERR_ARG, "data-parallel: an incomplete communicator (rank %d of %d)",
                            ops ? ops->rank : -1, ops ? ops->world : 0);
    if (bucket_bytes < 0)
        return cs_error_set(err, CS_ERR_ARG, "data-parallel: bucket of %lld bytes, expected > 0",
                            (long long)bucket_bytes);
    cs_dp *dp = calloc(1, sizeof *dp);
    if (!dp)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    dp->ops = *ops;
    dp->sync_bn = sync_bn;
    dp->bucket_floats = (bucket_bytes ? bucket_bytes : DEFAULT_BUCKET_BYTES) / 4;
    if (dp->bucket_floats < 1)
        dp->bucket_floats = 1;
    *out = dp;
    return CS_OK;
}

static void detach(cs_dp *dp)
{
    if (dp->m && dp->comm_set) {
        cs_error e2;
        cs_plan_set_comm(dp->m->plan, NULL, &e2);
    }
    free(dp->b);
    free(dp->host);
    dp->b = NULL;
    dp->host = NULL;
    dp->nb = 0;
    dp->m = NULL;
    dp->comm_set = 0;
    dp->grads_base = NULL;
}

void cs_dp_free(cs_dp *dp)
{
    if (!dp)
        return;
    detach(dp);
    if (the_dp == dp)
        the_dp = NULL;
    free(dp);
}

void cs_dp_share(const cs_dp *dp, int N, int *lo, int *hi)
{
    const int w = cs_dp_world(dp), r = cs_dp_rank(dp), q = N / w, e = N % w;
    *lo = r * q + (r < e ? r : e);
    *hi = *lo + q + (r < e);
}

/* ---- the comm the plan calls ---- */

static int comm_allreduce(void *ctx, double *buf, int count, cs_error *err)
{
    cs_dp *dp = ctx;
    dp->st.bn_bytes += 8 * (int64_t)count;
    return dp->ops.allreduce_f64(dp->ops.ctx, buf, count, err);
}

static void drive(cs_dp *dp)
{
    for (int i = 0; i < dp->nb; i++)
        if (dp->b[i].launched && dp->b[i].req)
            dp->ops.test(dp->ops.ctx, dp->b[i].req);
}

static int launch(cs_dp *dp, bucket *b, float *base)
{
    b->launched = 1;
    dp->st.grad_bytes += 4 * (b->hi - b->lo);
    dp->st.buckets++;
    if (dp->ops.iallreduce_f32(dp->ops.ctx, base + b->lo, b->hi - b->lo, &b->req, dp->pass_err)) {
        b->req = NULL;
        dp->pass_failed = 1;
        return CS_ERR;
    }
    return CS_OK;
}

/* The bucket holding arena float `offset` (buckets are sorted by lo, descending). */
static bucket *bucket_of(cs_dp *dp, int64_t offset)
{
    int lo = 0, hi = dp->nb - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (offset < dp->b[mid].lo)
            lo = mid + 1;
        else if (offset >= dp->b[mid].hi)
            hi = mid - 1;
        else
            return &dp->b[mid];
    }
    return NULL;
}

static void comm_grads_ready(void *ctx, float *grads, int64_t offset, int64_t count)
{
    cs_dp *dp = ctx;
    bucket *b = bucket_of(dp, offset);
    if (!b || dp->pass_failed)
        return;
    if (grads)
        dp->grads_base = grads - offset;
    b->got += count;
    if (b->got >= b->need && !b->launched && dp->grads_base)
        launch(dp, b, dp->grads_base);
    drive(dp);
}

int cs_dp_check_device(const cs_dp *dp, const cs_device *dev, cs_error *err)
{
    if (!cs_dp_sync_bn(dp) || cs_device_can_comm(dev))
        return CS_OK;
    return cs_error_set(err, CS_ERR_ARG, "--sync-bn: the %s backend cannot synchronise batch norm over the ranks (it "
                        "cannot exchange statistics inside a pass; the cpu backend can); without --sync-bn its "
                        "gradients are still summed, through the host", cs_device_name(dev));
}

/* ---- attaching a model ---- */

static int by_offset_desc(const void *a, const void *b)
{
    const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x < y) - (x > y);
}

int cs_dp_attach(cs_dp *dp, cs_model *m, cs_error *err)
{
    if (!dp)
        return CS_OK;
    detach(dp);
    if (!m)
        return CS_OK;
    const cs_graph *g = m->g;
    const int nt = cs_graph_n_tensors(g);
    int64_t(*ts)[2] = malloc(sizeof *ts * (size_t)(nt + 1)); /* offset, size of each trainable tensor */
    int n = 0;
    if (!ts)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    for (int t = 0; t < nt; t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind == CS_TENSOR_PARAM && x->needs_grad && x->size > 0) {
            ts[n][0] = x->offset;
            ts[n][1] = x->size;
            n++;
        }
    }
    qsort(ts, (size_t)n, sizeof *ts, by_offset_desc);
    dp->b = calloc((size_t)n + 1, sizeof *dp->b);
    if (!dp->b) {
        free(ts);
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        bucket *cur = dp->nb ? &dp->b[dp->nb - 1] : NULL;
        if (cur && cur->hi - ts[i][0] <= dp->bucket_floats) {
            cur->lo = ts[i][0];
            cur->need += ts[i][1];
        } else {
            dp->b[dp->nb++] = (bucket){.lo = ts[i][0], .hi = ts[i][0] + ts[i][1], .need = ts[i][1]};
        }
    }
    free(ts);
    dp->m = m;
    if (cs_plan_can_comm(m->plan)) {
        cs_comm c = {.ctx = dp, .allreduce = comm_allreduce, .grads_ready = comm_grads_ready,
                     .sync_bn = dp->sync_bn, .loss_scale = 1};
        int rc = cs_plan_set_comm(m->plan, &c, err);
        if (rc) {
            detach(dp);
            return rc;
        }
        dp->comm_set = 1;
    } else if (dp->sync_bn) {
        detach(dp);
        return cs_dp_check_device(dp, m->dev, err);
    } else {
        dp->host = malloc(sizeof(float) * (size_t)(cs_graph_n_params(g) + 1));
        if (!dp->host) {
            detach(dp);
            return cs_error_set(err, CS_ERR_NOMEM, "out of memory for the gradients' host copy");
        }
    }
    return CS_OK;
}

/* ---- one step ---- */

int cs_dp_forward_backward(cs_dp *dp, cs_model *m, int n, int N, int rc, cs_error *err)
{
    const double t0 = cs_now_s();
    if (dp->m != m)
        return cs_error_set(err, CS_ERR_ARG, "data-parallel: the model is not attached (cs_dp_attach)");
    for (int i = 0; i < dp->nb; i++) {
        dp->b[i].got = 0;
        dp->b[i].launched = 0;
        dp->b[i].req = NULL;
    }
    dp->pass_err = err;
    dp->pass_failed = 0;
    const float scale = N > 0 ? (float)n / (float)N : 1;
    if (!rc && dp->comm_set) {
        cs_comm c = {.ctx = dp, .allreduce = comm_allreduce, .grads_ready = comm_grads_ready,
                     .sync_bn = dp->sync_bn, .loss_scale = scale};
        rc = cs_plan_set_comm(m->plan, &c, err);
    }
    if (!rc)
        rc = cs_plan_forward(m->plan, n, CS_FWD_TRAIN, err);
    if (!rc)
        rc = cs_plan_backward(m->plan, n, err);
    if (dp->pass_failed && !rc)
        rc = CS_ERR;
    if (rc && dp->sync_bn) {
        /* the other ranks may be inside a batch norm's exchange this rank
         * will never make: nothing can be matched up any more */
        char line[sizeof err->msg];
        snprintf(line, sizeof line, "%s", err->msg);
        dp->ops.abort(dp->ops.ctx, line);
    }
    /* the gradients the backward did not hand over: all of them where the
     * backend keeps them on a device (staged through the host, scaled
     * here), or those of buckets it never reported (a branch no loss
     * reaches; or this rank failed: its sums are discarded anyway) */
    float *base = dp->grads_base;
    if (!dp->comm_set) {
        const double s0 = cs_now_s();
        const int64_t np = cs_graph_n_params(m->g);
        if (!rc)
            rc = cs_plan_read(m->plan, CS_ARENA_GRADS, 0, np, dp->host, err);
        if (rc) /* (this rank's sums are discarded; it still takes part) */
            memset(dp->host, 0, sizeof(float) * (size_t)np);
        else
            for (int64_t i = 0; i < np; i++)
                dp->host[i] *= scale;
        base = dp->host;
        dp->st.staged_s += cs_now_s() - s0;
    }
    if (!base) { /* set_comm but nothing reported: read the arena like a device's */
        const int64_t np = cs_graph_n_params(m->g);
        if (!dp->host && !(dp->host = malloc(sizeof(float) * (size_t)(np + 1))))
            dp->ops.abort(dp->ops.ctx, "out of memory for the gradients' host copy");
        if (rc || cs_plan_read(m->plan, CS_ARENA_GRADS, 0, np, dp->host, err))
            memset(dp->host, 0, sizeof(float) * (size_t)np);
        base = dp->host;
    }
    for (int i = 0; i < dp->nb; i++)
        if (!dp->b[i].launched && launch(dp, &dp->b[i], base) && !rc)
            rc = CS_ERR;
    const double w0 = cs_now_s();
    for (int i = 0; i < dp->nb; i++)
        if (dp->b[i].req) {
            cs_error e2;
            if (dp->ops.wait(dp->ops.ctx, dp->b[i].req, rc ? &e2 : err) && !rc)
                rc = CS_ERR;
            dp->b[i].req = NULL;
        }
    dp->st.wait_s += cs_now_s() - w0;
    if (!rc && base == dp->host) {
        const double s0 = cs_now_s();
        rc = cs_plan_write(m->plan, CS_ARENA_GRADS, 0, cs_graph_n_params(m->g), dp->host, err);
        dp->st.staged_s += cs_now_s() - s0;
    }
    dp->pass_err = NULL;
    dp->st.steps++;
    dp->st.step_s += cs_now_s() - t0;
    return rc;
}

/* ---- agreeing ---- */

int cs_dp_sum(cs_dp *dp, double *v, int count, cs_error *err)
{
    return dp->ops.allreduce_f64(dp->ops.ctx, v, count, err);
}

int cs_dp_bcast(cs_dp *dp, void *buf, int64_t bytes, cs_error *err)
{
    return dp->ops.bcast(dp->ops.ctx, buf, bytes, 0, err);
}

int cs_dp_agree(cs_dp *dp, int rc, cs_error *err)
{
    if (!dp)
        return rc;
    const int rank = dp->ops.rank, world = dp->ops.world;
    int64_t v[2] = {rc ? rank : INT_MAX, rc != 0};
    cs_error e2;
    if (dp->ops.allreduce_i64(dp->ops.ctx, &v[0], 1, CS_DP_MIN, &e2) ||
        dp->ops.allreduce_i64(dp->ops.ctx, &v[1], 1, CS_DP_SUM, &e2)) {
        dp->ops.abort(dp->ops.ctx, e2.msg);
        return CS_ERR;
    }
    if (v[1] == 0)
        return CS_OK;
    const int first = (int)v[0];
    char text[sizeof err->msg];
    snprintf(text, sizeof text, "%s", rank == first ? err->msg : "");
    if (first != 0 && dp->ops.to_root(dp->ops.ctx, text, sizeof text, first, &e2)) {
        dp->ops.abort(dp->ops.ctx, e2.msg);
        return CS_ERR;
    }
    int code = rc ? rc : CS_ERR;
    if (rank != 0)
        return cs_error_set(err, code, "rank %d of %d failed", first, world);
    if (v[1] == world)
        return cs_error_set(err, code, "%s", text);
    return cs_error_set(err, code, "rank %d of %d: %s", first, world, text);
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ULL;
    return h;
}

int cs_dp_epoch_end(cs_dp *dp, cs_model *m, cs_error *err)
{
    const cs_graph *g = m->g;
    const int64_t np = cs_graph_n_params(g), nb = cs_graph_n_buffers(g);
    float *p = malloc(sizeof(float) * (size_t)(np + nb + 1));
    double *acc = malloc(sizeof(double) * (size_t)(nb + 1));
    int rc = p && acc ? cs_model_read_params(m, p, p + np, err) : cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    if (!rc && !dp->sync_bn && nb) {
        /* each rank's running statistics followed its own rows: the mean of them */
        for (int64_t i = 0; i < nb; i++)
            acc[i] = p[np + i];
        if (!(rc = cs_dp_sum(dp, acc, (int)nb, err))) { /* nb: a few thousand channels */
            for (int64_t i = 0; i < nb; i++)
                p[np + i] = (float)(acc[i] / dp->ops.world);
            rc = cs_plan_write(m->plan, CS_ARENA_BUFFERS, 0, nb, p + np, err);
        }
    }
    int64_t h[2] = {0, 0};
    if (!rc) {
        h[0] = (int64_t)fnv(p, sizeof(float) * (size_t)(np + nb), 0xcbf29ce484222325ULL);
        h[1] = h[0];
    }
    free(p);
    free(acc);
    rc = cs_dp_agree(dp, rc, err);
    if (rc)
        return rc;
    int64_t root = h[0];
    if ((rc = cs_dp_bcast(dp, &root, sizeof root, err)))
        return rc;
    if (root != h[0])
        rc = cs_error_set(err, CS_ERR, "its weights differ from rank 0's after the same steps (the gradient sums "
                          "were not the same bits on every rank)");
    return cs_dp_agree(dp, rc, err);
}
