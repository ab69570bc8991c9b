/* policy.c: what every scaling policy shares (policy.h): the exact search on
 * the k/1000 coefficient grid, counting and filling a candidate, the widest
 * network for given depths, the budget error, and reading a budget as people
 * write it ("1M", "2.5M", "1500k"). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/arch.h"
#include "cilscale/policy.h"

int64_t cs_search_last(int64_t kmin, int64_t kmax, double denom, int (*fits)(double x, void *ctx), void *ctx)
{
    if (kmax < kmin || !fits((double)kmin / denom, ctx))
        return kmin - 1;
    /* Invariant: fits(lo) holds; hi is the first k known not to fit (or kmax + 1). */
    int64_t lo = kmin, hi = kmax + 1;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (fits((double)mid / denom, ctx))
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int64_t cs_policy_count(const cs_scale_request *req, double w, const int *depths)
{
    cs_arch_config c = req->base;
    c.w = w;
    memcpy(c.depths, depths, sizeof(int) * (size_t)req->arch->n_stages);
    int64_t n = 0;
    if (cs_arch_count(req->arch, &c, &n, NULL))
        return 0;
    return n;
}

int cs_policy_fill(const cs_scale_request *req, double w, const int *depths, cs_scale_result *res, cs_error *err)
{
    memset(&res->cfg, 0, sizeof res->cfg);
    res->cfg = req->base;
    res->cfg.w = w;
    memset(res->cfg.depths, 0, sizeof res->cfg.depths);
    memcpy(res->cfg.depths, depths, sizeof(int) * (size_t)req->arch->n_stages);
    res->w = w;
    res->n_stages = req->arch->n_stages;
    int rc = cs_arch_count(req->arch, &res->cfg, &res->params, err);
    if (rc)
        return rc;
    memset(res->widths, 0, sizeof res->widths);
    cs_arch_widths(req->arch, &res->cfg, res->widths);
    return CS_OK;
}

struct widest_search {
    const cs_scale_request *req;
    const int *depths;
};

static int widest_fits(double w, void *ctx)
{
    const struct widest_search *s = ctx;
    return cs_policy_count(s->req, w, s->depths) <= s->req->budget;
}

int cs_policy_widest(const cs_scale_request *req, const int *depths, cs_scale_result *res, cs_error *err)
{
    struct widest_search s = {req, depths};
    int64_t k = cs_search_last(1, (int64_t)CS_COEF_MAX * CS_GRID, CS_GRID, widest_fits, &s);
    if (k < 1)
        return cs_policy_budget_error(req, cs_policy_count(req, 1.0 / CS_GRID, depths), err);
    int rc = cs_policy_fill(req, (double)k / CS_GRID, depths, res, err);
    if (rc)
        return rc;
    res->d = 1.0;
    res->resolution = 1.0;
    res->phi = 0.0;
    return CS_OK;
}

int cs_policy_budget_error(const cs_scale_request *req, int64_t smallest, cs_error *err)
{
    return cs_error_set(err, CS_ERR_BUDGET,
                        "budget %lld is below the smallest network policy '%s' can make from %s: "
                        "%lld parameters",
                        (long long)req->budget, req->policy_name ? req->policy_name : "?",
                        req->arch_name ? req->arch_name : "this architecture", (long long)smallest);
}

int cs_budget_parse(const char *s, int64_t *out, cs_error *err)
{
    static const char expect[] = "expected a positive whole number of parameters such as 1M, 2.5M, "
                                 "1500k, 3e6 or 1000000";
    if (!s || !*s)
        return cs_error_set(err, CS_ERR_ARG, "budget '': %s", expect);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || isspace((unsigned char)*s))
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1e3; end++; break;
    case 'm': case 'M': mult = 1e6; end++; break;
    case 'g': case 'G': mult = 1e9; end++; break;
    default: break;
    }
    if (*end != '\0' || !isfinite(v))
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    double n = v * mult;
    double r = floor(n + 0.5);
    if (!(n > 0) || fabs(n - r) > 1e-9 * (r > 1 ? r : 1) || r > 9e15)
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    if (r < 1)
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    *out = (int64_t)r;
    return CS_OK;
}

void cs_budget_short(int64_t budget, char *buf, size_t size)
{
    static const struct { int64_t unit; const char *suffix; } units[] = {{1000000000, "G"}, {1000000, "M"}, {1000, "k"}};
    for (int i = 0; i < 3; i++) {
        /* exact, with at most three decimals and three digits before the point */
        if (budget < units[i].unit || budget % (units[i].unit / 1000) || budget / units[i].unit >= 1000)
            continue;
        snprintf(buf, size, "%.10g%s", (double)budget / (double)units[i].unit, units[i].suffix);
        return;
    }
    snprintf(buf, size, "%lld", (long long)budget);
}
