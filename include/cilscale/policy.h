/* policy.h: the scaling-policy interface: budget + reference net -> (w, d, resolution). */
#ifndef CILSCALE_POLICY_H
#define CILSCALE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_scale_request {
    const char *arch_name;       /* for messages */
    const cs_arch_iface *arch;   /* the reference architecture */
    const char *policy_name;     /* for messages */
    int64_t budget;              /* m: the most parameters allowed, > 0 */
    cs_arch_config base;         /* in_channels, n_classes, stem, head (w, depths ignored) */
} cs_scale_request;

typedef struct cs_scale_result {
    double w;          /* width coefficient chosen */
    double d;          /* depth coefficient, as the policy defines it */
    double resolution; /* input resolution factor (1 = unchanged) */
    double phi;        /* compound coefficient where the policy has one, else 0 */
    cs_arch_config cfg;            /* the network chosen: w, depths, and base's fields */
    int n_stages;
    int widths[CS_MAX_STAGES];     /* per-stage output channels */
    int64_t params;                /* exact count of cfg, <= budget */
} cs_scale_result;

typedef struct cs_policy_iface {
    /* required: fill res with the network chosen for req, or fail with
     * CS_ERR_BUDGET when even the smallest network it can make is over the
     * budget (cs_policy_budget_error words that). */
    int (*scale)(const cs_scale_request *req, cs_scale_result *res, cs_error *err);
} cs_policy_iface;

/* ---- helpers a policy uses (libcilscale) ---- */

/* Searches a grid x_k = k / denom for k in [kmin, kmax] (computed as a
 * division so that grid points are exact to the last bit) and returns the
 * largest k with fits(x_k) true, for a fits that is monotone (true, then
 * false, as k grows). Returns kmin - 1 when fits(x_kmin) is false. */
int64_t cs_search_last(int64_t kmin, int64_t kmax, double denom,
                       int (*fits)(double x, void *ctx), void *ctx);

/* Fills res->cfg from req->base with w and depths, then widths and params. */
int cs_policy_fill(const cs_scale_request *req, double w, const int *depths,
                   cs_scale_result *res, cs_error *err);

/* The count of req's architecture at w and depths (0 on a bad config). */
int64_t cs_policy_count(const cs_scale_request *req, double w, const int *depths);

/* The widest w on the grid (1/CS_GRID .. CS_COEF_MAX) at fixed depths with
 * params <= budget, filled into res (d, resolution and phi left at 1, 1, 0);
 * CS_ERR_BUDGET when even w = 1/CS_GRID is over. psi, width and
 * `cilscale grid` are this search with different depths. */
int cs_policy_widest(const cs_scale_request *req, const int *depths, cs_scale_result *res, cs_error *err);

/* Words the over-budget failure the same way for every policy. */
int cs_policy_budget_error(const cs_scale_request *req, int64_t smallest, cs_error *err);

/* Parses a parameter budget: "1M", "2.5M", "1500k", "3e6", "1000000"
 * (suffixes k, M, G; case-insensitive). It must be a whole number > 0. */
int cs_budget_parse(const char *s, int64_t *out, cs_error *err);

/* A budget as the shortest text cs_budget_parse reads back to it: "1M",
 * "2.5M", "1500k", "123457". */
void cs_budget_short(int64_t budget, char *buf, size_t size);

/* The grid the shipped policies search (documented in the user guide):
 * w, d and phi are multiples of 1/CS_GRID; w and d lie in
 * [1/CS_GRID, CS_COEF_MAX], phi in [-CS_PHI_MAX, CS_PHI_MAX]. */
#define CS_GRID 1000
#define CS_COEF_MAX 64
#define CS_PHI_MAX 50

#ifdef __cplusplus
}
#endif
#endif
