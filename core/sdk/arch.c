/* arch.c: the width/depth arithmetic every architecture shares (arch.h): rounding,
 * per-stage depths and widths, checking and counting a configuration, building it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cilscale/arch.h"

/* Coefficients are products like 1.2^phi * n: allow for the last bits so that
 * 0.5 * 3 rounds up and 1.2^0 * 2 does not ceil to 3. */
#define CS_ROUND_TOL 1e-9

int cs_make_divisible(double v, int divisor)
{
    int new_v = (int)floor(v + divisor / 2.0) / divisor * divisor;
    if (new_v < divisor)
        new_v = divisor;
    if (new_v < 0.9 * v)
        new_v += divisor;
    return new_v;
}

int cs_round_half_up(double x) { return (int)floor(x + 0.5 + CS_ROUND_TOL); }

int cs_ceil_tol(double x) { return (int)ceil(x - CS_ROUND_TOL); }

int cs_arch_divisor(const cs_arch_iface *a) { return a->width_divisor > 0 ? a->width_divisor : 8; }

void cs_arch_depths_for(const cs_arch_iface *a, double d, cs_depth_rounding r, int *depths)
{
    for (int i = 0; i < a->n_stages; i++) {
        double x = d * a->stages[i].ref_depth;
        int n;
        if (r == CS_DEPTH_AUTHORS) {
            /* exactly as their Python does it, on the same double product */
            n = (int)(x + 0.5);
            n = n < 1 ? 1 : n;
            if (n < 0.9 * x)
                n += 1;
        } else {
            n = r == CS_DEPTH_CEIL ? cs_ceil_tol(x) : cs_round_half_up(x);
        }
        depths[i] = n < 1 ? 1 : n;
    }
}

cs_depth_rounding cs_convention_depths(cs_convention c)
{
    return c == CS_CONVENTION_CILSCALE_01 ? CS_DEPTH_ROUND_HALF_UP : CS_DEPTH_AUTHORS;
}

int cs_arch_is_reference(const cs_arch_iface *a, const cs_arch_config *cfg)
{
    if (cfg->w != 1.0)
        return 0;
    for (int i = 0; i < a->n_stages; i++)
        if (cfg->depths[i] != a->stages[i].ref_depth)
            return 0;
    return 1;
}

void cs_arch_widths(const cs_arch_iface *a, const cs_arch_config *cfg, int *widths)
{
    if (a->stage_widths) {
        a->stage_widths(cfg, widths);
        return;
    }
    int div = cs_arch_divisor(a);
    for (int i = 0; i < a->n_stages; i++)
        widths[i] = cs_make_divisible(cfg->w * a->stages[i].ref_width, div);
}

int cs_arch_ref_blocks(const cs_arch_iface *a)
{
    int n = 0;
    for (int i = 0; i < a->n_stages; i++)
        n += a->stages[i].ref_depth;
    return n;
}

int cs_arch_blocks(const cs_arch_iface *a, const int *depths)
{
    int n = 0;
    for (int i = 0; i < a->n_stages; i++)
        n += depths[i];
    return n;
}

int cs_arch_check(const cs_arch_iface *a, const cs_arch_config *cfg, cs_error *err)
{
    if (!a || !a->stages || !a->count_params || a->n_stages < 1 || a->n_stages > CS_MAX_STAGES)
        return cs_error_set(err, CS_ERR_ARG, "architecture interface is incomplete");
    if (!(cfg->w > 0) || !isfinite(cfg->w))
        return cs_error_set(err, CS_ERR_ARG, "width coefficient %g: expected a number > 0", cfg->w);
    for (int i = 0; i < a->n_stages; i++)
        if (cfg->depths[i] < 1)
            return cs_error_set(err, CS_ERR_ARG, "depth of stage %d (%s) is %d: expected >= 1", i + 1,
                                a->stages[i].name, cfg->depths[i]);
    if (cfg->in_channels < 1)
        return cs_error_set(err, CS_ERR_ARG, "input channels %d: expected >= 1", cfg->in_channels);
    if (cfg->n_classes < 1)
        return cs_error_set(err, CS_ERR_ARG, "classes %d: expected >= 1", cfg->n_classes);
    if (cfg->stem != CS_STEM_IMAGENET && cfg->stem != CS_STEM_SMALL)
        return cs_error_set(err, CS_ERR_ARG, "stem %d: expected imagenet or small", (int)cfg->stem);
    if (cfg->head != CS_HEAD_LINEAR && cfg->head != CS_HEAD_COSINE)
        return cs_error_set(err, CS_ERR_ARG, "head %d: expected linear or cosine", (int)cfg->head);
    if (cfg->convention != CS_CONVENTION_AUTHORS && cfg->convention != CS_CONVENTION_CILSCALE_01)
        return cs_error_set(err, CS_ERR_ARG, "convention %d: expected authors or cilscale-0.1", (int)cfg->convention);
    return CS_OK;
}

int cs_arch_count(const cs_arch_iface *a, const cs_arch_config *cfg, int64_t *params, cs_error *err)
{
    int rc = cs_arch_check(a, cfg, err);
    if (rc)
        return rc;
    *params = a->count_params(cfg);
    return CS_OK;
}

cs_arch_config cs_arch_reference(const cs_arch_iface *a, const cs_arch_config *base)
{
    cs_arch_config c = *base;
    c.w = 1.0;
    for (int i = 0; i < CS_MAX_STAGES; i++)
        c.depths[i] = i < a->n_stages ? a->stages[i].ref_depth : 0;
    return c;
}

int cs_arch_build(const cs_arch_iface *a, const char *arch_name, cs_graph *g, const cs_arch_config *cfg, int x,
                  int *features, int *logits, cs_error *err)
{
    int rc = cs_arch_check(a, cfg, err);
    if (rc)
        return rc;
    if (!a->build)
        return cs_error_set(err, CS_ERR_ARG, "architecture %s can be counted but not built (no build entry)",
                            arch_name);
    int f = a->build(g, cfg, x);
    cs_graph_scope(g, NULL);
    const char *head = a->head_name ? a->head_name : "fc";
    int y = cfg->head == CS_HEAD_COSINE ? cs_cosine_linear(g, head, f, cfg->n_classes, 1.0f)
                                        : cs_linear(g, head, f, cfg->n_classes, 1, a->head_init);
    rc = cs_graph_status(g, err);
    if (rc)
        return rc;
    *features = f;
    *logits = y;
    return CS_OK;
}

static const char *const stem_names[] = {"imagenet", "small"};
static const char *const head_names[] = {"linear", "cosine"};

const char *cs_stem_name(cs_stem s) { return (unsigned)s < 2 ? stem_names[s] : "?"; }
const char *cs_head_name(cs_head h) { return (unsigned)h < 2 ? head_names[h] : "?"; }

static const char *const convention_names[] = {"authors", "cilscale-0.1"};

const char *cs_convention_name(cs_convention c) { return (unsigned)c < 2 ? convention_names[c] : "?"; }

int cs_convention_parse(const char *s, cs_convention *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(s, convention_names[i]) == 0) {
            *out = (cs_convention)i;
            return CS_OK;
        }
    return CS_ERR_ARG;
}

int cs_stem_parse(const char *s, cs_stem *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(s, stem_names[i]) == 0) {
            *out = (cs_stem)i;
            return CS_OK;
        }
    return CS_ERR_ARG;
}

int cs_head_parse(const char *s, cs_head *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(s, head_names[i]) == 0) {
            *out = (cs_head)i;
            return CS_OK;
        }
    return CS_ERR_ARG;
}
