/* run.c: a class-incremental experiment, state after state: build the
 * state's network, carry the previous model over, train, evaluate, save. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "cilscale/clock.h"
#include "runtime/atomic.h"
#include "runtime/checkpoint.h"
#include "runtime/dp.h"
#include "cilscale/cil.h"
#include "runtime/experiment.h"
#include "runtime/image.h"
#include "runtime/plugins_conf.h"
#include "cilscale/policy.h"
#include "runtime/scenario.h"

typedef struct run {
    const cs_experiment *e;
    const cs_run_callbacks *cb;
    cs_run_result *res;
    cs_dataset *train, *test;
    cs_scenario sc;
    const cs_plugin *arch_p, *cil_p, *be_p;
    const cs_cil_iface *cil;
    void *cil_ctx;
    cs_device *dev;
    cs_arch_config cfg; /* the scaled network; n_classes set per state */
    int64_t counted;          /* the parameters the budget was held to (model.count) */
    cs_arch_config counted_cfg; /* the configuration counted */
    cs_image_input in; /* input size; training and evaluation augmentations */
    /* the previous state's model, on the host */
    cs_graph *prev_g;
    float *prev_params, *prev_buffers;
    /* this state's */
    cs_model m;
    cs_cil_net net;
    int state;
    float *feat; /* batch x F */
    double t_start;
    double seconds_before; /* wall time of the run before this resume */
    cs_epoch_row *epochs;  /* every finished epoch, for epochs.csv */
    int64_t *per, *confusion; /* the last evaluation: per label hits and images (2k), confusion (k x k) */
    int eval_k;
    int n_epochs, cap_epochs;
    /* a data-parallel run (NULL: one rank): every rank trains; rank 0
     * (lead) alone logs, holds the folder's lock and writes files */
    cs_dp *dp;
    int lead;
    char msg[512];
} run;

static void say(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    if (r->lead && r->cb && r->cb->log)
        r->cb->log(r->cb->ctx, r->msg);
}

static void iso_now(char *buf, size_t size);

/* Every rank's rc agreed on (dp.h: rank 0's err names the first failing
 * rank): called by all ranks at the same points, so that no rank waits on an
 * exchange a failed one will never make. One rank: rc as it is. */
static int agree(run *r, int rc, cs_error *err) { return r->dp ? cs_dp_agree(r->dp, rc, err) : rc; }
static int add_epoch(run *r, int s, int ep, double lr, const cs_epoch_stats *es, cs_error *err);
static int write_state_classes(run *r, int s, cs_error *err);

static uint64_t mix(uint64_t seed, uint64_t a) { return seed * 0x9e3779b97f4a7c15ULL + a * 0xbf58476d1ce4e5b9ULL + 1; }

/* ---- services for the CIL plugin ---- */

static int host_read_param(void *core, int tensor, float *dst, cs_error *err)
{
    run *r = core;
    const cs_tensor *t = cs_graph_tensor(r->m.g, tensor);
    return cs_plan_read(r->m.plan, CS_ARENA_PARAMS, t->offset, t->size, dst, err);
}

static int host_write_param(void *core, int tensor, const float *src, cs_error *err)
{
    run *r = core;
    const cs_tensor *t = cs_graph_tensor(r->m.g, tensor);
    return cs_plan_write(r->m.plan, CS_ARENA_PARAMS, t->offset, t->size, src, err);
}

static int host_class_means(void *core, int first, int count, float *out, cs_error *err)
{
    run *r = core;
    /* memoryless: only this state's classes have images to look at */
    if (first < r->sc.first[r->state] || count < 1 || first + count > r->sc.first[r->state] + r->sc.count[r->state])
        return cs_error_set(err, CS_ERR_ARG, "class means of labels [%d, %d): state %d only has images of [%d, %d)",
                            first, first + count, r->state + 1, r->sc.first[r->state],
                            r->sc.first[r->state] + r->sc.count[r->state]);
    int F = cs_graph_tensor(r->m.g, r->m.features)->shape[1], B = r->m.batch;
    int *map = malloc(sizeof(int) * (size_t)r->sc.n_classes), *idx = NULL, *cnt = calloc((size_t)count, sizeof(int));
    float *img = malloc(sizeof(float) * (size_t)B * (size_t)cs_tensor_row(cs_graph_tensor(r->m.g, r->m.input)));
    float *lab = malloc(sizeof(float) * (size_t)B);
    cs_batcher *b = NULL;
    int rc = CS_OK, n;
    if (!map || !cnt || !img || !lab) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < r->sc.n_classes; i++)
        map[i] = -1;
    for (int l = first; l < first + count; l++)
        map[r->sc.order[l]] = l;
    int ni = cs_scenario_indices(r->train, map, r->e->train_per_class, &idx);
    b = cs_batcher_new(r->train, idx, ni, B, &r->in.eval, 0, map, 0, err);
    if (!b) {
        rc = CS_ERR;
        goto out;
    }
    memset(out, 0, sizeof(float) * (size_t)count * (size_t)F);
    double *acc = calloc((size_t)count * (size_t)F, sizeof(double));
    if (!acc) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        goto out;
    }
    while ((n = cs_batcher_next(b, img, lab)) > 0) {
        if ((rc = cs_plan_set_input(r->m.plan, r->m.input, img, n, err)) ||
            (rc = cs_plan_forward(r->m.plan, n, 0, err)) ||
            (rc = cs_plan_read_tensor(r->m.plan, r->m.features, r->feat, n, err)))
            break;
        for (int i = 0; i < n; i++) {
            const float *f = r->feat + (size_t)i * F;
            double s = 0;
            for (int j = 0; j < F; j++)
                s += (double)f[j] * f[j];
            double inv = s > 0 ? 1 / sqrt(s) : 0;
            int c = (int)lab[i] - first;
            cnt[c]++;
            for (int j = 0; j < F; j++)
                acc[(size_t)c * F + j] += f[j] * inv;
        }
    }
    for (int c = 0; c < count && !rc; c++)
        for (int j = 0; j < F; j++)
            out[(size_t)c * F + j] = cnt[c] ? (float)(acc[(size_t)c * F + j] / cnt[c]) : 0;
    free(acc);
out:
    cs_batcher_free(b);
    free(map);
    free(idx);
    free(cnt);
    free(img);
    free(lab);
    return rc;
}

/* Feeds the previous model's features of the batch (LUCIR's f_old(x)). */
static int old_features_hook(void *ctx, cs_model *m, int n, cs_error *err)
{
    run *r = ctx;
    int rc = cs_plan_forward(m->plan, n, CS_FWD_FROZEN, err);
    if (!rc)
        rc = cs_plan_read_tensor(m->plan, m->features, r->feat, n, err);
    if (!rc)
        rc = cs_plan_set_input(m->plan, r->net.old_features, r->feat, n, err);
    return rc;
}

/* ---- carrying a model from one state's graph to the next ---- */

/* Copies every parameter and buffer of (pg, pp, pb) into (g, p, b) by name:
 * equal shapes whole; a classifier with more rows (more classes) its first
 * rows. Tensors only g has keep what they hold. */
static void carry_over(const cs_graph *pg, const float *pp, const float *pb, const cs_graph *g, float *p, float *b)
{
    for (int i = 0; i < cs_graph_n_tensors(g); i++) {
        const cs_tensor *t = cs_graph_tensor(g, i);
        if (t->kind != CS_TENSOR_PARAM && t->kind != CS_TENSOR_BUFFER)
            continue;
        int j = cs_graph_find(pg, t->name);
        if (j < 0)
            continue;
        const cs_tensor *u = cs_graph_tensor(pg, j);
        if (u->kind != t->kind || u->ndim != t->ndim)
            continue;
        int same_tail = 1;
        for (int d = 1; d < t->ndim; d++)
            same_tail &= u->shape[d] == t->shape[d];
        if (!same_tail || u->shape[0] > t->shape[0])
            continue;
        const float *src = (u->kind == CS_TENSOR_PARAM ? pp : pb) + u->offset;
        float *dst = (t->kind == CS_TENSOR_PARAM ? p : b) + t->offset;
        memcpy(dst, src, sizeof(float) * (size_t)u->size);
    }
}

/* Builds state s's network into r->m / r->net (graph only). */
static int build_state(run *r, int s, int with_plugin, cs_error *err)
{
    cs_cil_state st = {s, r->sc.n_states, r->sc.first[s], r->sc.count[s]};
    cs_arch_config cfg = r->cfg;
    cfg.n_classes = st.n_old + st.n_new;
    cfg.head = r->cil->head;
    cfg.no_last_relu = r->cil->no_last_relu;
    int rc = cs_model_build(&r->m, r->arch_p->iface, r->arch_p->name, &cfg, r->e->batch, r->train->c, r->in.h, r->in.w,
                            err);
    if (rc)
        return rc;
    memset(&r->net, 0, sizeof r->net);
    r->net.g = r->m.g;
    r->net.input = r->m.input;
    r->net.labels = r->m.labels;
    r->net.features = r->m.features;
    r->net.logits = r->m.logits;
    r->net.xent = r->m.xent;
    r->net.head_weight = cs_graph_node(r->m.g, cs_graph_tensor(r->m.g, r->m.logits)->producer)->in[1];
    r->net.old_features = -1;
    if (r->cil->needs_old_features && s > 0)
        r->net.old_features = cs_input_vec(r->m.g, "old_features", cs_graph_tensor(r->m.g, r->m.features)->shape[1]);
    if ((rc = cs_graph_status(r->m.g, err)))
        return rc;
    if (with_plugin && r->cil->build_state && (rc = r->cil->build_state(r->cil_ctx, r->m.g, &r->net, &st, err)))
        return rc;
    return CS_OK;
}

/* Keeps the model of the state just trained on the host, as the next state's "previous". */
static int keep_previous(run *r, cs_error *err)
{
    float *p = malloc(sizeof(float) * (size_t)(cs_graph_n_params(r->m.g) + 1));
    float *b = malloc(sizeof(float) * (size_t)(cs_graph_n_buffers(r->m.g) + 1));
    if (!p || !b) {
        free(p);
        free(b);
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    }
    int rc = cs_model_read_params(&r->m, p, b, err);
    if (rc) {
        free(p);
        free(b);
        return rc;
    }
    cs_graph_free(r->prev_g);
    free(r->prev_params);
    free(r->prev_buffers);
    r->prev_g = r->m.g; /* the graph moves to prev; the plan is released */
    r->m.g = NULL;
    r->prev_params = p;
    r->prev_buffers = b;
    return CS_OK;
}

static void free_state(run *r)
{
    cs_plan_release(r->m.plan);
    r->m.plan = NULL;
    cs_graph_free(r->m.g);
    r->m.g = NULL;
}

typedef struct batch_ctx {
    run *r;
    int epoch, epochs;
} batch_ctx;

static int on_batch(void *ctx, int bi, int nb, const cs_epoch_stats *st)
{
    batch_ctx *bc = ctx;
    const cs_run_callbacks *cb = bc->r->cb;
    return cb && cb->batch ? cb->batch(cb->ctx, bc->r->state, bc->r->sc.n_states, bc->epoch, bc->epochs, bi, nb, st)
                           : 0;
}

static int save_model(run *r, const char *name, cs_error *err)
{
    char path[PATH_MAX + 64], st[16];
    snprintf(path, sizeof path, "%s/%s", r->e->out, name);
    snprintf(st, sizeof st, "%d", r->state);
    float *p = malloc(sizeof(float) * (size_t)(cs_graph_n_params(r->m.g) + cs_graph_n_buffers(r->m.g) + 1));
    if (!p)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    /* model label i is data-set class order[i]: without it the classifier's rows mean nothing */
    char order[4096];
    size_t u = 0;
    for (int i = 0; i < r->sc.n_classes && u < sizeof order; i++)
        u += (size_t)snprintf(order + u, sizeof order - u, "%s%d", i ? "," : "", r->sc.order[i]);
    const char *extra[] = {"state", st, "cil", r->cil_p->name, "class_order", order, "run_id", r->res->run_id, NULL};
    cs_model_meta mm;
    const char *const *meta = cs_model_meta_fill(&mm, &r->m, &r->in.eval, extra);
    int rc = cs_model_read_params(&r->m, p, p + cs_graph_n_params(r->m.g), err);
    if (!rc)
        rc = cs_checkpoint_save(path, r->m.g, p, p + cs_graph_n_params(r->m.g), meta, err);
    free(p);
    return rc;
}

/* Copies the previous state's model into this state's network and into the
 * frozen arenas (the previous model in this state's layout). The first state
 * has no previous model: its parameters are only read. */
static int carry_previous(run *r, cs_error *err)
{
    cs_graph *g = r->m.g;
    float *p = malloc(sizeof(float) * (size_t)(cs_graph_n_params(g) + cs_graph_n_buffers(g) + 1));
    int rc = p ? cs_model_read_params(&r->m, p, p + cs_graph_n_params(g), err)
               : cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    if (!rc && r->prev_g) {
        carry_over(r->prev_g, r->prev_params, r->prev_buffers, g, p, p + cs_graph_n_params(g));
        rc = cs_model_write_params(&r->m, p, p + cs_graph_n_params(g), err);
        if (!rc)
            rc = cs_plan_write(r->m.plan, CS_ARENA_FROZEN_PARAMS, 0, cs_graph_n_params(g), p, err);
        if (!rc && cs_graph_n_buffers(g))
            rc = cs_plan_write(r->m.plan, CS_ARENA_FROZEN_BUFFERS, 0, cs_graph_n_buffers(g), p + cs_graph_n_params(g), err);
    }
    free(p);
    return rc;
}

/* State s's network on the backend, the previous model carried over, and the
 * CIL plugin told the state begins. */
static int prepare_state(run *r, int s, const cs_cil_state *st, cs_error *err)
{
    cs_cil_host host = {r, host_class_means, host_read_param, host_write_param};
    int rc = build_state(r, s, 1, err);
    if (!rc)
        rc = cs_model_prepare(&r->m, r->dev, mix(r->e->seed, 1), err);
    if (!rc)
        rc = carry_previous(r, err);
    if (!rc && r->cil->begin_state)
        rc = r->cil->begin_state(r->cil_ctx, &host, &r->net, st, err);
    return rc;
}

/* Trains state s on its new classes and fills sr's training fields. Returns
 * 1 when the batch callback stopped it. */
static int train_state(run *r, int s, const cs_cil_state *st, cs_state_result *sr, cs_error *err)
{
    const cs_experiment *e = r->e;
    int64_t frozen[8][2];
    int n_frozen = r->cil->frozen_ranges ? r->cil->frozen_ranges(r->cil_ctx, &r->net, st, frozen, 8) : 0;
    int *map = malloc(sizeof(int) * (size_t)r->sc.n_classes), *idx = NULL;
    cs_batcher *tb = NULL;
    int rc = CS_OK, stopped = 0;
    int epochs = s == 0 && e->first_epochs ? e->first_epochs : e->epochs;
    double lr = s == 0 && e->first_lr > 0 ? e->first_lr : e->lr;
    cs_schedule sched;
    if (!map) {
        rc = agree(r, cs_error_set(err, CS_ERR_NOMEM, "out of memory"), err);
        goto out;
    }
    cs_scenario_label_map(&r->sc, s, 1, map);
    int ni = cs_scenario_indices(r->train, map, e->train_per_class, &idx);
    if (r->dp) /* every rank draws the same global batches and keeps its rows */
        tb = cs_batcher_new_shard(r->train, idx, ni, e->batch, &r->in.train, 1, map, mix(e->seed, 100 + (uint64_t)s),
                                  cs_dp_rank(r->dp), cs_dp_world(r->dp), err);
    else
        tb = cs_batcher_new(r->train, idx, ni, e->batch, &r->in.train, 1, map, mix(e->seed, 100 + (uint64_t)s), err);
    free(idx);
    if (!tb)
        rc = CS_ERR;
    if (!rc)
        rc = cs_schedule_parse(e->schedule, (float)lr, epochs, &sched, err);
    if ((rc = agree(r, rc, err)))
        goto out;
    memset(sr, 0, sizeof *sr);
    sr->state = s;
    sr->n_new = st->n_new;
    sr->n_seen = st->n_old + st->n_new;
    double t0 = cs_now_s();
    batch_ctx bc = {r, 0, epochs};
    for (int ep = 0; ep < epochs && !stopped && !rc; ep++) {
        cs_sgd sgd = {.lr = cs_schedule_lr(&sched, ep), .momentum = (float)e->momentum,
                      .weight_decay = (float)e->weight_decay, .nesterov = e->nesterov,
                      .frozen = (const int64_t(*)[2])frozen, .n_frozen = n_frozen};
        cs_epoch_stats es;
        bc.epoch = ep;
        int k = cs_model_train_epoch(&r->m, tb, &sgd, r->net.old_features >= 0 ? old_features_hook : NULL, r, on_batch,
                                     &bc, &es, err);
        if (k < 0) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            rc = cs_error_set(err, k, "state %d, epoch %d/%d: %s", s, ep + 1, epochs, why);
        }
        stopped = k == 1;
        sr->train_loss = es.loss;
        if (k == 0)
            rc = add_epoch(r, s, ep, sgd.lr, &es, err);
        if (!rc && (rc = cs_model_check_weights(&r->m, err))) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            rc = cs_error_set(err, rc, "state %d, epoch %d/%d: %s", s, ep + 1, epochs, why);
        }
        if (k >= 0) /* (a failed epoch was agreed on inside) */
            rc = agree(r, rc, err);
    }
    sr->train_seconds = cs_now_s() - t0;
out:
    cs_batcher_free(tb);
    free(map);
    return rc ? rc : stopped;
}

/* After a stop: the model so far, for a look at it (--resume restarts the state). */
static void save_interrupted(run *r, int s)
{
    cs_error e2;
    if (!r->lead)
        return;
    if (save_model(r, "interrupted.safetensors", &e2))
        say(r, "could not save the interrupted model: %s", e2.msg);
    else
        say(r, "stopped in state %d; the model so far is in %s/interrupted.safetensors; "
               "--resume restarts state %d", s, r->e->out, s);
}

/* per_class-S.csv and confusion-S.csv: the last evaluation (state s). */
static int write_state_classes(run *r, int s, cs_error *err)
{
    if (!r->per || !r->confusion)
        return CS_OK;
    return cs_results_write_classes(r->e->out, s, r->eval_k, r->sc.order, r->per, r->per + r->eval_k, r->confusion,
                                    err);
}

/* Keeps epoch ep of state s for epochs.csv. */
static int add_epoch(run *r, int s, int ep, double lr, const cs_epoch_stats *es, cs_error *err)
{
    if (r->n_epochs == r->cap_epochs) {
        int cap = r->cap_epochs ? 2 * r->cap_epochs : 64;
        cs_epoch_row *v = realloc(r->epochs, sizeof *v * (size_t)cap);
        if (!v)
            return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        r->epochs = v;
        r->cap_epochs = cap;
    }
    cs_epoch_row *e = &r->epochs[r->n_epochs++];
    memset(e, 0, sizeof *e);
    e->state = s;
    e->epoch = ep;
    e->lr = lr;
    e->loss = es->loss;
    e->train_top1 = es->seen ? (double)es->top1 / (double)es->seen : 0;
    e->images_per_s = es->seconds > 0 ? (double)es->seen / es->seconds : 0;
    e->seconds = es->seconds;
    e->n_terms = es->n_terms < CS_EPOCH_TERMS ? es->n_terms : CS_EPOCH_TERMS;
    for (int t = 0; t < e->n_terms; t++) {
        e->term[t] = es->term[t];
        e->weight[t] = es->weight[t];
        snprintf(e->term_name[t], sizeof e->term_name[t], "%s", es->term_name[t] ? es->term_name[t] : "loss");
    }
    return CS_OK;
}

/* Evaluates state s's model on every class seen so far: sr's top-1, top-5
 * and top-1 on each state's classes. */
static int evaluate_state(run *r, int s, cs_state_result *sr, cs_error *err)
{
    const cs_experiment *e = r->e;
    double t0 = cs_now_s();
    int *map = malloc(sizeof(int) * (size_t)r->sc.n_classes), *tidx = NULL, k = sr->n_seen;
    int64_t *per = NULL;
    cs_batcher *eb = NULL;
    cs_epoch_stats es;
    int rc = CS_OK;
    if (!map) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        goto out;
    }
    cs_scenario_label_map(&r->sc, s, 0, map);
    int nt = cs_scenario_indices(r->test, map, e->test_per_class, &tidx);
    eb = cs_batcher_new(r->test, tidx, nt, e->batch, &r->in.eval, 0, map, 0, err);
    free(tidx);
    per = calloc(2 * (size_t)k, sizeof(int64_t));
    free(r->confusion);
    r->confusion = calloc((size_t)k * (size_t)k, sizeof(int64_t));
    if (!eb || !per || !r->confusion || (rc = cs_model_evaluate_ex(&r->m, eb, 0, &es, per, r->confusion, err))) {
        if (!rc) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", eb ? "out of memory" : err->msg);
            rc = cs_error_set(err, CS_ERR, "evaluating state %d: %s", s, why);
        }
        goto out;
    }
    /* top-k of k or fewer classes is 100% whatever the model does: not applicable */
    sr->top1 = k <= 1 ? NAN : es.seen ? (double)es.top1 / (double)es.seen : 0;
    sr->top5 = k <= 5 ? NAN : es.seen ? (double)es.top5 / (double)es.seen : 0;
    for (int j = 0; j <= s; j++) {
        int64_t hit = 0, cnt = 0;
        for (int l = r->sc.first[j]; l < r->sc.first[j] + r->sc.count[j]; l++) {
            hit += per[l];
            cnt += per[k + l];
        }
        sr->group_top1[j] = cnt ? (double)hit / (double)cnt : 0;
    }
    sr->eval_seconds = cs_now_s() - t0;
    char t1[16] = "n/a", t5[16] = "n/a";
    if (!isnan(sr->top1))
        snprintf(t1, sizeof t1, "%.2f%%", 100 * sr->top1);
    if (!isnan(sr->top5))
        snprintf(t5, sizeof t5, "%.2f%%", 100 * sr->top5);
    say(r, "state %d (%d/%d): %d classes seen: top-1 %s, top-5 %s (train %.0fs, loss %.4f)", s, s + 1, r->sc.n_states,
        sr->n_seen, t1, t5, sr->train_seconds, sr->train_loss);
out:
    cs_batcher_free(eb);
    free(r->per);
    r->per = per; /* kept for per_class-K.csv */
    r->eval_k = k;
    free(map);
    return rc;
}

/* Saves state s's model and the results so far, and keeps the model as the
 * next state's previous one. */
static int save_state(run *r, int s, cs_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "state-%d.safetensors", s);
    int rc = r->lead ? save_model(r, name, err) : CS_OK;
    if (!rc) {
        r->res->n_states = s + 1;
        r->res->seconds = r->seconds_before + (cs_now_s() - r->t_start);
        iso_now(r->res->ended, sizeof r->res->ended);
        if (r->lead)
            rc = cs_results_write(r->e->out, r->res, err);
        if (!rc && r->lead)
            rc = cs_epochs_write(r->e->out, r->epochs, r->n_epochs, err);
        if (!rc && r->lead)
            rc = write_state_classes(r, s, err);
    }
    if (!rc)
        rc = keep_previous(r, err);
    return agree(r, rc, err);
}

/* One state: prepare, train, evaluate, save. Returns 1 when stopped (after
 * saving the model so far as interrupted.safetensors). */
static int run_state(run *r, int s, cs_error *err)
{
    cs_cil_state st = {s, r->sc.n_states, r->sc.first[s], r->sc.count[s]};
    cs_state_result *sr = &r->res->states[s];
    r->state = s;
    int rc = agree(r, prepare_state(r, s, &st, err), err);
    if (!rc && (rc = train_state(r, s, &st, sr, err)) == 1)
        save_interrupted(r, s);
    if (!rc)
        rc = agree(r, evaluate_state(r, s, sr, err), err);
    if (!rc)
        rc = save_state(r, s, err);
    return rc;
}

/* The plugin an experiment key names, or NULL with "key: unknown ..." in err. */
static const cs_plugin *need(const cs_registry *reg, int kind, const char *name, const char *key, cs_error *err)
{
    const cs_plugin *p = cs_plugin_lookup(reg, kind, name, err);
    if (!p) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        cs_error_set(err, CS_ERR_ARG, "%s: %s", key, why);
    }
    return p;
}

/* setup, step 1: the plugins the experiment names. */
static int find_plugins(run *r, const cs_registry *reg, const cs_plugin **pol, cs_error *err)
{
    const cs_experiment *e = r->e;
    *pol = NULL;
    if (!(r->arch_p = need(reg, CS_KIND_ARCH, e->arch, "model.arch", err)) ||
        !(r->cil_p = need(reg, CS_KIND_CIL, e->cil, "cil.algorithm", err)) ||
        !(r->be_p = need(reg, CS_KIND_BACKEND, e->backend, "backend.name", err)))
        return CS_ERR_ARG;
    if (!e->manual && !(*pol = need(reg, CS_KIND_POLICY, e->policy, "model.policy", err)))
        return CS_ERR_ARG;
    r->cil = r->cil_p->iface;
    return CS_OK;
}

/* setup, step 2: the CIL algorithm's context, given its cil.* options. */
static int configure_cil(run *r, cs_error *err)
{
    const cs_experiment *e = r->e;
    int rc = r->cil->create(&r->cil_ctx, err);
    if (rc)
        return rc;
    for (int i = 0; i < e->n_cil_opts; i++) {
        const char *key = e->cil_keys[i], *dot = strchr(key, '.');
        if (dot) { /* another algorithm's group: not ours to read */
            if ((size_t)(dot - key) != strlen(e->cil) || strncmp(key, e->cil, (size_t)(dot - key)))
                continue;
            key = dot + 1;
        }
        if (!r->cil->option)
            return cs_error_set(err, CS_ERR_ARG, "cil.%s: %s takes no options", e->cil_keys[i], e->cil);
        cs_error e2;
        if (r->cil->option(r->cil_ctx, key, e->cil_values[i], &e2))
            return cs_error_set(err, CS_ERR_ARG, "cil.%s: %s", e->cil_keys[i], e2.msg);
    }
    if (r->cil->describe) {
        char d[256];
        r->cil->describe(r->cil_ctx, d, sizeof d);
        say(r, "%s", d);
    }
    return CS_OK;
}

/* setup, step 3: the schedule's check (before the slow data load), both
 * splits and the class order. */
static int load_data(run *r, cs_data_format fmt, cs_error *err)
{
    const cs_experiment *e = r->e;
    cs_schedule sched;
    int rc;
    if ((rc = cs_schedule_parse(e->schedule, (float)e->lr, e->epochs, &sched, err))) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return cs_error_set(err, rc, "train.%s", why);
    }
    cs_image_set_max_pixels((size_t)e->max_pixels);
    if ((rc = cs_dataset_load(fmt, e->data_path, 1, e->image_size, 0, &r->train, err)) ||
        (rc = cs_dataset_load(fmt, e->data_path, 0, e->image_size, r->train->c, &r->test, err)))
        return rc;
    if (r->test->n_classes != r->train->n_classes)
        return cs_error_set(err, CS_ERR_ARG, "%s: the test split has %d classes, the training split %d",
                            e->data_path, r->test->n_classes, r->train->n_classes);
    if (e->n_order && e->n_order != r->train->n_classes)
        return cs_error_set(err, CS_ERR_ARG, "scenario.order: %d classes listed, the data set has %d", e->n_order,
                            r->train->n_classes);
    return cs_scenario_make(r->train->n_classes, e->states, e->first, e->n_order ? e->order : NULL, e->seed, &r->sc,
                            err);
}

/* What model.count names: the network trained (head, classes, channels and
 * stem of the run), or the authors' scripts' count (models/scaler.py: 3-channel
 * input, torchvision stem, linear head with bias, 100 or 1000 classes). */
static int count_base(const cs_experiment *e, const cs_arch_config *trained, cs_arch_config *counted, cs_error *err)
{
    *counted = *trained;
    if (!strcmp(e->count, "trained"))
        return CS_OK;
    if (strcmp(e->count, "authors-100") && strcmp(e->count, "authors-1000"))
        return cs_error_set(err, CS_ERR_ARG, "model.count '%s': expected trained, authors-100 or authors-1000",
                            e->count);
    counted->in_channels = 3;
    counted->stem = CS_STEM_IMAGENET;
    counted->head = CS_HEAD_LINEAR;
    counted->n_classes = strcmp(e->count, "authors-100") ? 1000 : 100;
    return CS_OK;
}

/* setup, step 4: the network, scaled for the classifier of the last state. */
static int scale_network(run *r, const cs_plugin *pol, cs_scale_result *net, cs_error *err)
{
    const cs_experiment *e = r->e;
    cs_stem stem;
    cs_convention conv;
    int rc;
    if (!strcmp(e->stem, "auto"))
        stem = cs_stem_auto(r->train->h);
    else if (cs_stem_parse(e->stem, &stem))
        return cs_error_set(err, CS_ERR_ARG, "model.stem '%s': expected imagenet, small or auto", e->stem);
    if (cs_convention_parse(e->convention, &conv))
        return cs_error_set(err, CS_ERR_ARG, "model.convention '%s': expected authors or cilscale-0.1",
                            e->convention);
    if (strcmp(e->resolution, "policy") && strcmp(e->resolution, "keep"))
        return cs_error_set(err, CS_ERR_ARG, "model.resolution '%s': expected policy or keep", e->resolution);
    const cs_arch_iface *arch = r->arch_p->iface;
    cs_arch_config trained = {.in_channels = r->train->c, .n_classes = r->train->n_classes, .stem = stem,
                              .head = r->cil->head, .convention = conv};
    cs_scale_request req = {.arch_name = r->arch_p->name, .arch = arch, .policy_name = e->policy,
                            .budget = e->manual ? INT64_MAX : e->budget};
    if ((rc = count_base(e, &trained, &req.base, err)))
        return rc;
    if (e->manual) {
        int depths[CS_MAX_STAGES];
        if (e->n_depths && e->n_depths != arch->n_stages)
            return cs_error_set(err, CS_ERR_ARG, "model.depths: %d stages given, %s has %d", e->n_depths,
                                r->arch_p->name, arch->n_stages);
        if (e->n_depths)
            memcpy(depths, e->depths, sizeof(int) * (size_t)e->n_depths);
        else
            cs_arch_depths_for(arch, e->depth, cs_convention_depths(conv), depths);
        if ((rc = cs_policy_fill(&req, e->width, depths, net, err)))
            return rc;
        net->d = e->n_depths ? (double)cs_arch_blocks(arch, depths) / cs_arch_ref_blocks(arch) : e->depth;
        net->resolution = 1;
    } else if (e->n_depths) { /* the widest network with these depths under the budget */
        if (e->n_depths != arch->n_stages)
            return cs_error_set(err, CS_ERR_ARG, "model.depths: %d stages given, %s has %d", e->n_depths,
                                r->arch_p->name, arch->n_stages);
        if ((rc = cs_policy_widest(&req, e->depths, net, err))) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return cs_error_set(err, rc, "model.depths: %s", why);
        }
        net->d = (double)cs_arch_blocks(arch, e->depths) / cs_arch_ref_blocks(arch);
    } else if ((rc = ((const cs_policy_iface *)pol->iface)->scale(&req, net, err))) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return cs_error_set(err, rc, "model: %s", why);
    }
    r->counted = net->params;
    r->counted_cfg = req.base;
    if (strcmp(e->count, "trained")) { /* the same w and depths, counted as trained */
        req.base = trained;
        double d = net->d, res = net->resolution, phi = net->phi;
        int depths[CS_MAX_STAGES];
        memcpy(depths, net->cfg.depths, sizeof depths);
        if ((rc = cs_policy_fill(&req, net->w, depths, net, err)))
            return rc;
        net->d = d, net->resolution = res, net->phi = phi;
    }
    if (!strcmp(e->resolution, "keep"))
        net->resolution = 1;
    r->cfg = net->cfg;
    cs_image_input_for(r->train, net->resolution, e->augment, &r->in);
    return CS_OK;
}

static void iso_now(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* "Intel(R) Xeon(R) Processor, 2 CPUs" from /proc/cpuinfo where there is one. */
static void host_name(char *buf, size_t size)
{
    char line[512], model[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && !model[0] && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "Processor", 9) ||
                      !strncmp(line, "cpu model", 9))) {
            snprintf(model, sizeof model, "%s", colon + 2);
            model[strcspn(model, "\n")] = '\0';
        }
    }
    if (f)
        fclose(f);
    snprintf(buf, size, "%s, %ld CPUs", model[0] ? model : "unknown CPU", sysconf(_SC_NPROCESSORS_ONLN));
}

/* setup, step 5: what results.json says of the run before any state. */
static void describe_run(run *r, const cs_scale_result *net)
{
    const cs_experiment *e = r->e;
    const cs_arch_iface *arch = r->arch_p->iface;
    cs_run_result *res = r->res;
    snprintf(res->arch, sizeof res->arch, "%s", r->arch_p->name);
    snprintf(res->policy, sizeof res->policy, "%s", e->manual ? "none" : e->n_depths ? "widest" : e->policy);
    snprintf(res->cil, sizeof res->cil, "%s", r->cil_p->name);
    snprintf(res->backend, sizeof res->backend, "%s", r->be_p->name);
    snprintf(res->version, sizeof res->version, "%s", CS_VERSION);
    snprintf(res->data, sizeof res->data, "%s:%s", e->data_format, e->data_path);
    char how[96] = "", depths[96] = "";
    if (!e->manual) { /* "psi 1M " */
        cs_budget_short(e->budget, depths, sizeof depths);
        snprintf(how, sizeof how, "%s %s ", res->policy, depths);
    }
    for (int i = 0, u = 0; i < arch->n_stages && u < (int)sizeof depths; i++)
        u += snprintf(depths + u, sizeof depths - (size_t)u, "%s%d", i ? "," : "", net->cfg.depths[i]);
    /* "lucir psi 1M resnet18 w=0.445 [1,1,1,1] seed 1": what was trained, at a glance */
    snprintf(res->label, sizeof res->label, "%s %s%s w=%.3g [%s]%s seed %llu", res->cil, how, res->arch, net->w,
             depths, strcmp(e->resolution, "keep") ? "" : " keep-res", (unsigned long long)e->seed);
    res->budget = e->manual ? 0 : e->budget;
    res->params = net->params;
    res->counted = r->counted;
    const cs_arch_config *c = &r->counted_cfg;
    snprintf(res->count, sizeof res->count, "%s: %s head, %d classes, %d input channel%s, %s stem",
             e->count, cs_head_name(c->head), c->n_classes, c->in_channels, c->in_channels == 1 ? "" : "s",
             cs_stem_name(c->stem));
    cs_experiment_settings(e, res->settings, sizeof res->settings);
    cs_experiment_identity(e, res->run_id);
    iso_now(res->started, sizeof res->started);
    snprintf(res->ended, sizeof res->ended, "%s", res->started);
    snprintf(res->command, sizeof res->command, "%s", r->cb && r->cb->command ? r->cb->command : "");
    host_name(res->host, sizeof res->host);
    snprintf(res->build, sizeof res->build, "cilscale %s (%s)", CS_VERSION, CS_BUILD);
    res->n_classes = r->sc.n_classes <= (int)(sizeof res->class_order / sizeof(int)) ? r->sc.n_classes : 0;
    memcpy(res->class_order, r->sc.order, sizeof(int) * (size_t)res->n_classes);
    res->w = net->w;
    res->d = net->d;
    res->resolution = net->resolution;
    res->n_stages = arch->n_stages;
    memcpy(res->depths, net->cfg.depths, sizeof(int) * (size_t)arch->n_stages);
    memcpy(res->widths, net->widths, sizeof(int) * (size_t)arch->n_stages);
    res->seed = e->seed;
    res->n_states_planned = r->sc.n_states;
}

/* Everything before the first state, step by step; on failure the caller's
 * one cleanup path frees whatever the steps made. */
static int setup(run *r, const cs_registry *reg, cs_error *err)
{
    const cs_plugin *pol;
    cs_scale_result net;
    cs_data_format fmt;
    int rc;
    if (cs_data_format_parse(r->e->data_format, &fmt))
        return cs_error_set(err, CS_ERR_ARG, "data.format '%s': expected idx, cifar10, cifar100, folder or list",
                            r->e->data_format);
    if ((rc = find_plugins(r, reg, &pol, err)) || (rc = configure_cil(r, err)) || (rc = load_data(r, fmt, err)) ||
        (rc = scale_network(r, pol, &net, err)))
        return rc;
    describe_run(r, &net);
    cs_run_result *res = r->res;
    if ((rc = cs_device_open(r->be_p->iface, r->be_p->name, r->e->device, &r->dev, err)))
        return rc;
    cs_device_describe(r->dev, res->device, sizeof res->device);
    if ((rc = cs_dp_check_device(r->dp, r->dev, err)))
        return rc;
    char pbuf[32], use[160] = "";
    snprintf(pbuf, sizeof pbuf, "%lld", (long long)net.params);
    if (!r->e->manual)
        snprintf(use, sizeof use, " (budget %lld, %.1f%% used, counting %s)", (long long)r->e->budget,
                 100.0 * (double)r->counted / (double)r->e->budget, res->count);
    say(r, "%s %s: w=%.3f, d=%.3f, %s parameters%s, %dx%d input; %s; %d states over %d classes; %s", res->policy,
        res->arch, net.w, net.d, pbuf, use, r->in.h, r->in.w, r->cil_p->name, r->sc.n_states, r->sc.n_classes,
        res->device);
    return CS_OK;
}

/* The finished states of an earlier run in e->out, and its last model. */
static int load_resume(run *r, int *next, cs_error *err)
{
    static cs_run_result old;
    cs_error e2;
    int rc0;
    char path[PATH_MAX + 64];
    struct stat st;
    *next = 0;
    snprintf(path, sizeof path, "%s/results.csv", r->e->out);
    if (stat(path, &st) != 0 && errno == ENOENT)
        return CS_OK; /* nothing finished yet: start from the first state */
    if (cs_results_read(r->e->out, &old, &e2))
        return cs_error_set(err, CS_ERR_IO, "%s; --resume cannot tell which states finished (repair the file, or "
                            "start over with --force)", e2.msg);
    if (strcmp(old.run_id, r->res->run_id))
        return cs_error_set(err, CS_ERR_ARG, "%s belongs to another run (run_id %s, this run %s): --resume mixes "
                            "nothing; start over with --force", path, *old.run_id ? old.run_id : "none",
                            r->res->run_id);
    if (old.n_states > r->sc.n_states)
        return cs_error_set(err, CS_ERR_ARG, "%s: %d states finished, but the experiment has %d", r->e->out,
                            old.n_states, r->sc.n_states);
    for (int s = 0; s < old.n_states; s++)
        r->res->states[s] = old.states[s];
    r->res->n_states = old.n_states;
    free(r->epochs);
    r->epochs = NULL;
    r->cap_epochs = 0;
    if ((rc0 = cs_epochs_read(r->e->out, old.n_states, &r->epochs, &r->n_epochs, err)))
        return rc0;
    r->cap_epochs = r->n_epochs;
    if (old.started[0]) /* the run began then; its time adds up over the resumes */
        snprintf(r->res->started, sizeof r->res->started, "%s", old.started);
    r->seconds_before = old.seconds;
    if (old.n_states == 0)
        return CS_OK;
    int last = old.n_states - 1;
    int rc = build_state(r, last, 0, err);
    if (rc)
        return rc;
    float *p = malloc(sizeof(float) * (size_t)(cs_graph_n_params(r->m.g) + 1));
    float *b = malloc(sizeof(float) * (size_t)(cs_graph_n_buffers(r->m.g) + 1));
    static cs_checkpoint_info info;
    snprintf(path, sizeof path, "%s/state-%d.safetensors", r->e->out, last);
    if (!p || !b || (rc = cs_checkpoint_load(path, r->m.g, p, b, &info, err))) {
        free(p);
        free(b);
        return rc ? rc : cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    }
    const char *id = cs_checkpoint_meta(&info, "run_id");
    if (!id || strcmp(id, r->res->run_id)) {
        free(p);
        free(b);
        return cs_error_set(err, CS_ERR_ARG, "%s belongs to another run (run_id %s, this run %s): --resume mixes "
                            "nothing; start over with --force", path, id ? id : "none", r->res->run_id);
    }
    r->prev_g = r->m.g;
    r->m.g = NULL;
    r->prev_params = p;
    r->prev_buffers = b;
    *next = old.n_states;
    say(r, "resuming after state %d (%d/%d done) from %s", old.n_states - 1, old.n_states, r->sc.n_states, r->e->out);
    return CS_OK;
}

/* A data-parallel start: the same experiment on every rank (rank 0's run_id). */
static int same_experiment(run *r, int rc, cs_error *err)
{
    char id[sizeof r->res->run_id];
    memcpy(id, r->res->run_id, sizeof id);
    if ((rc = agree(r, rc, err)))
        return rc;
    if (!(rc = cs_dp_bcast(r->dp, id, sizeof id, err)) && memcmp(id, r->res->run_id, sizeof id))
        rc = cs_error_set(err, CS_ERR_ARG, "its experiment is not rank 0's (run_id %.16s, rank 0's %.16s): every "
                          "rank must be given the same command and configuration", r->res->run_id, id);
    return agree(r, rc, err);
}

/* On a data-parallel resume: the state to start from and the last model,
 * sent by rank 0 (which alone read the folder), so the other ranks need not
 * see --out. */
static int join_ranks(run *r, int rc, int *next, cs_error *err)
{
    if ((rc = agree(r, rc, err)))
        return rc;
    int64_t v = *next;
    if ((rc = agree(r, cs_dp_bcast(r->dp, &v, sizeof v, err), err)) || v == 0)
        return rc;
    *next = (int)v;
    if (!r->lead && !(rc = build_state(r, *next - 1, 0, err))) {
        r->prev_g = r->m.g;
        r->m.g = NULL;
        r->prev_params = malloc(sizeof(float) * (size_t)(cs_graph_n_params(r->prev_g) + 1));
        r->prev_buffers = malloc(sizeof(float) * (size_t)(cs_graph_n_buffers(r->prev_g) + 1));
        if (!r->prev_params || !r->prev_buffers)
            rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    }
    if ((rc = agree(r, rc, err)))
        return rc;
    rc = cs_dp_bcast(r->dp, r->prev_params, (int64_t)sizeof(float) * cs_graph_n_params(r->prev_g), err);
    if (!rc)
        rc = cs_dp_bcast(r->dp, r->prev_buffers, (int64_t)sizeof(float) * cs_graph_n_buffers(r->prev_g), err);
    return agree(r, rc, err);
}

/* The files a run folder holds (besides state-K.safetensors). */
static const char *const run_files[] = {"run.cfg",    "results.json", "results.csv", "accuracy.svg",
                                        "accuracy_matrix.csv", "accuracy_matrix.svg", "epochs.csv", "losses.svg",
                                        "interrupted.safetensors", NULL};

static int is_state_file(const char *name)
{
    int k, n = 0;
    return sscanf(name, "state-%d.safetensors%n", &k, &n) == 1 && n > 0 && name[n] == '\0';
}

/* per_class-K.csv and confusion-K.csv: a state's, moved aside with the run */
static int is_state_table(const char *name)
{
    int k, n = 0, m = 0;
    return (sscanf(name, "per_class-%d.csv%n", &k, &n) == 1 && n > 0 && name[n] == '\0') ||
           (sscanf(name, "confusion-%d.csv%n", &k, &m) == 1 && m > 0 && name[m] == '\0');
}

/* Which run the folder's files are of: 0 none there, 1 this run, -1 another
 * (what names it in why). */
static int folder_owner(const char *dir, const char *id, char *why, size_t size)
{
    char path[PATH_MAX + 64];
    struct stat st;
    static cs_run_result old;
    cs_error e2;
    snprintf(path, sizeof path, "%s/results.csv", dir);
    if (stat(path, &st) == 0) {
        if (cs_results_read(dir, &old, &e2)) {
            snprintf(why, size, "%s", e2.msg);
            return -1;
        }
        snprintf(why, size, "%s: run_id %s", path, *old.run_id ? old.run_id : "none");
        return strcmp(old.run_id, id) ? -1 : 1;
    }
    snprintf(path, sizeof path, "%s/run.cfg", dir);
    if (stat(path, &st) == 0) {
        static cs_experiment other;
        char oid[17];
        cs_experiment_defaults(&other);
        if (cs_experiment_load(path, &other, &e2)) {
            snprintf(why, size, "%s", e2.msg);
            return -1;
        }
        cs_experiment_identity(&other, oid);
        snprintf(why, size, "%s: run_id %s", path, oid);
        return strcmp(oid, id) ? -1 : 1;
    }
    DIR *dp = opendir(dir);
    struct dirent *de;
    int found = 0;
    while (dp && !found && (de = readdir(dp)))
        if (is_state_file(de->d_name) || !strcmp(de->d_name, "interrupted.safetensors")) {
            snprintf(why, size, "%s/%s, with no results.csv or run.cfg", dir, de->d_name);
            found = 1;
        }
    if (dp)
        closedir(dp);
    return found ? -1 : 0;
}

/* --force: every file of the other run into DIR/replaced-YYYYmmdd-HHMMSS[-N]/, renamed, never copied. */
static int move_aside(const char *dir, cs_error *err)
{
    char aside[PATH_MAX + 64], from[PATH_MAX + 64], to[2 * PATH_MAX + 128], stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", gmtime_r(&t, &tm));
    snprintf(aside, sizeof aside, "%s/replaced-%s", dir, stamp);
    for (int k = 2; mkdir(aside, 0777) != 0; k++) {
        if (errno != EEXIST || k > 99)
            return cs_error_set(err, CS_ERR_IO, "%s: cannot make it to move the other run's files to: %s", aside,
                                strerror(errno));
        snprintf(aside, sizeof aside, "%s/replaced-%s-%d", dir, stamp, k);
    }
    DIR *dp = opendir(dir);
    if (!dp)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = CS_OK;
    while (rc == CS_OK && (de = readdir(dp))) {
        int mine = is_state_file(de->d_name) || is_state_table(de->d_name);
        for (int i = 0; run_files[i]; i++)
            mine |= !strcmp(de->d_name, run_files[i]);
        if (!mine)
            continue;
        snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
        snprintf(to, sizeof to, "%s/%s", aside, de->d_name);
        if (rename(from, to) != 0)
            rc = cs_error_set(err, CS_ERR_IO, "%s: cannot move it to %s: %s", from, aside, strerror(errno));
    }
    closedir(dp);
    return rc;
}

/* The folder is this run's alone: an exclusive lock on DIR/.cilscale.lock for
 * the run's life (a second run into it fails at once), and no files of another
 * run (refused, or with --force moved aside). Returns the lock's descriptor
 * in *lock_fd. */
static int claim_folder(run *r, int flags, int *lock_fd, cs_error *err)
{
    const char *dir = r->e->out;
    char path[PATH_MAX + 64], why[1200];
    snprintf(path, sizeof path, "%s/.cilscale.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot open the run folder's lock: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        return cs_error_set(err, CS_ERR_ARG, "%s: another cilscale run is writing this folder%s%s%s; wait for it or "
                            "give another --out", dir, *pid ? " (pid " : "", pid, *pid ? ")" : "");
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* the lock holds all the same; the pid is only for the message */
    }
    *lock_fd = fd;
    if (flags & CS_RUN_RESUME)
        return CS_OK; /* load_resume checks each file it uses */
    int owner = folder_owner(dir, r->res->run_id, why, sizeof why);
    if (owner >= 0)
        return CS_OK;
    if (!(flags & CS_RUN_FORCE))
        return cs_error_set(err, CS_ERR_ARG, "%s holds another run (%s; this run %s): give --force to move its "
                            "files aside into %s/replaced-TIME/, or another --out", dir, why, r->res->run_id, dir);
    return move_aside(dir, err);
}

/* mkdir -p */
static int make_dirs(const char *path, cs_error *err)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return cs_error_set(err, CS_ERR_IO, "out %s: cannot create %s: %s", path, buf, strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    return CS_OK;
}

/* Everything a run holds, freed: the one cleanup of cs_experiment_run and cs_experiment_eval. */
static void release(run *r)
{
    free_state(r);
    cs_graph_free(r->prev_g);
    free(r->prev_params);
    free(r->prev_buffers);
    free(r->feat);
    free(r->epochs);
    free(r->per);
    free(r->confusion);
    cs_device_close(r->dev);
    if (r->cil_ctx && r->cil)
        r->cil->destroy(r->cil_ctx);
    cs_scenario_free(&r->sc);
    cs_dataset_free(r->train);
    cs_dataset_free(r->test);
}

void cs_eval_result_free(cs_eval_result *r)
{
    free(r->hits);
    free(r->count);
    free(r->confusion);
    free(r->class_order);
    free(r->logits);
    free(r->labels);
    free(r->inputs);
    memset(r, 0, sizeof *r);
}

/* The checkpoint of state s into r's prepared model, after checking it is this run's. */
static int load_state_model(run *r, int s, cs_error *err)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/state-%d.safetensors", r->e->out, s);
    int64_t np = cs_graph_n_params(r->m.g), nb = cs_graph_n_buffers(r->m.g);
    float *p = malloc(sizeof(float) * (size_t)(np + 1)), *b = malloc(sizeof(float) * (size_t)(nb + 1));
    static cs_checkpoint_info info;
    int rc = !p || !b ? cs_error_set(err, CS_ERR_NOMEM, "out of memory") : cs_checkpoint_load(path, r->m.g, p, b, &info, err);
    const char *id = rc ? NULL : cs_checkpoint_meta(&info, "run_id");
    if (!rc && (!id || strcmp(id, r->res->run_id)))
        rc = cs_error_set(err, CS_ERR_ARG, "%s belongs to another run (run_id %s, this run %s)", path, id ? id : "none",
                          r->res->run_id);
    if (!rc)
        rc = cs_plan_write(r->m.plan, CS_ARENA_PARAMS, 0, np, p, err);
    if (!rc && nb)
        rc = cs_plan_write(r->m.plan, CS_ARENA_BUFFERS, 0, nb, b, err);
    free(p);
    free(b);
    return rc;
}

int cs_experiment_eval(const cs_experiment *e, const cs_registry *reg, int state, int keep, cs_eval_result *out,
                       cs_error *err)
{
    static cs_run_result res, old;
    run r = {.e = e, .res = &res, .lead = 1};
    memset(out, 0, sizeof *out);
    int rc = setup(&r, reg, err), *map = NULL, *tidx = NULL;
    cs_batcher *eb = NULL;
    float *img = NULL, *lab = NULL, *lg = NULL;
    cs_error e2;
    if (rc)
        goto done;
    if (state < 0) {
        if (cs_results_read(e->out, &old, &e2) || old.n_states < 1) {
            rc = cs_error_set(err, CS_ERR_IO, "%s: no finished state to evaluate (%s)", e->out,
                              old.n_states < 1 ? "results.csv lists none" : e2.msg);
            goto done;
        }
        state = old.n_states - 1;
    }
    if (state >= r.sc.n_states) {
        rc = cs_error_set(err, CS_ERR_ARG, "--state %d: the run has states 0 to %d", state, r.sc.n_states - 1);
        goto done;
    }
    r.state = state;
    if ((rc = build_state(&r, state, 0, err)) || (rc = cs_model_prepare(&r.m, r.dev, mix(e->seed, 1), err)) ||
        (rc = load_state_model(&r, state, err)))
        goto done;
    const int k = r.sc.first[state] + r.sc.count[state], B = r.m.batch;
    out->state = state;
    out->n_seen = k;
    map = malloc(sizeof(int) * (size_t)r.sc.n_classes);
    out->hits = calloc((size_t)k, sizeof(int64_t));
    out->count = calloc((size_t)k, sizeof(int64_t));
    out->confusion = calloc((size_t)k * (size_t)k, sizeof(int64_t));
    out->class_order = malloc(sizeof(int) * (size_t)k);
    img = malloc(sizeof(float) * (size_t)B * (size_t)cs_tensor_row(cs_graph_tensor(r.m.g, r.m.input)));
    lab = malloc(sizeof(float) * (size_t)B);
    lg = malloc(sizeof(float) * (size_t)B * (size_t)k);
    if (!map || !out->hits || !out->count || !out->confusion || !out->class_order || !img || !lab || !lg) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(out->class_order, r.sc.order, sizeof(int) * (size_t)k);
    /* the run's own evaluation: the same label map, images and batches (evaluate_state) */
    cs_scenario_label_map(&r.sc, state, 0, map);
    int nt = cs_scenario_indices(r.test, map, e->test_per_class, &tidx);
    if (!(eb = cs_batcher_new(r.test, tidx, nt, e->batch, &r.in.eval, 0, map, 0, err))) {
        rc = CS_ERR;
        goto done;
    }
    const int keep_logits = keep & (CS_EVAL_LOGITS | CS_EVAL_INPUTS);
    const size_t row_in = (size_t)cs_tensor_row(cs_graph_tensor(r.m.g, r.m.input));
    out->in_c = r.m.in_c;
    out->in_h = r.m.in_h;
    out->in_w = r.m.in_w;
    if (keep_logits && (!(out->logits = malloc(sizeof(float) * (size_t)(nt ? nt : 1) * (size_t)k)) ||
                        !(out->labels = malloc(sizeof(int) * (size_t)(nt ? nt : 1))) ||
                        ((keep & CS_EVAL_INPUTS) && !(out->inputs = malloc(sizeof(float) * (size_t)(nt ? nt : 1) * row_in))))) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        goto done;
    }
    int64_t top1 = 0, top5 = 0, seen = 0;
    int n;
    while ((n = cs_batcher_next(eb, img, lab)) > 0) {
        if ((rc = cs_plan_set_input(r.m.plan, r.m.input, img, n, err)) || (rc = cs_plan_forward(r.m.plan, n, 0, err)) ||
            (rc = cs_plan_read_tensor(r.m.plan, r.m.logits, lg, n, err)))
            goto done;
        for (int i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * (size_t)k;
            int y = (int)lab[i], best = 0, above = 0;
            for (int c = 1; c < k; c++)
                if (row[c] > row[best])
                    best = c;
            /* as the run counts (train.c): a tie with the true class is not a hit */
            for (int c = 0; c < k; c++)
                above += row[c] > row[y] || (row[c] == row[y] && c != y);
            top1 += above == 0;
            top5 += above < 5;
            out->hits[y] += above == 0;
            out->count[y]++;
            out->confusion[(size_t)y * (size_t)k + (size_t)best]++;
            if (keep_logits) {
                memcpy(out->logits + (size_t)seen * (size_t)k, row, sizeof(float) * (size_t)k);
                out->labels[seen] = y;
                if (out->inputs)
                    memcpy(out->inputs + (size_t)seen * row_in, img + (size_t)i * row_in, sizeof(float) * row_in);
            }
            seen++;
        }
    }
    out->n_test = (int)seen;
    out->top1 = seen ? (double)top1 / (double)seen : NAN;
    out->top5 = k <= 5 ? NAN : seen ? (double)top5 / (double)seen : NAN;
done:
    cs_batcher_free(eb);
    free(tidx);
    free(map);
    free(img);
    free(lab);
    free(lg);
    release(&r);
    if (rc)
        cs_eval_result_free(out);
    return rc;
}

int cs_experiment_network(const cs_experiment *e, const cs_registry *reg, cs_scale_result *net, cs_run_result *res,
                          cs_error *err)
{
    run r = {.e = e, .res = res, .lead = 1};
    memset(res, 0, sizeof *res);
    const cs_plugin *pol;
    cs_data_format fmt;
    int rc;
    if (cs_data_format_parse(e->data_format, &fmt))
        rc = cs_error_set(err, CS_ERR_ARG, "data.format '%s': expected idx, cifar10, cifar100, folder or list",
                          e->data_format);
    else if (!(rc = find_plugins(&r, reg, &pol, err)) && !(rc = load_data(&r, fmt, err)) &&
             !(rc = scale_network(&r, pol, net, err)))
        describe_run(&r, net);
    cs_scenario_free(&r.sc);
    cs_dataset_free(r.train);
    cs_dataset_free(r.test);
    return rc;
}

int cs_experiment_run(const cs_experiment *e, const cs_registry *reg, int flags, const cs_run_callbacks *cb,
                      cs_run_result *res, cs_error *err)
{
    const int resume = flags & CS_RUN_RESUME;
    int lock_fd = -1;
    run r = {.e = e, .cb = cb, .res = res, .lead = 1};
    memset(res, 0, sizeof *res);
    if (cs_dp_world(cs_dp_get()) > 1) {
        r.dp = cs_dp_get();
        r.lead = cs_dp_rank(r.dp) == 0;
    }
    double t0 = cs_now_s();
    r.t_start = t0;
    char cfg_path[PATH_MAX + 16];
    int rc = CS_OK, next = 0;
    char *cfg_text = NULL;
    size_t cfg_len = 0;
    FILE *mem = open_memstream(&cfg_text, &cfg_len);
    if (mem) {
        cs_experiment_write(e, mem);
        fclose(mem);
    }
    res->config_text = cfg_text;
    rc = setup(&r, reg, err);
    if (r.dp && !rc) {
        char d[96];
        size_t u = strlen(res->device);
        cs_dp_describe(r.dp, d, sizeof d);
        snprintf(res->device + u, sizeof res->device - u, "; data-parallel over %s", d);
    }
    if (r.dp)
        rc = same_experiment(&r, rc, err);
    if (rc)
        goto out;
    /* the output folder only once the experiment is known good (on every rank) */
    if (r.lead && !(rc = make_dirs(e->out, err)) && !(rc = claim_folder(&r, flags, &lock_fd, err)) && resume)
        rc = load_resume(&r, &next, err);
    if (r.dp)
        rc = join_ranks(&r, rc, &next, err);
    if (rc)
        goto out;
    /* the resolved experiment, which --resume reads back */
    snprintf(cfg_path, sizeof cfg_path, "%s/run.cfg", e->out);
    if (r.lead)
        rc = cs_atomic_write(cfg_path, cfg_text ? cfg_text : "", cfg_text ? strlen(cfg_text) : 0, 0666, err);
    if ((rc = agree(&r, rc, err)))
        goto out;
    r.feat = NULL;
    for (int s = next; s < r.sc.n_states; s++) {
        if (!r.feat) {
            /* features are at most as wide as the classifier's input; sized from the first graph */
            if ((rc = agree(&r, build_state(&r, s, 0, err), err)))
                goto out;
            int F = cs_graph_tensor(r.m.g, r.m.features)->shape[1];
            free_state(&r);
            r.feat = malloc(sizeof(float) * (size_t)e->batch * (size_t)F);
            if ((rc = agree(&r, r.feat ? CS_OK : cs_error_set(err, CS_ERR_NOMEM, "out of memory"), err)))
                goto out;
        }
        rc = run_state(&r, s, err);
        free_state(&r);
        if (rc)
            goto out;
    }
    /* finished: an interrupted model from before a resume is out of date */
    char stale[PATH_MAX + 32];
    snprintf(stale, sizeof stale, "%s/interrupted.safetensors", e->out);
    if (r.lead)
        remove(stale);
out:
    res->seconds = r.seconds_before + (cs_now_s() - t0);
    release(&r);
    res->config_text = NULL;
    free(cfg_text);
    if (lock_fd >= 0)
        close(lock_fd); /* the lock goes with it; the file stays (removing it would race a waiting run) */
    return rc;
}
