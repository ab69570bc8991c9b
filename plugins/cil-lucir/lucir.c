/* lucir.c: memoryless LUCIR (Hou et al. 2019) as the paper's code runs it: cosine
 * classifier, imprinted new classes, less-forget distillation, old classes frozen. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cilscale/cil.h>
#include <cilscale/plugin.h>

/* With no exemplar memory the margin-ranking term (which ranks stored old
 * images' old-class scores above new classes') has nothing to act on, so
 * memoryless LUCIR is: cross-entropy on scaled cosine logits + lambda *
 * (1 - cos(f_old(x), f_new(x))). */
typedef struct lucir {
    double lambda_base; /* LUCIR's default: 5 on CIFAR-100, the paper's code uses 10 */
    float lambda;       /* of the current state */
} lucir;

static int create(void **ctx, cs_error *err)
{
    lucir *l = calloc(1, sizeof *l);
    if (!l)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    l->lambda_base = 10.0;
    *ctx = l;
    return CS_OK;
}

static void destroy(void *ctx) { free(ctx); }

static int option(void *ctx, const char *key, const char *value, cs_error *err)
{
    lucir *l = ctx;
    if (strcmp(key, "lambda_base") != 0)
        return cs_error_set(err, CS_ERR_ARG, "unknown key '%s' (lucir knows: lambda_base)", key);
    char *end;
    double v = strtod(value, &end);
    if (end == value || *end || !(v >= 0) || !isfinite(v))
        return cs_error_set(err, CS_ERR_ARG, "lambda_base '%s': expected a number >= 0", value);
    l->lambda_base = v;
    return CS_OK;
}

static int build_state(void *ctx, cs_graph *g, const cs_cil_net *net, const cs_cil_state *st, cs_error *err)
{
    lucir *l = ctx;
    if (st->index == 0)
        return CS_OK; /* nothing to remember yet */
    /* Adaptive weight: more old classes relative to new ones, more weight on remembering. */
    l->lambda = (float)(l->lambda_base * sqrt((double)st->n_old / (double)st->n_new));
    int lf = cs_cosine_embed(g, net->features, net->old_features);
    cs_graph_add_loss(g, lf, l->lambda);
    return cs_graph_status(g, err);
}

static int begin_state(void *ctx, const cs_cil_host *host, const cs_cil_net *net, const cs_cil_state *st,
                       cs_error *err)
{
    (void)ctx;
    if (st->index == 0)
        return CS_OK;
    const cs_tensor *w = cs_graph_tensor(net->g, net->head_weight);
    int k = w->shape[0], f = w->shape[1];
    float *weights = malloc(sizeof(float) * (size_t)k * (size_t)f);
    float *means = malloc(sizeof(float) * (size_t)st->n_new * (size_t)f);
    int rc = CS_OK;
    if (!weights || !means) {
        rc = cs_error_set(err, CS_ERR_NOMEM, "out of memory imprinting %d classes", st->n_new);
        goto out;
    }
    if ((rc = host->read_param(host->core, net->head_weight, weights, err)) ||
        (rc = host->class_feature_means(host->core, st->n_old, st->n_new, means, err)))
        goto out;
    /* Imprinting (Qi et al. 2018): a new class's weight is the direction of
     * its mean normalised feature, at the old weights' mean length, so new
     * and old logits start on the same scale. */
    double old_norm = 0;
    for (int c = 0; c < st->n_old; c++) {
        double s = 0;
        for (int j = 0; j < f; j++)
            s += (double)weights[(size_t)c * f + j] * weights[(size_t)c * f + j];
        old_norm += sqrt(s);
    }
    old_norm /= st->n_old;
    for (int c = 0; c < st->n_new; c++) {
        const float *m = means + (size_t)c * f;
        double s = 0;
        for (int j = 0; j < f; j++)
            s += (double)m[j] * m[j];
        double scale = s > 0 ? old_norm / sqrt(s) : 0;
        for (int j = 0; j < f; j++)
            weights[(size_t)(st->n_old + c) * f + j] = (float)(m[j] * scale);
    }
    rc = host->write_param(host->core, net->head_weight, weights, err);
out:
    free(weights);
    free(means);
    return rc;
}

static int frozen_ranges(void *ctx, const cs_cil_net *net, const cs_cil_state *st, int64_t (*ranges)[2], int max)
{
    (void)ctx;
    if (st->index == 0 || max < 1)
        return 0;
    /* The old classes' weights stay as they were (the paper's code gives them lr 0). */
    const cs_tensor *w = cs_graph_tensor(net->g, net->head_weight);
    ranges[0][0] = w->offset;
    ranges[0][1] = (int64_t)st->n_old * w->shape[1];
    return 1;
}

static void describe(void *ctx, char *buf, int size)
{
    const lucir *l = ctx;
    snprintf(buf, (size_t)size, "lucir (memoryless): lambda_base %g, cosine classifier, imprinting", l->lambda_base);
}

static const cs_cil_iface iface = {
    .head = CS_HEAD_COSINE,
    .no_last_relu = 1,
    .needs_old_features = 1,
    .create = create,
    .destroy = destroy,
    .option = option,
    .build_state = build_state,
    .begin_state = begin_state,
    .frozen_ranges = frozen_ranges,
    .describe = describe,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_CIL,
    .name = "lucir",
    .version = "1.0.0",
    .description = "memoryless LUCIR (Hou et al. 2019): cosine classifier, imprinting, less-forget distillation",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
