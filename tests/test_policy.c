/* test_policy.c: every policy on every architecture: within budget, as large as its grid allows, monotone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *const archs[] = {"resnet18", "mobilenetv2", "shufflenetv2"};
static const char *const policies[] = {"psi", "compound", "width", "depth"};
static const int64_t budgets[] = {200000, 500000, 1000000, 2500000, 5000000, 20000000};

static cs_scale_request request(const char *arch, const char *policy, int64_t budget)
{
    cs_scale_request r = {
        .arch_name = arch,
        .arch = tu_arch(arch),
        .policy_name = policy,
        .budget = budget,
        .base = {.in_channels = 3, .n_classes = 100, .stem = CS_STEM_IMAGENET, .head = CS_HEAD_LINEAR},
    };
    return r;
}

/* The grid point after x, computed as the policies do (k / CS_GRID): x + 0.001
 * can differ in the last bit, and w * c_ref often sits on a rounding edge. */
static double next_point(double x) { return (double)(llround(x * CS_GRID) + 1) / CS_GRID; }

/* The count of the next point on the policy's grid after res. */
static int64_t next_finer(const char *policy, const cs_scale_request *req, const cs_scale_result *res)
{
    int depths[CS_MAX_STAGES];
    if (!strcmp(policy, "compound")) {
        double phi = next_point(res->phi);
        cs_arch_depths_for(req->arch, pow(1.2, phi), CS_DEPTH_CEIL, depths);
        return cs_policy_count(req, pow(1.1, phi), depths);
    }
    if (!strcmp(policy, "depth")) {
        cs_arch_depths_for(req->arch, next_point(res->d), CS_DEPTH_AUTHORS, depths);
        return cs_policy_count(req, 1.0, depths);
    }
    return cs_policy_count(req, next_point(res->w), res->cfg.depths);
}

START_TEST(within_budget_and_maximal)
{
    int checked = 0;
    for (int a = 0; a < 3; a++)
        for (int p = 0; p < 4; p++)
            for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
                cs_scale_request req = request(archs[a], policies[p], budgets[b]);
                cs_scale_result res;
                cs_error err;
                int rc = tu_policy(policies[p])->scale(&req, &res, &err);
                if (rc == CS_ERR_BUDGET) {
                    /* then it must say the smallest, and that must be over */
                    const char *num = strstr(err.msg, "make from");
                    ck_assert_msg(num && strstr(err.msg, "parameters"), "%s", err.msg);
                    long long smallest = atoll(strchr(num, ':') + 1);
                    ck_assert_msg(smallest > budgets[b], "%s", err.msg);
                    continue;
                }
                ck_assert_msg(rc == CS_OK, "%s/%s/%lld: %s", archs[a], policies[p], (long long)budgets[b], err.msg);
                ck_assert_msg(res.params <= budgets[b], "%s/%s: %lld > %lld", archs[a], policies[p],
                              (long long)res.params, (long long)budgets[b]);
                int64_t recount = 0;
                ck_assert_int_eq(cs_arch_count(req.arch, &res.cfg, &recount, NULL), CS_OK);
                ck_assert_int_eq(recount, res.params);
                int64_t finer = next_finer(policies[p], &req, &res);
                ck_assert_msg(finer > budgets[b], "%s/%s/%lld: the next grid point (%lld params) also fits",
                              archs[a], policies[p], (long long)budgets[b], (long long)finer);
                checked++;
            }
    ck_assert_int_ge(checked, 50); /* most combinations fit: the loop really ran */
}
END_TEST

START_TEST(psi_is_shallowest)
{
    for (int a = 0; a < 3; a++) {
        cs_scale_request req = request(archs[a], "psi", 1000000);
        cs_scale_result res;
        ck_assert_int_eq(tu_policy("psi")->scale(&req, &res, NULL), CS_OK);
        for (int s = 0; s < req.arch->n_stages; s++)
            ck_assert_int_eq(res.cfg.depths[s], 1);
        ck_assert_double_eq_tol(res.d, (double)req.arch->n_stages / cs_arch_ref_blocks(req.arch), 1e-12);
        /* no other policy's network is shallower, and none is larger at equal
         * depth (compound's w is off psi's grid, so compare counts, not w) */
        for (int p = 1; p < 4; p++) {
            cs_scale_result other;
            req.policy_name = policies[p];
            if (tu_policy(policies[p])->scale(&req, &other, NULL) != CS_OK)
                continue;
            ck_assert_int_ge(cs_arch_blocks(req.arch, other.cfg.depths), cs_arch_blocks(req.arch, res.cfg.depths));
            if (cs_arch_blocks(req.arch, other.cfg.depths) == req.arch->n_stages)
                ck_assert_int_le(other.params, res.params);
        }
    }
    /* the example: resnet18 at 1M keeps half its blocks */
    cs_scale_request req = request("resnet18", "psi", 1000000);
    cs_scale_result res;
    ck_assert_int_eq(tu_policy("psi")->scale(&req, &res, NULL), CS_OK);
    ck_assert_double_eq_tol(res.d, 0.5, 1e-12);
    ck_assert(res.w > 0.4 && res.w < 0.5);
}
END_TEST

START_TEST(monotone_in_budget)
{
    for (int a = 0; a < 3; a++)
        for (int p = 0; p < 4; p++) {
            int64_t last_params = 0;
            double last_w = 0, last_d = 0;
            for (int64_t m = 300000; m <= 12000000; m = m * 5 / 4) {
                cs_scale_request req = request(archs[a], policies[p], m);
                cs_scale_result res;
                if (tu_policy(policies[p])->scale(&req, &res, NULL) != CS_OK) {
                    ck_assert_int_eq(last_params, 0); /* once a budget fits, larger ones do */
                    continue;
                }
                ck_assert_msg(res.params >= last_params && res.w >= last_w - 1e-12 && res.d >= last_d - 1e-12,
                              "%s/%s shrinks from budget %lld on", archs[a], policies[p], (long long)m);
                last_params = res.params;
                last_w = res.w;
                last_d = res.d;
            }
            ck_assert_int_gt(last_params, 0);
        }
}
END_TEST

START_TEST(reference_budget_gives_reference_net)
{
    /* With exactly the reference count as budget, width, depth and compound
     * (at phi = 0) all land on the reference network itself. */
    for (int a = 0; a < 3; a++) {
        const cs_arch_iface *arch = tu_arch(archs[a]);
        cs_arch_config ref = tu_config(arch, 100);
        int64_t n;
        cs_arch_count(arch, &ref, &n, NULL);
        for (int p = 1; p < 4; p++) {
            cs_scale_request req = request(archs[a], policies[p], n);
            cs_scale_result res;
            ck_assert_int_eq(tu_policy(policies[p])->scale(&req, &res, NULL), CS_OK);
            ck_assert_msg(res.params == n, "%s/%s: %lld params at the reference budget %lld", archs[a],
                          policies[p], (long long)res.params, (long long)n);
            ck_assert_mem_eq(res.cfg.depths, ref.depths, sizeof(int) * (size_t)arch->n_stages);
        }
        cs_scale_request req = request(archs[a], "compound", n);
        cs_scale_result res;
        tu_policy("compound")->scale(&req, &res, NULL);
        ck_assert_double_eq_tol(res.phi, 0, 1e-12);
        ck_assert_double_eq_tol(res.resolution, 1, 1e-12);
    }
}
END_TEST

START_TEST(compound_coefficients)
{
    cs_scale_request req = request("mobilenetv2", "compound", 1000000);
    cs_scale_result res;
    ck_assert_int_eq(tu_policy("compound")->scale(&req, &res, NULL), CS_OK);
    ck_assert(res.phi < 0);
    ck_assert_double_eq_tol(res.w, pow(1.1, res.phi), 1e-12);
    ck_assert_double_eq_tol(res.d, pow(1.2, res.phi), 1e-12);
    ck_assert_double_eq_tol(res.resolution, pow(1.15, res.phi), 1e-12);
    int depths[CS_MAX_STAGES];
    cs_arch_depths_for(req.arch, res.d, CS_DEPTH_CEIL, depths);
    ck_assert_mem_eq(res.cfg.depths, depths, sizeof(int) * 7);
    /* and it grows past the reference when the budget does */
    req.budget = 10000000;
    ck_assert_int_eq(tu_policy("compound")->scale(&req, &res, NULL), CS_OK);
    ck_assert(res.phi > 0 && res.w > 1 && res.resolution > 1);
}
END_TEST

START_TEST(below_minimum_says_the_minimum)
{
    for (int a = 0; a < 3; a++)
        for (int p = 0; p < 4; p++) {
            cs_scale_request req = request(archs[a], policies[p], 1000);
            cs_scale_result res;
            cs_error err;
            ck_assert_int_eq(tu_policy(policies[p])->scale(&req, &res, &err), CS_ERR_BUDGET);
            ck_assert_msg(strstr(err.msg, "budget 1000 is below the smallest network") && strstr(err.msg, archs[a]) &&
                              strstr(err.msg, policies[p]),
                          "%s", err.msg);
            /* the minimum it names is a network the policy would pick at that budget */
            long long smallest = atoll(strrchr(err.msg, ':') + 1);
            ck_assert_int_gt(smallest, 1000);
            req.budget = smallest;
            ck_assert_msg(tu_policy(policies[p])->scale(&req, &res, &err) == CS_OK, "%s/%s at its minimum %lld: %s",
                          archs[a], policies[p], smallest, err.msg);
            ck_assert_int_eq(res.params, smallest);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("policy");
    TCase *t = tcase_create("policies");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, within_budget_and_maximal);
    tcase_add_test(t, psi_is_shallowest);
    tcase_add_test(t, monotone_in_budget);
    tcase_add_test(t, reference_budget_gives_reference_net);
    tcase_add_test(t, compound_coefficients);
    tcase_add_test(t, below_minimum_says_the_minimum);
    suite_add_tcase(s, t);
    return tu_run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
