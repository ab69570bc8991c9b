/* test_arch.c: the architecture plugins count parameters exactly (torchvision's numbers), for any configuration. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int64_t count(const char *arch, double w, int classes, cs_stem stem, cs_head head)
{
    const cs_arch_iface *a = tu_arch(arch);
    cs_arch_config c = tu_config(a, classes);
    c.w = w;
    c.stem = stem;
    c.head = head;
    int64_t n = -1;
    cs_error err;
    ck_assert_msg(cs_arch_count(a, &c, &n, &err) == CS_OK, "%s", err.msg);
    return n;
}

START_TEST(torchvision_counts)
{
    /* sum(p.numel() for p in torchvision.models.X(num_classes=K, ...).parameters()) */
    static const struct { const char *arch; double w; int classes; int64_t want; } cases[] = {
        {"resnet18", 1, 1000, 11689512},   {"resnet18", 1, 100, 11227812},
        {"mobilenetv2", 1, 1000, 3504872}, {"mobilenetv2", 1, 100, 2351972},
        {"shufflenetv2", 1, 1000, 2278604}, {"shufflenetv2", 1, 100, 1356104},
        {"mobilenetv2", 0.35, 1000, 1677128}, {"mobilenetv2", 0.5, 1000, 1968680},
        {"mobilenetv2", 0.75, 1000, 2636424}, {"mobilenetv2", 1.4, 1000, 6108776},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t n = count(cases[i].arch, cases[i].w, cases[i].classes, CS_STEM_IMAGENET, CS_HEAD_LINEAR);
        ck_assert_msg(n == cases[i].want, "%s w=%g K=%d: %lld parameters, torchvision has %lld", cases[i].arch,
                      cases[i].w, cases[i].classes, (long long)n, (long long)cases[i].want);
    }
}
END_TEST

START_TEST(scaled_resnet_by_hand)
{
    /* resnet18, w = 0.5, one block per stage, 100 classes, counted layer by
     * layer: stem 9,536; layer1 29,888 (with a 1x1 downsample, 64 -> 32);
     * layer2 57,728; layer3 230,144; layer4 919,040; fc 25,700. */
    const cs_arch_iface *a = tu_arch("resnet18");
    cs_arch_config c = tu_config(a, 100);
    c.w = 0.5;
    for (int i = 0; i < 4; i++)
        c.depths[i] = 1;
    int64_t n;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, NULL), CS_OK);
    ck_assert_int_eq(n, 1272036);
}
END_TEST

START_TEST(stem_and_head_variants)
{
    /* cosine head: no bias (K fewer), one learnable scale (+1) */
    static const char *const archs[] = {"resnet18", "mobilenetv2", "shufflenetv2"};
    for (int i = 0; i < 3; i++) {
        int64_t lin = count(archs[i], 0.7, 100, CS_STEM_IMAGENET, CS_HEAD_LINEAR);
        int64_t cos = count(archs[i], 0.7, 100, CS_STEM_IMAGENET, CS_HEAD_COSINE);
        ck_assert_int_eq(cos, lin - 100 + 1);
    }
    /* small stem: ResNet's 7x7 conv becomes 3x3 (3 * 64 * (49 - 9) fewer);
     * the others only change a stride, so their counts do not move */
    ck_assert_int_eq(count("resnet18", 1, 100, CS_STEM_SMALL, CS_HEAD_LINEAR), 11227812 - 3 * 64 * 40);
    ck_assert_int_eq(count("mobilenetv2", 1, 100, CS_STEM_SMALL, CS_HEAD_LINEAR), 2351972);
    ck_assert_int_eq(count("shufflenetv2", 1, 100, CS_STEM_SMALL, CS_HEAD_LINEAR), 1356104);
    /* one input channel (Fashion-MNIST): the first conv loses two thirds */
    const cs_arch_iface *a = tu_arch("resnet18");
    cs_arch_config c = tu_config(a, 100);
    c.in_channels = 1;
    int64_t n;
    ck_assert_int_eq(cs_arch_count(a, &c, &n, NULL), CS_OK);
    ck_assert_int_eq(n, 11227812 - 2 * 49 * 64);
}
END_TEST

START_TEST(reference_widths_at_w1)
{
    static const char *const archs[] = {"resnet18", "mobilenetv2", "shufflenetv2"};
    for (int i = 0; i < 3; i++) {
        const cs_arch_iface *a = tu_arch(archs[i]);
        cs_arch_config c = tu_config(a, 10);
        int widths[CS_MAX_STAGES];
        cs_arch_widths(a, &c, widths);
        for (int s = 0; s < a->n_stages; s++)
            ck_assert_msg(widths[s] == a->stages[s].ref_width, "%s %s: width %d at w = 1, reference %d",
                          archs[i], a->stages[s].name, widths[s], a->stages[s].ref_width);
    }
}
END_TEST

START_TEST(monotone_in_width_and_depth)
{
    /* Every policy's search relies on this. */
    static const char *const archs[] = {"resnet18", "mobilenetv2", "shufflenetv2"};
    for (int i = 0; i < 3; i++) {
        const cs_arch_iface *a = tu_arch(archs[i]);
        cs_arch_config c = tu_config(a, 100);
        int64_t last = 0, n;
        for (int k = 1; k <= 3000; k += 7) {
            c.w = k / 1000.0;
            ck_assert_int_eq(cs_arch_count(a, &c, &n, NULL), CS_OK);
            ck_assert_msg(n >= last, "%s: %lld params at w = %g, %lld just below", archs[i], (long long)n, c.w,
                          (long long)last);
            last = n;
        }
        c = tu_config(a, 100);
        for (int s = 0; s < a->n_stages; s++) {
            int64_t before, after;
            cs_arch_count(a, &c, &before, NULL);
            c.depths[s]++;
            cs_arch_count(a, &c, &after, NULL);
            ck_assert_msg(after > before, "%s: one more block in %s does not add parameters", archs[i],
                          a->stages[s].name);
        }
    }
}
END_TEST

START_TEST(shufflenet_halves_stay_even)
{
    /* The channel split needs an even width at every w. */
    const cs_arch_iface *a = tu_arch("shufflenetv2");
    cs_arch_config c = tu_config(a, 10);
    for (int k = 1; k <= 4000; k += 3) {
        c.w = k / 1000.0;
        int widths[CS_MAX_STAGES];
        cs_arch_widths(a, &c, widths);
        for (int s = 0; s < a->n_stages; s++)
            ck_assert_msg(widths[s] % 4 == 0, "w = %g: %s width %d", c.w, a->stages[s].name, widths[s]);
    }
}
END_TEST

/* The AdvisIL authors' grid points, counted by their code (models/scaler.py:
 * 3-channel input, torchvision stem, nn.Linear head with bias; N = 100 and
 * 1000 classes): the reference configurations of results/ref_configs.csv and
 * the reference network, docs/advisil-reference.md section 3. */
START_TEST(authors_grid_counts)
{
    static const struct { const char *arch; double w, d; int64_t n100, n1000; } cases[] = {
        {"resnet18", 0.5, 0.5, 1272036, 1503336},       {"resnet18", 0.6, 0.5, 1796452, 2070952},
        {"resnet18", 1.0, 0.5, 4957092, 5418792},       {"shufflenetv2", 1.6, 0.1, 1414660, 2337160},
        {"shufflenetv2", 2.6, 0.1, 2776572, 3699072},   {"shufflenetv2", 3.0, 0.1, 3440768, 4363268},
        {"shufflenetv2", 1.0, 1.0, 1356104, 2278604},   {"mobilenetv2", 1.0, 0.2, 1274084, 2426984},
        {"mobilenetv2", 1.4, 0.2, 2411620, 4025320},    {"mobilenetv2", 2.2, 0.2, 5732004, 8267304},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int k = 0; k < 2; k++) {
            const cs_arch_iface *a = tu_arch(cases[i].arch);
            cs_arch_config c = tu_config(a, k ? 1000 : 100);
            c.w = cases[i].w;
            cs_arch_depths_for(a, cases[i].d, cs_convention_depths(CS_CONVENTION_AUTHORS), c.depths);
            int64_t n = -1, want = k ? cases[i].n1000 : cases[i].n100;
            ck_assert_int_eq(cs_arch_count(a, &c, &n, NULL), CS_OK);
            ck_assert_msg(n == want, "%s (w, d) = (%g, %g), N = %d: %lld parameters, the authors' code has %lld",
                          cases[i].arch, cases[i].w, cases[i].d, c.n_classes, (long long)n, (long long)want);
        }
}
END_TEST

/* ShuffleNetV2's widths: the authors' multiples of 8 (stem included) unless
 * (w, depths) is the reference, where torchvision's 116/232/464 stay; the old
 * convention's multiples of 4 on request. */
START_TEST(shufflenet_width_conventions)
{
    static const struct { cs_convention conv; double w, d; int want[3]; } cases[] = {
        {CS_CONVENTION_AUTHORS, 0.5, 1.0, {56, 120, 232}},  {CS_CONVENTION_AUTHORS, 0.75, 1.0, {88, 176, 352}},
        {CS_CONVENTION_AUTHORS, 1.2, 1.0, {136, 280, 560}}, {CS_CONVENTION_AUTHORS, 1.0, 0.5, {120, 232, 464}},
        {CS_CONVENTION_AUTHORS, 1.0, 1.0, {116, 232, 464}}, {CS_CONVENTION_CILSCALE_01, 0.5, 1.0, {60, 116, 232}},
        {CS_CONVENTION_CILSCALE_01, 1.0, 0.5, {116, 232, 464}},
    };
    const cs_arch_iface *a = tu_arch("shufflenetv2");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_arch_config c = tu_config(a, 100);
        c.w = cases[i].w;
        c.convention = cases[i].conv;
        cs_arch_depths_for(a, cases[i].d, cs_convention_depths(cases[i].conv), c.depths);
        int widths[CS_MAX_STAGES];
        cs_arch_widths(a, &c, widths);
        for (int s = 0; s < 3; s++)
            ck_assert_msg(widths[s] == cases[i].want[s], "%s (%g, %g): %s has %d channels, expected %d",
                          cs_convention_name(cases[i].conv), cases[i].w, cases[i].d, a->stages[s].name, widths[s],
                          cases[i].want[s]);
    }
    /* the stem too: w = 0.5 has 16 (multiple of 8), not 12 */
    cs_arch_config c = tu_config(a, 100), old = c;
    c.w = old.w = 0.5;
    old.convention = CS_CONVENTION_CILSCALE_01;
    int64_t n_auth, n_old;
    cs_arch_count(a, &c, &n_auth, NULL);
    cs_arch_count(a, &old, &n_old, NULL);
    ck_assert_msg(n_auth != n_old, "the two conventions count ShuffleNetV2 at w = 0.5 alike (%lld)", (long long)n_auth);
    /* around w = 1 the count still grows with w (the policies' searches need it) */
    int64_t prev = 0;
    for (int k = 990; k <= 1010; k++) {
        c = tu_config(a, 100);
        c.w = k / 1000.0;
        int64_t n;
        cs_arch_count(a, &c, &n, NULL);
        ck_assert_msg(n >= prev, "w = %g: %lld parameters, fewer than just below", c.w, (long long)n);
        prev = n;
    }
}
END_TEST

/* Depth by convention: the authors' rule keeps ResNet18 at d = 0.6 at two
 * blocks per stage; cilscale 0.1's plain rounding made it one. */
START_TEST(depth_conventions)
{
    const cs_arch_iface *a = tu_arch("resnet18");
    int d[CS_MAX_STAGES];
    cs_arch_depths_for(a, 0.6, cs_convention_depths(CS_CONVENTION_AUTHORS), d);
    ck_assert_msg(d[0] == 2 && d[3] == 2, "authors, d = 0.6: %d,%d,%d,%d", d[0], d[1], d[2], d[3]);
    cs_arch_depths_for(a, 0.6, cs_convention_depths(CS_CONVENTION_CILSCALE_01), d);
    ck_assert_msg(d[0] == 1 && d[3] == 1, "cilscale-0.1, d = 0.6: %d,%d,%d,%d", d[0], d[1], d[2], d[3]);
    cs_convention cv;
    ck_assert_int_eq(cs_convention_parse("cilscale-0.1", &cv), CS_OK);
    ck_assert_int_eq(cv, CS_CONVENTION_CILSCALE_01);
    ck_assert_int_eq(cs_convention_parse("paper", &cv), CS_ERR_ARG);
    cs_arch_config c = tu_config(a, 10);
    c.convention = (cs_convention)7;
    cs_error err;
    ck_assert_int_eq(cs_arch_check(a, &c, &err), CS_ERR_ARG);
    ck_assert_str_eq(err.msg, "convention 7: expected authors or cilscale-0.1");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("arch");
    TCase *t = tcase_create("counts");
    tcase_add_test(t, torchvision_counts);
    tcase_add_test(t, scaled_resnet_by_hand);
    tcase_add_test(t, stem_and_head_variants);
    tcase_add_test(t, reference_widths_at_w1);
    tcase_add_test(t, monotone_in_width_and_depth);
    tcase_add_test(t, shufflenet_halves_stay_even);
    tcase_add_test(t, authors_grid_counts);
    tcase_add_test(t, shufflenet_width_conventions);
    tcase_add_test(t, depth_conventions);
    suite_add_tcase(s, t);
    return tu_run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
