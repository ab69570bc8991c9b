/* test_scaling.c: the shared scaling arithmetic: make_divisible, depth rounding, budgets, the grid search. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(make_divisible_matches_torchvision)
{
    /* Values from torchvision's _make_divisible(v, 8). */
    static const struct { double v; int div, want; } cases[] = {
        {32 * 0.35, 8, 16}, /* 11.2 rounds to 8, which is > 10% below: bumped to 16 */
        {24 * 0.5, 8, 16},  /* 12: a tie rounds up */
        {64 * 0.445, 8, 32}, {3, 8, 8}, {8, 8, 8}, {100, 8, 104}, {20, 8, 24}, {11, 8, 16},
        {1280 * 1.4, 8, 1792}, {320 * 0.75, 8, 240}, {116, 4, 116}, {116, 8, 120}, {58, 4, 60},
        {35.9, 8, 40}, {35, 8, 32}, {36, 8, 40},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(cs_make_divisible(cases[i].v, cases[i].div) == cases[i].want,
                      "make_divisible(%g, %d) = %d, expected %d", cases[i].v, cases[i].div,
                      cs_make_divisible(cases[i].v, cases[i].div), cases[i].want);
}
END_TEST

START_TEST(make_divisible_is_monotone)
{
    /* Policies binary-search w: the rounding must never decrease as v grows. */
    for (int div = 4; div <= 8; div += 4) {
        int last = 0;
        for (double v = 0.01; v < 600; v += 0.01) {
            int r = cs_make_divisible(v, div);
            ck_assert_msg(r >= last, "make_divisible(%g, %d) = %d < %d", v, div, r, last);
            ck_assert_int_eq(r % div, 0);
            ck_assert(r >= 0.9 * v);
            last = r;
        }
    }
}
END_TEST

START_TEST(depth_rounding)
{
    ck_assert_int_eq(cs_round_half_up(0.5), 1);
    ck_assert_int_eq(cs_round_half_up(1.5), 2);
    ck_assert_int_eq(cs_round_half_up(2.5), 3); /* not banker's rounding */
    ck_assert_int_eq(cs_round_half_up(0.49), 0);
    ck_assert_int_eq(cs_round_half_up(0.25 * 2), 1);
    ck_assert_int_eq(cs_round_half_up(0.1 * 3 * 5), 2); /* 1.5000000000000002 */
    ck_assert_int_eq(cs_ceil_tol(pow(1.2, 0) * 2), 2);
    ck_assert_int_eq(cs_ceil_tol(2.0 + 1e-12), 2); /* a rounding hair is not a new block */
    ck_assert_int_eq(cs_ceil_tol(2.1), 3);
    ck_assert_int_eq(cs_ceil_tol(0.01), 1);
}
END_TEST

/* The AdvisIL authors' depth rule, against block counts computed by running
 * their own constructors (models/my{ResNet,MobileNet,ShuffleNet}.py; the
 * table in docs/advisil-reference.md). */
START_TEST(depths_authors_rule)
{
    static const struct {
        const char *arch;
        double d;
        int want[7];
    } cases[] = {
        {"resnet18", 0.1, {1, 1, 1, 1}},           {"resnet18", 0.5, {1, 1, 1, 1}},
        {"resnet18", 0.6, {2, 2, 2, 2}},           {"resnet18", 0.8, {2, 2, 2, 2}},
        {"resnet18", 1.0, {2, 2, 2, 2}},           {"mobilenetv2", 0.2, {1, 1, 1, 1, 1, 1, 1}},
        {"mobilenetv2", 0.4, {1, 1, 2, 2, 2, 2, 1}}, {"mobilenetv2", 0.5, {1, 1, 2, 2, 2, 2, 1}},
        {"mobilenetv2", 0.6, {1, 2, 2, 3, 2, 2, 1}}, {"mobilenetv2", 0.8, {1, 2, 3, 3, 3, 3, 1}},
        {"mobilenetv2", 1.0, {1, 2, 3, 4, 3, 3, 1}}, {"mobilenetv2", 2.0, {2, 4, 6, 8, 6, 6, 2}},
        {"shufflenetv2", 0.1, {1, 1, 1}},          {"shufflenetv2", 0.2, {1, 2, 1}},
        {"shufflenetv2", 0.4, {2, 3, 2}},          {"shufflenetv2", 0.5, {2, 4, 2}},
        {"shufflenetv2", 0.6, {3, 5, 3}},          {"shufflenetv2", 0.75, {3, 6, 3}},
        {"shufflenetv2", 0.8, {3, 6, 3}},          {"shufflenetv2", 1.0, {4, 8, 4}},
        {"shufflenetv2", 2.0, {8, 16, 8}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cs_arch_iface *a = tu_arch(cases[i].arch);
        int d[CS_MAX_STAGES];
        cs_arch_depths_for(a, cases[i].d, CS_DEPTH_AUTHORS, d);
        for (int s = 0; s < a->n_stages; s++)
            ck_assert_msg(d[s] == cases[i].want[s], "%s d=%g stage %d: %d blocks, the authors' code has %d",
                          cases[i].arch, cases[i].d, s, d[s], cases[i].want[s]);
    }
}
END_TEST

START_TEST(depths_for_coefficient)
{
    const cs_arch_iface *a = tu_arch("mobilenetv2"); /* reference depths 1,2,3,4,3,3,1 */
    int d[CS_MAX_STAGES];
    cs_arch_depths_for(a, 0.5, CS_DEPTH_ROUND_HALF_UP, d);
    static const int half_up[] = {1, 1, 2, 2, 2, 2, 1}; /* 0.5,1,1.5,2,1.5,1.5,0.5 */
    ck_assert_mem_eq(d, half_up, sizeof half_up);
    cs_arch_depths_for(a, 0.5, CS_DEPTH_CEIL, d);
    static const int ceiled[] = {1, 1, 2, 2, 2, 2, 1};
    ck_assert_mem_eq(d, ceiled, sizeof ceiled);
    cs_arch_depths_for(a, 0.3, CS_DEPTH_CEIL, d);
    static const int ceil3[] = {1, 1, 1, 2, 1, 1, 1}; /* 0.3,0.6,0.9,1.2,... */
    ck_assert_mem_eq(d, ceil3, sizeof ceil3);
    cs_arch_depths_for(a, 0.001, CS_DEPTH_ROUND_HALF_UP, d);
    for (int i = 0; i < a->n_stages; i++)
        ck_assert_int_eq(d[i], 1);
    cs_arch_depths_for(a, 2, CS_DEPTH_ROUND_HALF_UP, d);
    static const int twice[] = {2, 4, 6, 8, 6, 6, 2};
    ck_assert_mem_eq(d, twice, sizeof twice);
    ck_assert_int_eq(cs_arch_ref_blocks(a), 17);
    ck_assert_int_eq(cs_arch_blocks(a, twice), 34);
}
END_TEST

START_TEST(budget_parsing)
{
    static const struct { const char *s; int64_t want; } good[] = {
        {"1M", 1000000}, {"2.5M", 2500000}, {"1500k", 1500000}, {"3e6", 3000000}, {"1000000", 1000000},
        {"1.5m", 1500000}, {"2K", 2000}, {"1G", 1000000000}, {"0.25M", 250000}, {"1", 1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = 0;
        cs_error err;
        ck_assert_msg(cs_budget_parse(good[i].s, &v, &err) == CS_OK, "'%s': %s", good[i].s, err.msg);
        ck_assert_msg(v == good[i].want, "'%s' read as %lld", good[i].s, (long long)v);
    }
    static const char *const bad[] = {"", "abc", "1.5", "-1", "0", "1Mx", "1e30", " 1", "nan", "inf", "0.4",
                                      "M", "1 M", "1.0000001M"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        cs_error err;
        ck_assert_msg(cs_budget_parse(bad[i], &v, &err) == CS_ERR_ARG, "'%s' was accepted", bad[i]);
        ck_assert_int_eq(v, 42);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        ck_assert_msg(strstr(err.msg, quoted) && strstr(err.msg, "expected"), "message: %s", err.msg);
    }
}
END_TEST

static int below(double x, void *ctx) { return x <= *(double *)ctx; }

START_TEST(grid_search)
{
    double limit = 0.3456;
    ck_assert_int_eq(cs_search_last(1, 64000, 1000, below, &limit), 345);
    limit = 0.0005; /* nothing fits */
    ck_assert_int_eq(cs_search_last(1, 64000, 1000, below, &limit), 0);
    limit = 1e9; /* everything fits */
    ck_assert_int_eq(cs_search_last(1, 64000, 1000, below, &limit), 64000);
    limit = -3.2;
    ck_assert_int_eq(cs_search_last(-50000, 50000, 1000, below, &limit), -3200);
    limit = 0.3; /* grid points are exact: 300/1000 <= 0.3 */
    ck_assert_int_eq(cs_search_last(1, 64000, 1000, below, &limit), 300);
}
END_TEST

START_TEST(config_checks_name_the_field)
{
    const cs_arch_iface *a = tu_arch("resnet18");
    cs_arch_config ok = tu_config(a, 10);
    cs_error err;
    int64_t n;
    cs_arch_config c = ok;
    c.w = 0;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "width"));
    c = ok;
    c.depths[2] = 0;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "layer3"));
    c = ok;
    c.n_classes = 0;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "classes"));
    c = ok;
    c.in_channels = 0;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "input channels"));
    c = ok;
    c.stem = (cs_stem)7;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "stem"));
    c = ok;
    c.head = (cs_head)7;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "head"));
    ck_assert_int_eq(cs_arch_count(a, &ok, &n, &err), CS_OK);
}
END_TEST

START_TEST(stem_and_head_names)
{
    cs_stem s;
    cs_head h;
    ck_assert_int_eq(cs_stem_parse("small", &s), CS_OK);
    ck_assert_int_eq(s, CS_STEM_SMALL);
    ck_assert_int_eq(cs_stem_parse("Small", &s), CS_ERR_ARG);
    ck_assert_int_eq(cs_head_parse("cosine", &h), CS_OK);
    ck_assert_int_eq(h, CS_HEAD_COSINE);
    ck_assert_int_eq(cs_head_parse("softmax", &h), CS_ERR_ARG);
    ck_assert_str_eq(cs_stem_name(CS_STEM_IMAGENET), "imagenet");
    ck_assert_str_eq(cs_head_name(CS_HEAD_LINEAR), "linear");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scaling");
    TCase *t = tcase_create("arithmetic");
    tcase_add_test(t, make_divisible_matches_torchvision);
    tcase_add_test(t, make_divisible_is_monotone);
    tcase_add_test(t, depth_rounding);
    tcase_add_test(t, depths_for_coefficient);
    tcase_add_test(t, depths_authors_rule);
    tcase_add_test(t, budget_parsing);
    tcase_add_test(t, grid_search);
    tcase_add_test(t, config_checks_name_the_field);
    tcase_add_test(t, stem_and_head_names);
    suite_add_tcase(s, t);
    return tu_run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
