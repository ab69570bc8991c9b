/* train.c: a network on a backend, the loops that train and evaluate it, and
 * what the network sees of a data set: the default stem, the input size at a
 * resolution coefficient, the augmentations for training and evaluation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/clock.h"
#include "runtime/dp.h"
#include "runtime/train.h"

int cs_model_build(cs_model *m, const cs_arch_iface *arch, const char *arch_name, const cs_arch_config *cfg,
                   int batch, int in_c, int in_h, int in_w, cs_error *err)
{
    memset(m, 0, sizeof *m);
    m->arch = arch;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch_name);
    m->cfg = *cfg;
    m->in_c = in_c;
    m->in_h = in_h;
    m->in_w = in_w;
    m->batch = batch;
    if (cfg->in_channels != in_c)
        return cs_error_set(err, CS_ERR_ARG, "the network takes %d input channels but the data has %d",
                            cfg->in_channels, in_c);
    m->g = cs_graph_new(batch);
    if (!m->g)
        return cs_error_set(err, CS_ERR_ARG, "batch %d: expected >= 1", batch);
    m->input = cs_input(m->g, "input", in_c, in_h, in_w);
    m->labels = cs_input_vec(m->g, "labels", 0);
    int rc = cs_arch_build(arch, arch_name, m->g, cfg, m->input, &m->features, &m->logits, err);
    if (!rc) {
        m->xent = cs_softmax_xent(m->g, m->logits, m->labels);
        cs_graph_add_loss(m->g, m->xent, 1.0f);
        rc = cs_graph_status(m->g, err);
    }
    if (rc)
        cs_model_free(m);
    return rc;
}

int cs_model_prepare(cs_model *m, cs_device *dev, uint64_t seed, cs_error *err)
{
    m->dev = dev;
    int rc = cs_plan_prepare(dev, m->g, &m->plan, err);
    if (rc)
        return rc;
    float *params = malloc(sizeof(float) * (size_t)(cs_graph_n_params(m->g) + cs_graph_n_buffers(m->g) + 1));
    if (!params)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory for %lld parameters", (long long)cs_graph_n_params(m->g));
    cs_graph_init(m->g, seed, params, params + cs_graph_n_params(m->g));
    rc = cs_model_write_params(m, params, params + cs_graph_n_params(m->g), err);
    free(params);
    return rc;
}

int cs_model_init(cs_model *m, const cs_arch_iface *arch, const char *arch_name, const cs_arch_config *cfg,
                  int batch, int in_c, int in_h, int in_w, cs_device *dev, uint64_t seed, cs_error *err)
{
    int rc = cs_model_build(m, arch, arch_name, cfg, batch, in_c, in_h, in_w, err);
    if (!rc && (rc = cs_model_prepare(m, dev, seed, err)))
        cs_model_free(m);
    return rc;
}

const char *const *cs_model_meta_fill(cs_model_meta *meta, const cs_model *m, const cs_augment *eval,
                                      const char *const *extra)
{
    const cs_arch_config *c = &m->cfg;
    int widths[CS_MAX_STAGES];
    cs_arch_widths(m->arch, c, widths);
    snprintf(meta->w, sizeof meta->w, "%.17g", c->w);
    size_t ud = 0, uw = 0;
    for (int i = 0; i < m->arch->n_stages; i++) {
        ud += (size_t)snprintf(meta->depths + ud, sizeof meta->depths - ud, "%s%d", i ? "," : "", c->depths[i]);
        uw += (size_t)snprintf(meta->widths + uw, sizeof meta->widths - uw, "%s%d", i ? "," : "", widths[i]);
    }
    snprintf(meta->in_channels, sizeof meta->in_channels, "%d", m->in_c);
    snprintf(meta->input, sizeof meta->input, "%dx%dx%d", m->in_c, m->in_h, m->in_w);
    size_t um = 0, us = 0;
    for (int ch = 0; ch < m->in_c && ch < 3; ch++) {
        um += (size_t)snprintf(meta->mean + um, sizeof meta->mean - um, "%s%.9g", ch ? "," : "", (double)eval->mean[ch]);
        us += (size_t)snprintf(meta->std + us, sizeof meta->std - us, "%s%.9g", ch ? "," : "", (double)eval->std[ch]);
    }
    int n = 0;
    const int cap = (int)(sizeof meta->kv / sizeof meta->kv[0]) - 1 - 2 * 12;
    for (int i = 0; extra && extra[i] && extra[i + 1] && n < cap; i += 2) {
        meta->kv[n++] = extra[i];
        meta->kv[n++] = extra[i + 1];
    }
    const char *net[] = {"arch", m->arch_name, "w", meta->w, "depths", meta->depths, "widths", meta->widths,
                         "in_channels", meta->in_channels, "stem", cs_stem_name(c->stem), "head",
                         cs_head_name(c->head), "last_relu", c->no_last_relu ? "0" : "1", "convention",
                         cs_convention_name(c->convention), "input", meta->input, "mean", meta->mean, "std", meta->std};
    for (size_t i = 0; i < sizeof net / sizeof net[0]; i++)
        meta->kv[n++] = net[i];
    meta->kv[n] = NULL;
    return meta->kv;
}

void cs_model_free(cs_model *m)
{
    cs_plan_release(m->plan);
    cs_graph_free(m->g);
    m->plan = NULL;
    m->g = NULL;
}

int cs_model_read_params(cs_model *m, float *params, float *buffers, cs_error *err)
{
    int rc = cs_plan_read(m->plan, CS_ARENA_PARAMS, 0, cs_graph_n_params(m->g), params, err);
    if (!rc && cs_graph_n_buffers(m->g))
        rc = cs_plan_read(m->plan, CS_ARENA_BUFFERS, 0, cs_graph_n_buffers(m->g), buffers, err);
    return rc;
}

int cs_model_write_params(cs_model *m, const float *params, const float *buffers, cs_error *err)
{
    int rc = cs_plan_write(m->plan, CS_ARENA_PARAMS, 0, cs_graph_n_params(m->g), params, err);
    if (!rc && cs_graph_n_buffers(m->g))
        rc = cs_plan_write(m->plan, CS_ARENA_BUFFERS, 0, cs_graph_n_buffers(m->g), buffers, err);
    return rc;
}

float cs_schedule_lr(const cs_schedule *s, int epoch)
{
    switch (s->kind) {
    case CS_LR_COSINE:
        if (s->epochs <= 1)
            return s->lr;
        return (float)(0.5 * s->lr * (1 + cos(M_PI * epoch / s->epochs)));
    case CS_LR_MULTISTEP: {
        float lr = s->lr;
        for (int i = 0; i < s->n_milestones; i++)
            if (epoch >= s->milestones[i])
                lr *= s->gamma;
        return lr;
    }
    default: return s->lr;
    }
}

int cs_schedule_parse(const char *text, float lr, int epochs, cs_schedule *out, cs_error *err)
{
    memset(out, 0, sizeof *out);
    out->lr = lr;
    out->epochs = epochs;
    out->gamma = 0.1f;
    if (!strcmp(text, "constant")) {
        out->kind = CS_LR_CONSTANT;
        return CS_OK;
    }
    if (!strcmp(text, "cosine")) {
        out->kind = CS_LR_COSINE;
        return CS_OK;
    }
    if (!strncmp(text, "multistep:", 10)) {
        out->kind = CS_LR_MULTISTEP;
        const char *p = text + 10;
        int last = 0;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v <= last || out->n_milestones == 8 || (*end && *end != ','))
                goto bad;
            out->milestones[out->n_milestones++] = (int)v;
            last = (int)v;
            p = *end ? end + 1 : end;
        }
        if (out->n_milestones)
            return CS_OK;
    }
bad:
    return cs_error_set(err, CS_ERR_ARG,
                        "schedule '%s': expected constant, cosine or multistep:E1,E2,... (increasing epochs, at "
                        "most 8)",
                        text);
}

/* Top-1 and top-5 hits of n rows of logits [n, k] against labels; per_label
 * (optional) gets hits in [0, k) and counts in [k, 2k). */
static void count_hits(const float *logits, const float *labels, int n, int k, int64_t *top1, int64_t *top5,
                       int64_t *per_label);

/* Adds the batch's predictions (argmax, the first of equal maxima) to the k x k confusion matrix. */
static void count_confusion(const float *logits, const float *labels, int n, int k, int64_t *confusion)
{
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * k;
        int y = (int)labels[i], best = 0;
        for (int j = 1; j < k; j++)
            if (row[j] > row[best])
                best = j;
        if (y >= 0 && y < k)
            confusion[(size_t)y * (size_t)k + (size_t)best]++;
    }
}

static void count_hits(const float *logits, const float *labels, int n, int k, int64_t *top1, int64_t *top5,
                       int64_t *per_label)
{
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * k;
        int y = (int)labels[i];
        float v = row[y];
        /* classes that score higher than the true one, or as high: a tie is
         * not a hit (constant logits must not read as 100%) */
        int above = 0;
        for (int j = 0; j < k; j++)
            above += row[j] > v || (row[j] == v && j != y);
        *top1 += above == 0;
        *top5 += above < 5;
        if (per_label && y >= 0 && y < k) {
            per_label[y] += above == 0;
            per_label[k + y]++;
        }
    }
}

/* One batch on the host: images, labels and the logits read back. */
typedef struct host_batch {
    float *images, *labels, *logits;
    int k; /* logits per image */
} host_batch;

static void host_batch_free(host_batch *hb)
{
    free(hb->images);
    free(hb->labels);
    free(hb->logits);
}

static int host_batch_alloc(host_batch *hb, const cs_model *m, cs_error *err)
{
    const cs_graph *g = m->g;
    hb->k = cs_graph_tensor(g, m->logits)->shape[1];
    size_t in_size = (size_t)m->batch * (size_t)cs_tensor_row(cs_graph_tensor(g, m->input));
    hb->images = malloc(sizeof(float) * in_size);
    hb->labels = malloc(sizeof(float) * (size_t)m->batch);
    hb->logits = malloc(sizeof(float) * (size_t)m->batch * (size_t)hb->k);
    if (!hb->images || !hb->labels || !hb->logits)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory for a batch");
    return CS_OK;
}

/* The largest |parameter| and where it is; NaN when one is not finite (then
 * *where names the first such). 0 on success. */
/* The parameter (or batch-norm statistic) furthest over its limit, as the
 * ratio |value| / limit, and where it is; NaN when one is not finite (then
 * *where names the first such). 0 on success. */
static int weights_extreme(cs_model *m, double *worst, double *ratio, const char **where, cs_error *err)
{
    const cs_graph *g = m->g;
    int64_t np = cs_graph_n_params(g), nb = cs_graph_n_buffers(g);
    float *w = malloc(sizeof(float) * (size_t)(np + nb + 1));
    if (!w)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    int rc = cs_plan_read(m->plan, CS_ARENA_PARAMS, 0, np, w, err);
    if (!rc && nb)
        rc = cs_plan_read(m->plan, CS_ARENA_BUFFERS, 0, nb, w + np, err);
    *worst = 0;
    *ratio = 0;
    *where = "?";
    for (int t = 0; !rc && t < cs_graph_n_tensors(g); t++) {
        const cs_tensor *x = cs_graph_tensor(g, t);
        if (x->kind != CS_TENSOR_PARAM && x->kind != CS_TENSOR_BUFFER)
            continue;
        const float *v = w + (x->kind == CS_TENSOR_PARAM ? 0 : np) + x->offset;
        double limit = x->kind == CS_TENSOR_PARAM ? CS_WEIGHT_LIMIT : CS_STAT_LIMIT;
        for (int64_t i = 0; i < x->size; i++) {
            double a = fabs((double)v[i]);
            if (!isfinite(a)) {
                *worst = *ratio = NAN;
                *where = x->name;
                free(w);
                return CS_OK;
            }
            if (a / limit > *ratio) {
                *ratio = a / limit;
                *worst = a;
                *where = x->name;
            }
        }
    }
    free(w);
    return rc;
}

/* The loss at batch bi is not finite or over CS_LOSS_LIMIT: one line saying
 * which term, what the weights look like, and the likely cause. */
static int diverged(cs_model *m, const cs_sgd *opt, double loss, int bi, int nb, cs_error *err)
{
    const cs_graph *g = m->g;
    char terms[256] = "", culprit[96] = "";
    size_t u = 0;
    for (int i = 0; i < cs_graph_n_losses(g) && u < sizeof terms; i++) {
        float v = NAN;
        cs_error e2;
        cs_plan_read_tensor(m->plan, cs_graph_loss(g, i), &v, 1, &e2);
        const cs_tensor *t = cs_graph_tensor(g, cs_graph_loss(g, i));
        const char *op = t->producer >= 0 ? cs_op_name(cs_graph_node(g, t->producer)->op) : "?";
        double wv = (double)cs_graph_loss_weight(g, i) * v;
        u += (size_t)snprintf(terms + u, sizeof terms - u, "%s%s %.4g x weight %g", i ? ", " : "", op, (double)v,
                              (double)cs_graph_loss_weight(g, i));
        /* a weighted term (not the first, the task's own loss) that alone is out of bounds */
        if (i > 0 && !culprit[0] && (!isfinite(wv) || fabs(wv) > CS_LOSS_LIMIT) && cs_graph_loss_weight(g, i) > 1e3)
            snprintf(culprit, sizeof culprit, "%s (weight %g)", op, (double)cs_graph_loss_weight(g, i));
    }
    double worst = 0, ratio = 0;
    const char *where = "?";
    cs_error e2;
    char weights[200] = "";
    if (weights_extreme(m, &worst, &ratio, &where, &e2) == CS_OK) {
        if (isnan(worst))
            snprintf(weights, sizeof weights, "; weight %s is not finite", where);
        else
            snprintf(weights, sizeof weights, "; the largest weight is %.3g (%s)", worst, where);
    }
    char cause[200];
    int weights_bad = isnan(ratio) || ratio > 1;
    if (culprit[0])
        snprintf(cause, sizeof cause, "the term %s is far too heavy: lower its weight (LUCIR: cil.lambda_base)",
                 culprit);
    else if (weights_bad)
        snprintf(cause, sizeof cause, "the weights diverged: lower the learning rate");
    else if (cs_graph_n_losses(g) > 1)
        snprintf(cause, sizeof cause, "the weights are sane: lower the learning rate or the weight of the term that "
                 "blew up (LUCIR: cil.lambda_base)");
    else
        snprintf(cause, sizeof cause, "the weights are sane: look at the data (a NaN pixel?) or lower the learning "
                 "rate");
    return cs_error_set(err, CS_ERR, "the loss became %s at batch %d of %d (terms: %s%s; lr %g): %s",
                        isnan(loss) ? "NaN" : isinf(loss) ? "infinite" : "too large", bi, nb, terms, weights,
                        (double)opt->lr, cause);
}

int cs_model_check_weights(cs_model *m, cs_error *err)
{
    double worst, ratio;
    const char *where;
    int rc = weights_extreme(m, &worst, &ratio, &where, err);
    if (rc)
        return rc;
    if (isnan(ratio))
        return cs_error_set(err, CS_ERR, "%s is not finite: the training diverged (lower the learning rate)", where);
    if (ratio > 1)
        return cs_error_set(err, CS_ERR, "the training diverged: |%s| reached %.3g (the limit is %g for weights, %g "
                            "for batch-norm statistics; a trained network stays far below): lower the learning rate",
                            where, worst, CS_WEIGHT_LIMIT, CS_STAT_LIMIT);
    return CS_OK;
}

/* Adds one step's numbers (bi steps so far, this one included) to st:
 * the mean loss and each term's running mean. */
static void note_step(cs_epoch_stats *st, const cs_graph *g, double loss, const double *terms, int bi,
                      double *loss_sum)
{
    *loss_sum += loss;
    st->loss = *loss_sum / bi;
    st->n_terms = cs_graph_n_losses(g) < CS_MAX_LOSS_TERMS ? cs_graph_n_losses(g) : CS_MAX_LOSS_TERMS;
    for (int i = 0; i < st->n_terms; i++) {
        const cs_tensor *t = cs_graph_tensor(g, cs_graph_loss(g, i));
        st->term[i] += (terms[i] - st->term[i]) / bi; /* running mean */
        st->weight[i] = cs_graph_loss_weight(g, i);
        st->term_name[i] = t->producer >= 0 ? cs_op_name(cs_graph_node(g, t->producer)->op) : "loss";
    }
}

/* cs_model_train_epoch as one rank of a data-parallel run: b hands out this
 * rank's share of each batch; the loss, accuracy and stop requests are
 * summed over the ranks each step (one small allreduce), so every rank
 * sees the global batch's numbers and stops at the same batch. */
static int train_epoch_dp(cs_dp *dp, cs_model *m, cs_batcher *b, const cs_sgd *opt, cs_step_hook hook,
                          void *hook_ctx, cs_batch_cb cb, void *cb_ctx, cs_epoch_stats *st, cs_error *err)
{
    const cs_graph *g = m->g;
    host_batch hb;
    int rc = host_batch_alloc(&hb, m, err), stopped = 0, n, bi = 0, nb = cs_batcher_batches_per_epoch(b);
    int pending_stop = 0;
    const int nl = cs_graph_n_losses(g) < CS_MAX_LOSS_TERMS ? cs_graph_n_losses(g) : CS_MAX_LOSS_TERMS;
    double t0 = cs_now_s(), loss_sum = 0;
    if (!rc)
        rc = cs_dp_attach(dp, m, err);
    if ((rc = cs_dp_agree(dp, rc, err)))
        goto out;
    while ((n = cs_batcher_next(b, hb.images, hb.labels)) > 0) {
        const int N = cs_batcher_global_rows(b);
        if (!rc && ((rc = cs_plan_set_input(m->plan, m->input, hb.images, n, err)) ||
                    (rc = cs_plan_set_input(m->plan, m->labels, hb.labels, n, err))))
            ;
        else if (!rc && hook)
            rc = hook(hook_ctx, m, n, err);
        rc = cs_dp_forward_backward(dp, m, n, N, rc, err);
        /* summed over the ranks: failed, stop asked, top-1, top-5, then each loss term x rows */
        double v[4 + CS_MAX_LOSS_TERMS] = {rc != 0, pending_stop, 0, 0};
        int64_t top1 = 0, top5 = 0;
        for (int i = 0; !rc && i < cs_graph_n_losses(g); i++) {
            float t;
            if ((rc = cs_plan_read_tensor(m->plan, cs_graph_loss(g, i), &t, 1, err)))
                break;
            if (i < CS_MAX_LOSS_TERMS)
                v[4 + i] = (double)t * n;
        }
        if (!rc && !(rc = cs_plan_read_tensor(m->plan, m->logits, hb.logits, n, err)))
            count_hits(hb.logits, hb.labels, n, hb.k, &top1, &top5, NULL);
        v[0] = rc != 0;
        v[2] = (double)top1;
        v[3] = (double)top5;
        cs_error e2;
        if (cs_dp_sum(dp, v, 4 + nl, &e2)) {
            rc = cs_error_set(err, CS_ERR, "%s", e2.msg);
            goto out;
        }
        if (v[0] > 0) {
            rc = cs_dp_agree(dp, rc, err);
            goto out;
        }
        if (v[1] > 0) {
            stopped = 1;
            break;
        }
        double loss = 0, terms[CS_MAX_LOSS_TERMS] = {0};
        for (int i = 0; i < nl; i++) {
            terms[i] = v[4 + i] / N;
            loss += cs_graph_loss_weight(g, i) * terms[i];
        }
        if (!isfinite(loss) || fabs(loss) > CS_LOSS_LIMIT) { /* the same on every rank */
            rc = diverged(m, opt, loss, bi + 1, nb, err);
            goto out;
        }
        rc = cs_plan_update(m->plan, opt, err); /* a failure is agreed on at the next step */
        st->top1 += (int64_t)v[2];
        st->top5 += (int64_t)v[3];
        st->seen += N;
        note_step(st, g, loss, terms, ++bi, &loss_sum);
        st->seconds = cs_now_s() - t0;
        if (cb && cb(cb_ctx, bi, nb, st))
            pending_stop = 1; /* agreed on with the next step's sums */
    }
    if (n <= 0) { /* the epoch ran out: a last update's failure, a last stop request */
        double v[2] = {rc != 0, pending_stop};
        cs_error e2;
        if (cs_dp_sum(dp, v, 2, &e2)) {
            rc = cs_error_set(err, CS_ERR, "%s", e2.msg);
            goto out;
        }
        if (v[0] > 0 && (rc = cs_dp_agree(dp, rc, err)))
            goto out;
        stopped = v[1] > 0;
    }
    if (!stopped && (rc = cs_dp_epoch_end(dp, m, err)))
        goto out;
out:
    {
        cs_error e2;
        cs_dp_attach(dp, NULL, &e2);
    }
    st->seconds = cs_now_s() - t0;
    host_batch_free(&hb);
    return rc ? rc : stopped;
}

int cs_model_train_epoch(cs_model *m, cs_batcher *b, const cs_sgd *opt, cs_step_hook hook, void *hook_ctx,
                         cs_batch_cb cb, void *cb_ctx, cs_epoch_stats *st, cs_error *err)
{
    memset(st, 0, sizeof *st);
    cs_dp *dp = cs_dp_get();
    if (dp && cs_dp_world(dp) > 1)
        return train_epoch_dp(dp, m, b, opt, hook, hook_ctx, cb, cb_ctx, st, err);
    const cs_graph *g = m->g;
    host_batch hb;
    int rc = host_batch_alloc(&hb, m, err), stopped = 0, n, bi = 0, nb = cs_batcher_batches_per_epoch(b);
    int k = hb.k;
    float *images = hb.images, *labels = hb.labels, *logits = hb.logits;
    double t0 = cs_now_s(), loss_sum = 0;
    if (rc)
        goto out;
    while ((n = cs_batcher_next(b, images, labels)) > 0) {
        if ((rc = cs_plan_set_input(m->plan, m->input, images, n, err)) ||
            (rc = cs_plan_set_input(m->plan, m->labels, labels, n, err)) || (hook && (rc = hook(hook_ctx, m, n, err))))
            goto out;
        if ((rc = cs_plan_step(m->plan, n, opt, err)))
            goto out;
        double loss = 0, terms[CS_MAX_LOSS_TERMS] = {0};
        for (int i = 0; i < cs_graph_n_losses(g); i++) {
            float v;
            if ((rc = cs_plan_read_tensor(m->plan, cs_graph_loss(g, i), &v, 1, err)))
                goto out;
            loss += cs_graph_loss_weight(g, i) * v;
            if (i < CS_MAX_LOSS_TERMS)
                terms[i] = v;
        }
        if (!isfinite(loss) || fabs(loss) > CS_LOSS_LIMIT) {
            rc = diverged(m, opt, loss, bi + 1, nb, err);
            goto out;
        }
        if ((rc = cs_plan_read_tensor(m->plan, m->logits, logits, n, err)))
            goto out;
        count_hits(logits, labels, n, k, &st->top1, &st->top5, NULL);
        st->seen += n;
        note_step(st, g, loss, terms, ++bi, &loss_sum);
        st->seconds = cs_now_s() - t0;
        if (cb && cb(cb_ctx, bi, nb, st)) {
            stopped = 1;
            break;
        }
    }
out:
    st->seconds = cs_now_s() - t0;
    host_batch_free(&hb);
    return rc ? rc : stopped;
}

int cs_model_evaluate(cs_model *m, cs_batcher *b, int frozen, cs_epoch_stats *st, int64_t *per_label,
                      cs_error *err)
{
    return cs_model_evaluate_ex(m, b, frozen, st, per_label, NULL, err);
}

int cs_model_evaluate_ex(cs_model *m, cs_batcher *b, int frozen, cs_epoch_stats *st, int64_t *per_label,
                         int64_t *confusion, cs_error *err)
{
    memset(st, 0, sizeof *st);
    host_batch hb;
    int rc = host_batch_alloc(&hb, m, err), n;
    int k = hb.k;
    float *images = hb.images, *labels = hb.labels, *logits = hb.logits;
    double t0 = cs_now_s();
    if (rc)
        goto out;
    while ((n = cs_batcher_next(b, images, labels)) > 0) {
        if ((rc = cs_plan_set_input(m->plan, m->input, images, n, err)) ||
            (rc = cs_plan_forward(m->plan, n, frozen ? CS_FWD_FROZEN : 0, err)) ||
            (rc = cs_plan_read_tensor(m->plan, m->logits, logits, n, err)))
            goto out;
        count_hits(logits, labels, n, k, &st->top1, &st->top5, per_label);
        if (confusion)
            count_confusion(logits, labels, n, k, confusion);
        st->seen += n;
    }
out:
    st->seconds = cs_now_s() - t0;
    host_batch_free(&hb);
    return rc;
}

void cs_dataset_stats(const cs_dataset *d, float mean[3], float std[3])
{
    size_t plane = (size_t)d->h * (size_t)d->w;
    for (int c = 0; c < 3; c++) {
        mean[c] = 0;
        std[c] = 1;
    }
    for (int c = 0; c < d->c && c < 3; c++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < d->n; i++) {
            const uint8_t *p = d->pixels + ((size_t)i * (size_t)d->c + (size_t)c) * plane;
            for (size_t j = 0; j < plane; j++) {
                double v = p[j] / 255.0;
                s += v;
                s2 += v * v;
            }
        }
        double cnt = (double)d->n * (double)plane;
        double mu = cnt > 0 ? s / cnt : 0, var = cnt > 0 ? s2 / cnt - mu * mu : 1;
        mean[c] = (float)mu;
        std[c] = (float)(var > 1e-12 ? sqrt(var) : 1);
    }
}

cs_stem cs_stem_auto(int h) { return h <= 64 ? CS_STEM_SMALL : CS_STEM_IMAGENET; }

void cs_image_input_for(const cs_dataset *d, double resolution, int augment, cs_image_input *in)
{
    /* compound scaling changes the input resolution too */
    int h = (int)lround(d->h * resolution), w = (int)lround(d->w * resolution);
    in->h = h < 8 ? 8 : h;
    in->w = w < 8 ? 8 : w;
    float mean[3], std[3];
    cs_dataset_stats(d, mean, std);
    in->eval = (cs_augment){.out_h = in->h, .out_w = in->w};
    memcpy(in->eval.mean, mean, sizeof mean);
    memcpy(in->eval.std, std, sizeof std);
    in->train = in->eval;
    if (augment) {
        in->train.crop_pad = (in->h + 7) / 8;
        in->train.flip = 1;
    }
}
