/* test_cil.c: class-incremental runs: scenarios, LUCIR's pieces, experiment files, resume. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cilscale/cil.h"
#include "runtime/experiment.h"
#include "cilscale/rng.h"
#include "runtime/scenario.h"
#include "testutil.h"

/* ---- scenarios ---- */

START_TEST(scenario_equal_split_covers_every_class_once)
{
    cs_scenario s;
    ck_assert_int_eq(cs_scenario_make(10, 5, 0, NULL, 7, &s, NULL), CS_OK);
    int seen[10] = {0};
    for (int st = 0; st < 5; st++) {
        ck_assert_int_eq(s.count[st], 2);
        ck_assert_int_eq(s.first[st], 2 * st);
        for (int l = s.first[st]; l < s.first[st] + s.count[st]; l++)
            seen[s.order[l]]++;
    }
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(seen[c], 1);
    cs_scenario_free(&s);
    /* 10 classes in 3 states: the earlier states take the remainder */
    ck_assert_int_eq(cs_scenario_make(10, 3, 0, NULL, 7, &s, NULL), CS_OK);
    ck_assert_int_eq(s.count[0], 4);
    ck_assert_int_eq(s.count[1], 3);
    ck_assert_int_eq(s.count[2], 3);
    cs_scenario_free(&s);
    /* first state B = 50, then 5 states of 10 */
    ck_assert_int_eq(cs_scenario_make(100, 6, 50, NULL, 1, &s, NULL), CS_OK);
    ck_assert_int_eq(s.count[0], 50);
    for (int st = 1; st < 6; st++) {
        ck_assert_int_eq(s.count[st], 10);
        ck_assert_int_eq(s.first[st], 50 + 10 * (st - 1));
    }
    cs_scenario_free(&s);
}
END_TEST

START_TEST(scenario_order_from_seed)
{
    cs_scenario a, b, c;
    ck_assert_int_eq(cs_scenario_make(100, 10, 0, NULL, 1, &a, NULL), CS_OK);
    ck_assert_int_eq(cs_scenario_make(100, 10, 0, NULL, 1, &b, NULL), CS_OK);
    ck_assert_int_eq(cs_scenario_make(100, 10, 0, NULL, 2, &c, NULL), CS_OK);
    ck_assert_mem_eq(a.order, b.order, sizeof(int) * 100);
    ck_assert(memcmp(a.order, c.order, sizeof(int) * 100) != 0);
    int identity = 1;
    for (int i = 0; i < 100; i++)
        identity &= a.order[i] == i;
    ck_assert(!identity);
    cs_scenario_free(&a);
    cs_scenario_free(&b);
    cs_scenario_free(&c);
    int order[4] = {3, 1, 0, 2};
    ck_assert_int_eq(cs_scenario_make(4, 2, 0, order, 9, &a, NULL), CS_OK);
    ck_assert_mem_eq(a.order, order, sizeof order);
    int map[4];
    cs_scenario_label_map(&a, 1, 1, map); /* new classes of state 2: 0 and 2 -> labels 2, 3 */
    ck_assert_int_eq(map[0], 2);
    ck_assert_int_eq(map[2], 3);
    ck_assert_int_eq(map[3], -1);
    ck_assert_int_eq(map[1], -1);
    cs_scenario_label_map(&a, 1, 0, map); /* everything seen by state 2 */
    ck_assert_int_eq(map[3], 0);
    ck_assert_int_eq(map[1], 1);
    cs_scenario_free(&a);
}
END_TEST

START_TEST(scenario_errors)
{
    cs_scenario s;
    cs_error err;
    int dup[4] = {0, 1, 1, 2};
    ck_assert_int_eq(cs_scenario_make(4, 2, 0, dup, 1, &s, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "exactly once"));
    ck_assert_int_eq(cs_scenario_make(4, 5, 0, NULL, 1, &s, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "at least one class"));
    ck_assert_int_eq(cs_scenario_make(10, 3, 9, NULL, 1, &s, &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_scenario_make(10, 0, 0, NULL, 1, &s, &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "states 0"));
}
END_TEST

START_TEST(scenario_indices_per_class_limit)
{
    cs_dataset d = {.n = 9, .n_classes = 3};
    int labels[9] = {0, 1, 2, 0, 1, 2, 0, 1, 2};
    d.labels = labels;
    int map[3] = {0, -1, 1};
    int *idx;
    int n = cs_scenario_indices(&d, map, 2, &idx);
    ck_assert_int_eq(n, 4);
    int want[4] = {0, 2, 3, 5};
    ck_assert_mem_eq(idx, want, sizeof want);
    free(idx);
}
END_TEST

/* ---- LUCIR ---- */

static const cs_cil_iface *cil(const char *name)
{
    const cs_plugin *p = cs_registry_find(tu_registry(), CS_KIND_CIL, name);
    ck_assert_msg(p != NULL, "cil plugin %s not loaded", name);
    return p->iface;
}

/* A tiny network: input 1x8x8 -> conv -> bn -> relu -> avgpool -> cosine head. */
static cs_graph *tiny(int classes, cs_cil_net *net, int old_feats)
{
    cs_graph *g = cs_graph_new(4);
    memset(net, 0, sizeof *net);
    net->g = g;
    net->input = cs_input(g, "input", 1, 8, 8);
    net->labels = cs_input_vec(g, "labels", 0);
    int x = cs_conv2d(g, "conv1", net->input, 6, 3, 1, 1, 1, 0);
    x = cs_relu(g, cs_batchnorm(g, "bn1", x));
    net->features = cs_avgpool(g, x);
    net->logits = cs_cosine_linear(g, "fc", net->features, classes, 1.0f);
    net->xent = cs_softmax_xent(g, net->logits, net->labels);
    cs_graph_add_loss(g, net->xent, 1.0f);
    net->head_weight = cs_graph_find(g, "fc.weight");
    net->old_features = old_feats ? cs_input_vec(g, "old_features", 6) : -1;
    ck_assert_int_eq(cs_graph_status(g, NULL), CS_OK);
    return g;
}

START_TEST(lucir_lambda_is_adaptive)
{
    const cs_cil_iface *l = cil("lucir");
    ck_assert_int_eq(l->head, CS_HEAD_COSINE);
    ck_assert(l->no_last_relu && l->needs_old_features);
    void *ctx;
    ck_assert_int_eq(l->create(&ctx, NULL), CS_OK);
    cs_error err;
    ck_assert_int_eq(l->option(ctx, "lambda_base", "5", &err), CS_OK);
    ck_assert_int_eq(l->option(ctx, "lambda", "5", &err), CS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown key 'lambda'"));
    ck_assert_int_eq(l->option(ctx, "lambda_base", "-1", &err), CS_ERR_ARG);
    /* first state: no distillation term */
    cs_cil_net net;
    cs_graph *g = tiny(10, &net, 0);
    cs_cil_state s0 = {0, 5, 0, 10};
    ck_assert_int_eq(l->build_state(ctx, g, &net, &s0, &err), CS_OK);
    ck_assert_int_eq(cs_graph_n_losses(g), 1);
    cs_graph_free(g);
    /* 60 old classes, 10 new: lambda = 5 * sqrt(60 / 10) */
    g = tiny(70, &net, 1);
    cs_cil_state s = {3, 5, 60, 10};
    ck_assert_int_eq(l->build_state(ctx, g, &net, &s, &err), CS_OK);
    ck_assert_int_eq(cs_graph_n_losses(g), 2);
    ck_assert_double_eq_tol(cs_graph_loss_weight(g, 1), 5 * sqrt(6.0), 1e-5);
    const cs_node *n = cs_graph_node(g, cs_graph_tensor(g, cs_graph_loss(g, 1))->producer);
    ck_assert_int_eq(n->op, CS_OP_COSINE_EMBED);
    ck_assert_int_eq(n->in[0], net.features);
    ck_assert_int_eq(n->in[1], net.old_features);
    /* the old classes' weights are frozen: exactly rows 0..59 of fc.weight */
    int64_t r[8][2];
    ck_assert_int_eq(l->frozen_ranges(ctx, &net, &s, r, 8), 1);
    ck_assert_int_eq(r[0][0], cs_graph_tensor(g, net.head_weight)->offset);
    ck_assert_int_eq(r[0][1], 60 * 6);
    ck_assert_int_eq(l->frozen_ranges(ctx, &net, &s0, r, 8), 0);
    cs_graph_free(g);
    l->destroy(ctx);
}
END_TEST

/* A host whose class means and weights the test controls. */
typedef struct fake_host {
    float w[5 * 6];
    float means[2 * 6];
    int first, count;
} fake_host;

static int fake_means(void *core, int first, int count, float *out, cs_error *err)
{
    (void)err;
    fake_host *h = core;
    h->first = first;
    h->count = count;
    memcpy(out, h->means, sizeof(float) * (size_t)count * 6);
    return CS_OK;
}
static int fake_read(void *core, int tensor, float *dst, cs_error *err)
{
    (void)tensor, (void)err;
    memcpy(dst, ((fake_host *)core)->w, sizeof ((fake_host *)core)->w);
    return CS_OK;
}
static int fake_write(void *core, int tensor, const float *src, cs_error *err)
{
    (void)tensor, (void)err;
    memcpy(((fake_host *)core)->w, src, sizeof ((fake_host *)core)->w);
    return CS_OK;
}

START_TEST(lucir_imprints_new_classes)
{
    const cs_cil_iface *l = cil("lucir");
    void *ctx;
    ck_assert_int_eq(l->create(&ctx, NULL), CS_OK);
    cs_cil_net net;
    cs_graph *g = tiny(5, &net, 1);
    fake_host h = {0};
    /* three old classes with weight norms 1, 2 and 3: mean norm 2 */
    h.w[0] = 1;
    h.w[6 + 1] = 2;
    h.w[12 + 2] = 3;
    float before[18];
    memcpy(before, h.w, sizeof before);
    /* two new classes' mean features */
    float m0[6] = {3, 4, 0, 0, 0, 0}, m1[6] = {0, 0, 0, 0, 1, 1};
    memcpy(h.means, m0, sizeof m0);
    memcpy(h.means + 6, m1, sizeof m1);
    cs_cil_host host = {&h, fake_means, fake_read, fake_write};
    cs_cil_state s = {1, 2, 3, 2};
    ck_assert_int_eq(l->begin_state(ctx, &host, &net, &s, NULL), CS_OK);
    ck_assert_int_eq(h.first, 3);
    ck_assert_int_eq(h.count, 2);
    ck_assert_mem_eq(h.w, before, sizeof before); /* old rows untouched */
    /* new rows: unit direction of the mean, times the old mean norm 2 */
    const float *r3 = h.w + 18, *r4 = h.w + 24;
    ck_assert_float_eq_tol(r3[0], 2 * 0.6f, 1e-6f);
    ck_assert_float_eq_tol(r3[1], 2 * 0.8f, 1e-6f);
    ck_assert_float_eq_tol(r4[4], 2 / sqrtf(2), 1e-6f);
    ck_assert_float_eq_tol(r4[5], 2 / sqrtf(2), 1e-6f);
    ck_assert_float_eq_tol(r4[0], 0, 1e-7f);
    cs_graph_free(g);
    l->destroy(ctx);
}
END_TEST

START_TEST(finetune_is_plain)
{
    const cs_cil_iface *f = cil("finetune");
    ck_assert_int_eq(f->head, CS_HEAD_LINEAR);
    ck_assert(!f->needs_old_features && !f->no_last_relu && !f->frozen_ranges && !f->begin_state);
}
END_TEST

/* ---- experiment files ---- */

static const char *base_cfg(void)
{
    return "data = { format = \"idx\"; path = \"/nonexistent\"; };\n"
           "model = { arch = \"resnet18\"; policy = \"psi\"; budget = \"1M\"; };\n";
}

START_TEST(experiment_errors_name_the_key)
{
    cs_experiment e;
    cs_error err;
    cs_experiment_defaults(&e);
    const char *p = tu_write("unknown.cfg", "data = { format = \"idx\"; };\nmodel = {\n  bugdet = \"1M\";\n};\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "unknown.cfg:3: unknown key 'model.bugdet'") && strstr(err.msg, "budget"), "%s",
                  err.msg);
    p = tu_write("type.cfg", "train = { epochs = \"ten\"; };\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "type.cfg:1: train.epochs: expected a whole number"), "%s", err.msg);
    p = tu_write("range.cfg", "train = {\n  momentum = 1.5;\n};\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "range.cfg:2: train.momentum: '1.5'"), "%s", err.msg);
    p = tu_write("group.cfg", "modle = { arch = \"resnet18\"; };\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "group.cfg:1: unknown group 'modle'"), "%s", err.msg);
    p = tu_write("syntax.cfg", "seed = 1;\ntrain = { epochs = = 3; };\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "syntax.cfg:2:"), "%s", err.msg);
    p = tu_write("both.cfg", "model = { budget = \"1M\"; width = 0.5; };\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "not both"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_load("/nonexistent.cfg", &e, &err), CS_ERR_IO);
    ck_assert_msg(strstr(err.msg, "/nonexistent.cfg: cannot read"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "model.budget=two", &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "budget 'two'"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "train.epoch=3", &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "unknown key 'train.epoch'") && strstr(err.msg, "epochs"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "nonsense", &err), CS_ERR_ARG);
    /* model.depths: a list or "1,1,2,2"; not with depth */
    p = tu_write("depths.cfg", "model = { width = 0.5; depth = 0.5; depths = [1, 1, 2, 2]; };\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "give depth or depths, not both"), "%s", err.msg);
    p = tu_write("depths0.cfg", "model = {\n  depths = [1, 0];\n};\n");
    ck_assert_int_eq(cs_experiment_load(p, &e, &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "depths0.cfg:2: model.depths[1]: expected a block count >= 1"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=1,,2", &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "model.depths: '1,,2': expected blocks per stage"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=1,2,", &err), CS_ERR_ARG);
    /* --set takes a list as a config file writes it, brackets and spaces included */
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=[2, 1,1, 3]", &err), CS_OK);
    ck_assert_int_eq(e.n_depths, 4);
    ck_assert_int_eq(e.depths[0], 2);
    ck_assert_int_eq(e.depths[3], 3);
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=[2,x]", &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "model.depths: '[2,x]': expected blocks per stage"), "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=[]", &err), CS_ERR_ARG);
    ck_assert_int_eq(cs_experiment_set(&e, "scenario.order=[1, 0, 2]", &err), CS_OK);
    ck_assert_int_eq(e.n_order, 3);
    ck_assert_int_eq(e.order[0], 1);
    ck_assert_int_eq(e.order[2], 2);
}
END_TEST

/* What is accepted reads back (issue 13 item 2): generated experiments
 * written as run.cfg load to the same settings and seed; what could not
 * read back is refused when it is set. */
START_TEST(experiment_accepted_reads_back)
{
    static const char *const sets[][4] = {
        {"data.format=idx", "data.format=folder", "data.format=list", NULL},
        {"data.path=/tmp/a \"quoted\" \\ path", "data.path=rel/x", "data.path=/data", NULL},
        {"model.budget=2.5M", "model.width=0.3", "model.depths=1,2,2,1", "model.depth=0.25"},
        {"model.policy=compound", "model.policy=psi", "model.convention=cilscale-0.1", "model.count=authors-100"},
        {"cil.lambda_base=4.5", "cil.lucir.lambda_base=2", "cil.finetune.x-y=1", "cil.K=2"},
        {"train.lr=0.123456789", "train.schedule=multistep:3,6", "train.nesterov=true", "train.first_epochs=0"},
        {"seed=9223372036854775807", "seed=0", "seed=42", "scenario.order=3,1,2,0"},
        {"backend.device=threads=1,layout=plain", "out=some/where", "model.resolution=keep", "scenario.first=4"},
    };
    uint64_t x = 12345;
    char path[600];
    snprintf(path, sizeof path, "%s/gen.cfg", tu_tmpdir());
    for (int trial = 0; trial < 300; trial++) {
        cs_experiment e, f;
        cs_error err;
        cs_experiment_defaults(&e);
        for (size_t g = 0; g < sizeof sets / sizeof sets[0]; g++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int n = 0;
            while (n < 4 && sets[g][n])
                n++;
            int k = (int)((x >> 33) % (uint64_t)(n + 1));
            if (k < n)
                ck_assert_msg(cs_experiment_set(&e, sets[g][k], &err) == CS_OK, "%s: %s", sets[g][k], err.msg);
        }
        FILE *fp = fopen(path, "w");
        cs_experiment_write(&e, fp);
        fclose(fp);
        cs_experiment_defaults(&f);
        ck_assert_msg(cs_experiment_load(path, &f, &err) == CS_OK, "trial %d: %s", trial, err.msg);
        char a[4096], b[4096];
        cs_experiment_settings(&e, a, sizeof a);
        cs_experiment_settings(&f, b, sizeof b);
        ck_assert_msg(!strcmp(a, b), "trial %d:\n%s\n%s", trial, a, b);
        ck_assert(e.seed == f.seed);
        ck_assert_str_eq(e.out, f.out);
        ck_assert_str_eq(e.device, f.device);
    }
    /* refused at --set, one line each */
    static const char *const bad[][2] = {
        {"seed=9223372036854775808", "expected a whole number from 0 to 9223372036854775807"},
        {"cil.9lives=1", "expected an option name"},
        {"cil.a b=1", "expected an option name"},
        {"cil.lucir.x.y=1", "expected an option name"},
        {"data.path=a\nb", "the value holds a control character"},
        {"cil.k=\x1b[31m", "the value holds a control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_experiment e;
        cs_error err;
        cs_experiment_defaults(&e);
        ck_assert_int_eq(cs_experiment_set(&e, bad[i][0], &err), CS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, bad[i][1]), "%s: %s", bad[i][0], err.msg);
    }
    cs_experiment e;
    cs_error err;
    cs_experiment_defaults(&e);
    ck_assert_int_eq(cs_experiment_set(&e, "cil.lucir=1", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&e, "cil.lucir.lambda_base=2", &err), CS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "one name cannot be both an option and a group"), "%s", err.msg);
}
END_TEST

/* The settings string: equal for runs that differ in seed, out or device
 * only; the model keys in use only. */
START_TEST(experiment_settings_name_what_matters)
{
    cs_experiment a, b;
    cs_error err;
    char sa[4096], sb[4096];
    cs_experiment_defaults(&a);
    cs_experiment_defaults(&b);
    ck_assert_int_eq(cs_experiment_set(&b, "seed=7", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&b, "out=elsewhere", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&b, "backend.device=threads=1", &err), CS_OK);
    cs_experiment_settings(&a, sa, sizeof sa);
    cs_experiment_settings(&b, sb, sizeof sb);
    ck_assert_str_eq(sa, sb);
    ck_assert_ptr_nonnull(strstr(sa, "model.policy=psi; model.budget=1000000;"));
    ck_assert_ptr_null(strstr(sa, "model.width"));
    ck_assert_ptr_nonnull(strstr(sa, "train.lr=0.1;"));
    ck_assert_int_eq(cs_experiment_set(&b, "train.epochs=3", &err), CS_OK);
    cs_experiment_settings(&b, sb, sizeof sb);
    ck_assert_str_ne(sa, sb);
    /* under a budget with depths: the widest network, no policy */
    ck_assert_int_eq(cs_experiment_set(&a, "model.depths=2,2,2,2", &err), CS_OK);
    cs_experiment_settings(&a, sa, sizeof sa);
    ck_assert_ptr_nonnull(strstr(sa, "model.budget=1000000; model.depths=2,2,2,2;"));
    ck_assert_ptr_null(strstr(sa, "model.policy"));
    /* by hand */
    ck_assert_int_eq(cs_experiment_set(&a, "model.width=0.5", &err), CS_OK);
    cs_experiment_settings(&a, sa, sizeof sa);
    ck_assert_ptr_nonnull(strstr(sa, "model.width=0.5; model.depths=2,2,2,2;"));
    ck_assert_ptr_null(strstr(sa, "model.budget"));
    /* cut to the buffer */
    char small[16];
    ck_assert_int_eq(cs_experiment_settings(&a, small, sizeof small), 15);
    ck_assert_int_eq(strlen(small), 15);
}
END_TEST

START_TEST(experiment_round_trips)
{
    cs_experiment e, f;
    cs_error err;
    cs_experiment_defaults(&e);
    const char *p = tu_write("ok.cfg", "scenario = { states = 3; order = [2, 0, 1, 3, 4, 5, 6, 7, 8, 9]; };\n"
                                       "cil = { algorithm = \"lucir\"; lambda_base = 4.5; };\n"
                                       "train = { lr = 0.05; nesterov = true; };\nseed = 12;\n");
    ck_assert_msg(cs_experiment_load(p, &e, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(cs_experiment_set(&e, "model.budget=2.5M", &err), CS_OK);
    ck_assert_int_eq(e.states, 3);
    ck_assert_int_eq(e.n_order, 10);
    ck_assert_int_eq(e.order[0], 2);
    ck_assert_int_eq(e.budget, 2500000);
    ck_assert_int_eq(e.seed, 12);
    ck_assert_int_eq(e.n_cil_opts, 1);
    ck_assert_str_eq(e.cil_keys[0], "lambda_base");
    /* written out and read back: the same experiment */
    char path[600];
    snprintf(path, sizeof path, "%s/resolved.cfg", tu_tmpdir());
    FILE *fp = fopen(path, "w");
    cs_experiment_write(&e, fp);
    fclose(fp);
    cs_experiment_defaults(&f);
    ck_assert_msg(cs_experiment_load(path, &f, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(f.budget, e.budget);
    ck_assert_double_eq(f.lr, e.lr);
    ck_assert_int_eq(f.nesterov, 1);
    ck_assert_mem_eq(f.order, e.order, sizeof(int) * 10);
    ck_assert_str_eq(f.cil_values[0], e.cil_values[0]);
    ck_assert_int_eq(f.seed, 12);
    /* the model keys of this change too */
    ck_assert_int_eq(cs_experiment_set(&e, "model.depths=1,2,2,1", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&e, "model.convention=cilscale-0.1", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&e, "model.count=authors-1000", &err), CS_OK);
    ck_assert_int_eq(cs_experiment_set(&e, "model.resolution=keep", &err), CS_OK);
    fp = fopen(path, "w");
    cs_experiment_write(&e, fp);
    fclose(fp);
    cs_experiment_defaults(&f);
    ck_assert_msg(cs_experiment_load(path, &f, &err) == CS_OK, "%s", err.msg);
    ck_assert_int_eq(f.manual, 0);
    ck_assert_int_eq(f.n_depths, 4);
    ck_assert_int_eq(f.depths[1], 2);
    ck_assert_str_eq(f.convention, "cilscale-0.1");
    ck_assert_str_eq(f.count, "authors-1000");
    ck_assert_str_eq(f.resolution, "keep");
    char s1[4096], s2[4096];
    cs_experiment_settings(&e, s1, sizeof s1);
    cs_experiment_settings(&f, s2, sizeof s2);
    ck_assert_str_eq(s1, s2);
}
END_TEST

/* ---- whole runs on a tiny generated data set ---- */


static const char *tiny_data(void)
{
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/tinydata", tu_tmpdir());
    mkdir(dir, 0777);
    tu_write_tiny_idx(dir, "train", 24, 1);
    tu_write_tiny_idx(dir, "t10k", 8, 2);
    return dir;
}

static const char *tiny_cfg(const char *data, const char *cil)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "data = { format = \"idx\"; path = \"%s\"; };\n"
             "scenario = { states = 3; first = 4; };\n"
             "model = { arch = \"resnet18\"; width = 0.1; depth = 0.5; stem = \"small\"; };\n"
             "cil = { algorithm = \"%s\"; };\n"
             "train = { epochs = 2; batch = 16; lr = 0.05; };\n"
             "seed = 3;\n",
             data, cil);
    return tu_write(!strcmp(cil, "lucir") ? "tiny-lucir.cfg" : "tiny-finetune.cfg", text);
}

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The per-state rows of results.csv (the comment lines hold timings-free facts,
 * but the seconds columns differ from run to run). */
static void accuracy_rows(const char *dir, char *out, size_t size)
{
    char path[700];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    char *text = slurp_file(path);
    ck_assert_msg(text != NULL, "no %s", path);
    out[0] = '\0';
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !strncmp(line, "state,", 6))
            continue;
        /* state,n_new,n_seen,top1,top5,train_loss,train_seconds,eval_seconds,group_top1 */
        char *f[9];
        int k = 0;
        for (char *p = line; k < 9; k++) {
            f[k] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = '\0';
            p = c + 1;
        }
        ck_assert_int_ge(k, 8);
        size_t u = strlen(out);
        snprintf(out + u, size - u, "%s %s %s %s %s %s | ", f[0], f[2], f[3], f[4], f[5], f[8]);
    }
}

START_TEST(run_writes_results_and_resume_matches)
{
    const char *data = tiny_data();
    const char *cfg = tiny_cfg(data, "lucir");
    char a[700], b[700], o[8192], e[8192];
    snprintf(a, sizeof a, "%s/a", tu_tmpdir());
    snprintf(b, sizeof b, "%s/b", tu_tmpdir());
    int rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_ptr_nonnull(strstr(o, "lucir resnet18 w=0.1 [1,1,1,1] seed 3"));
    ck_assert_ptr_nonnull(strstr(e, "state 2 (3/3): 10 classes seen"));
    const char *files[] = {"results.json", "results.csv", "accuracy.svg", "run.cfg", "state-0.safetensors",
                           "state-2.safetensors"};
    for (int i = 0; i < 6; i++) {
        char p[800];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", a, files[i]);
        ck_assert_msg(stat(p, &st) == 0 && st.st_size > 0, "%s missing", p);
    }
    char rows_a[4096], rows_b[4096];
    accuracy_rows(a, rows_a, sizeof rows_a);

    /* the same run, stopped after its first state's model was saved */
    snprintf(o, sizeof o, "mkdir -p %s && cp %s/run.cfg %s/state-0.safetensors %s/epochs.csv %s/ && "
                          "head -n $(( $(grep -c '' %s/results.csv) - 2 )) %s/results.csv > %s/results.csv",
             b, a, a, a, b, a, a, b);
    ck_assert_int_eq(system(o), 0);
    snprintf(o, sizeof o, "sed -i 's#\"%s\"#\"%s\"#' %s/run.cfg", a, b, b);
    ck_assert_int_eq(system(o), 0);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", b, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_ptr_nonnull(strstr(e, "resuming after state 0 (1/3 done)"));
    accuracy_rows(b, rows_b, sizeof rows_b);
    ck_assert_str_eq(rows_b, rows_a);
    /* provenance: the run began when a began (kept over the resume), its time adds up, the command is the resume's */
    char pa[800], pb[800], started_a[64] = "", started_b[64] = "";
    snprintf(pa, sizeof pa, "%s/results.json", a);
    snprintf(pb, sizeof pb, "%s/results.json", b);
    const char *ja = slurp_file(pa), *s1 = strstr(ja, "\"started\": \"");
    ck_assert_ptr_nonnull(s1);
    snprintf(started_a, sizeof started_a, "%.20s", s1 + 12);
    const char *jb = slurp_file(pb), *s2 = strstr(jb, "\"started\": \"");
    ck_assert_ptr_nonnull(s2);
    snprintf(started_b, sizeof started_b, "%.20s", s2 + 12);
    ck_assert_str_eq(started_b, started_a);
    ck_assert_ptr_nonnull(strstr(jb, "\"schema\": 2,"));
    ck_assert_ptr_nonnull(strstr(jb, "\"command\": \"cilscale run --resume "));
    snprintf(pb, sizeof pb, "%s/accuracy_matrix.csv", b);
    ck_assert_ptr_nonnull(strstr(slurp_file(pb), "state,n_seen,top1,old_top1,new_top1,group_0,group_1,group_2\n"));
    /* epochs.csv: a row per epoch and loss term; the resumed run's rows equal the uninterrupted run's
     * (all but the timing columns: images_per_s and seconds), state 0's kept from before the resume */
    char cmd[2400], ea[8192], eb[8192];
    snprintf(cmd, sizeof cmd, "cut -d, -f1-5,8-10 %s/epochs.csv > %s/ea.txt && cut -d, -f1-5,8-10 %s/epochs.csv > %s/eb.txt",
             a, tu_tmpdir(), b, tu_tmpdir());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(pa, sizeof pa, "%s/ea.txt", tu_tmpdir());
    snprintf(ea, sizeof ea, "%s", slurp_file(pa));
    snprintf(pb, sizeof pb, "%s/eb.txt", tu_tmpdir());
    snprintf(eb, sizeof eb, "%s", slurp_file(pb));
    ck_assert_str_eq(eb, ea);
    ck_assert_ptr_nonnull(strstr(ea, "state,epoch,lr,loss,train_top1,term,value,weight\n0,0,0.05,"));
    ck_assert_ptr_nonnull(strstr(ea, ",cosine_embed,")); /* LUCIR's less-forget term from state 1 on */
    snprintf(pa, sizeof pa, "%s/losses.svg", a);
    ck_assert_ptr_nonnull(strstr(slurp_file(pa), ">cosine_embed (weighted)</text>"));
}
END_TEST

/* Starts `cilscale run cfg --out dir` with many epochs, sends sig once run.cfg
 * is there (the handler is set by then), and checks the exit status. */
static void interrupt_run(const char *cfg, const char *dir, int sig, int want_status)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(getenv("CILSCALE_EXE"), "cilscale", "run", cfg, "--out", dir, "--set", "train.epochs=40", (char *)NULL);
        _exit(127);
    }
    char marker[800];
    snprintf(marker, sizeof marker, "%s/run.cfg", dir);
    struct stat st;
    struct timespec tick = {0, 10000000};
    for (int i = 0; i < 2000 && stat(marker, &st) != 0; i++)
        nanosleep(&tick, NULL);
    kill(pid, sig);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == want_status, "signal %d: status %d", sig, status);
}

START_TEST(interrupt_saves_and_resume_finishes)
{
    const char *data = tiny_data();
    const char *cfg = tiny_cfg(data, "finetune");
    char a[700], b[700], o[8192], e[8192];
    snprintf(a, sizeof a, "%s/fa", tu_tmpdir());
    snprintf(b, sizeof b, "%s/fb", tu_tmpdir());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, NULL), 0);
    char rows_a[4096], rows_b[4096];
    accuracy_rows(a, rows_a, sizeof rows_a);
    /* Ctrl-C once run.cfg is there (the handler is set by then) */
    interrupt_run(cfg, b, SIGINT, 130);
    char marker[800];
    struct stat st;
    snprintf(marker, sizeof marker, "%s/interrupted.safetensors", b);
    ck_assert_int_eq(stat(marker, &st), 0);
    /* resuming needs the same experiment: put the epochs back in run.cfg */
    snprintf(o, sizeof o, "sed -i 's/epochs = 40;/epochs = 2;/' %s/run.cfg", b);
    ck_assert_int_eq(system(o), 0);
    int rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", b, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    accuracy_rows(b, rows_b, sizeof rows_b);
    ck_assert_str_eq(rows_b, rows_a);
}
END_TEST

/* SIGTERM (kill, timeout, a scheduler) saves like Ctrl-C, and says so in the status. */
START_TEST(sigterm_saves)
{
    const char *cfg = tiny_cfg(tiny_data(), "finetune");
    char b[700], marker[800];
    snprintf(b, sizeof b, "%s/term", tu_tmpdir());
    interrupt_run(cfg, b, SIGTERM, 143);
    struct stat st;
    snprintf(marker, sizeof marker, "%s/interrupted.safetensors", b);
    ck_assert_int_eq(stat(marker, &st), 0);
}
END_TEST

static const char *path_of(const char *name)
{
    static char p[700];
    snprintf(p, sizeof p, "%s/%s", tu_tmpdir(), name);
    return p;
}

/* The folders `sweep --list` names, one per line, and how many say `state`. */
static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += !strncmp(p, prefix, strlen(prefix));
    return n;
}

/* The product of --set lists and seeds; figure 1 points per distinct depth
 * vector; shards that split the list; every bad value refused before any run. */
START_TEST(sweep_lists_and_refuses)
{
    const char *cfg = tiny_cfg(tiny_data(), "lucir");
    char d[700], o[16384], e[8192];
    snprintf(d, sizeof d, "%s/sw", tu_tmpdir());
    int rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.budget=100k,200k", "--set",
                    "model.policy=psi,width", "--seeds", "1,2", "--out", d, "--list", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_int_eq(count_lines(o, "new "), 8);
    ck_assert_ptr_nonnull(strstr(o, "/resnet18-psi-100k-"));
    ck_assert_ptr_nonnull(strstr(o, "/resnet18-width-200k-"));
    ck_assert_ptr_nonnull(strstr(o, "-s2\n"));
    /* figure 1: ResNet18's d grid gives [1,1,1,1] and [2,2,2,2] */
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.budget=100k", "--figure1", "--out", d,
                "--list", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_int_eq(count_lines(o, "new "), 2);
    ck_assert_ptr_nonnull(strstr(o, "/resnet18-widest-100k-d1.1.1.1-"));
    ck_assert_ptr_nonnull(strstr(o, "/resnet18-widest-100k-d2.2.2.2-"));
    /* shards 1/3..3/3 cover the 8 runs once */
    int total = 0;
    for (int k = 1; k <= 3; k++) {
        char shard[16];
        snprintf(shard, sizeof shard, "%d/3", k);
        rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.budget=100k,200k", "--set",
                    "model.policy=psi,width", "--seeds", "1,2", "--out", d, "--list", "--shard", shard, NULL);
        ck_assert_int_eq(rc, 0);
        total += count_lines(o, "new ");
    }
    ck_assert_int_eq(total, 8);
    /* a sweep file: blocks of their own products, the file's set and seeds */
    char text[1400];
    snprintf(text, sizeof text,
             "experiment = \"%s\";\nset = [\"model.budget=100k\"];\nseeds = [1, 2];\n"
             "blocks = (\n  { figure1 = true; },\n  { vary = [\"model.policy=psi,width\", \"train.epochs=1\"]; }\n);\n",
             cfg);
    const char *sweepfile = tu_write("study.sweep", text);
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", "--file", sweepfile, "--out", d, "--list", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_int_eq(count_lines(o, "new "), 2 * 2 + 2 * 2);
    ck_assert_ptr_nonnull(strstr(o, "/resnet18-width-100k-"));
    tu_write("bad.sweep", "seeds = [1];\nblocks = (\n  { vary = [\"seed=1,2\"]; figure = true; }\n);\n");
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", "--file", path_of("bad.sweep"), "--out", d, NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(e, "bad.sweep:3: blocks[0].figure: unknown key"), "%s", e);
    tu_write("bad2.sweep", "set = [\"seed=1,2\"];\n");
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", "--file", path_of("bad2.sweep"), "--out", d, NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(e, "bad2.sweep:1: set 'seed=1,2': one value here"), "%s", e);
    /* refused, one line each, exit 2, nothing made */
    static const char *const bad[][3] = {
        {"--set", "model.budgett=1M,2M", "unknown key 'model.budgett'"},
        {"--set", "model.budget=1M,,2M", "an empty value"},
        {"--set", "model.depths=[1,1,1,1", "unbalanced brackets"},
        {"--shard", "3/2", "--shard '3/2': expected K/N with 1 <= K <= N"},
        {"--seeds", "1,x", "--seeds '1,x': expected seeds"},
        {"--jobs", "0", "--jobs '0': expected a whole number from 1 to 256"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, bad[i][0], bad[i][1], "--out", d, NULL);
        ck_assert_msg(rc == 2, "%s %s: exit %d", bad[i][0], bad[i][1], rc);
        ck_assert_msg(strstr(e, bad[i][2]) && strchr(e, '\n') == e + strlen(e) - 1, "%s %s: %s", bad[i][0],
                      bad[i][1], e);
    }
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--figure1", "--out", d, NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(e, "--figure1 needs a budget"));
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "seed=1,2", NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(e, "--out DIR is required"));
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.budget=1M", "--set", "model.convention=paper",
                "--figure1", "--out", d, NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(e, "model.convention 'paper': expected authors or cilscale-0.1"));
    struct stat st;
    ck_assert_int_ne(stat(d, &st), 0); /* nothing was made */
}
END_TEST

/* A sweep runs its product (two at a time), skips what is done, refuses a
 * folder of other settings, resumes a run stopped by SIGTERM to the same
 * numbers as an unstopped run, and writes its report. */
START_TEST(sweep_runs_skips_and_resumes)
{
    const char *cfg = tiny_cfg(tiny_data(), "finetune");
    char d[700], o[16384], e[8192];
    snprintf(d, sizeof d, "%s/sw", tu_tmpdir());
    int rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.width=0.1,0.15", "--out", d, "--jobs",
                    "2", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s\n%s", rc, o, e);
    ck_assert_ptr_nonnull(strstr(o, "2 runs in"));
    ck_assert_int_eq(count_lines(o, "[1/2] done") + count_lines(o, "[2/2] done"), 2);
    ck_assert_ptr_nonnull(strstr(o, "report in"));
    char path[900];
    snprintf(path, sizeof path, "%s/report/report.csv", d);
    char *csv = slurp_file(path);
    ck_assert_ptr_nonnull(csv);
    ck_assert_msg(strstr(csv, "finetune resnet18 w=0.15 [1,1,1,1] seed 3"), "%s", csv);
    /* again: nothing to do */
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.width=0.1,0.15", "--out", d, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_ptr_nonnull(strstr(o, "(2 done already, 0 to go)"));
    /* a folder holding another run is refused, not overwritten */
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.width=0.1", "--out", d, "--list", NULL);
    char first[700];
    ck_assert_int_eq(sscanf(o, "done %699s", first), 1);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "sed -i 's/^# seed: 3$/# seed: 4/' %s/results.csv", first);
    ck_assert_int_eq(system(cmd), 0);
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "model.width=0.1", "--out", d, NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(e, "holds a run of other settings or another seed"));

    /* SIGTERM to the sweep: the run saves, the sweep says how to go on */
    char ref[700], sw2[700];
    snprintf(ref, sizeof ref, "%s/ref", tu_tmpdir());
    snprintf(sw2, sizeof sw2, "%s/sw2", tu_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(getenv("CILSCALE_EXE"), "cilscale", "sweep", cfg, "--set", "train.epochs=12", "--out", sw2,
              "--no-report", (char *)NULL);
        _exit(127);
    }
    struct timespec tick = {0, 10000000};
    char runcfg[900] = "";
    for (int i = 0; i < 2000 && !runcfg[0]; i++) {
        nanosleep(&tick, NULL);
        DIR *dp = opendir(sw2);
        struct dirent *de;
        while (dp && (de = readdir(dp)))
            if (de->d_name[0] != '.') {
                struct stat st;
                snprintf(path, sizeof path, "%s/%s/run.cfg", sw2, de->d_name);
                if (stat(path, &st) == 0)
                    snprintf(runcfg, sizeof runcfg, "%s", path);
            }
        if (dp)
            closedir(dp);
    }
    ck_assert_msg(runcfg[0], "the sweep's run never started");
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 143, "status %d", status);
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "train.epochs=12", "--out", sw2, "--list", NULL);
    ck_assert_int_eq(count_lines(o, "resume "), 1);
    rc = tu_run(o, sizeof o, e, sizeof e, "sweep", cfg, "--set", "train.epochs=12", "--out", sw2, "--no-report",
                NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_ptr_nonnull(strstr(o, "resume "));
    rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--set", "train.epochs=12", "--out", ref, NULL);
    ck_assert_int_eq(rc, 0);
    char rows_a[4096], rows_b[4096];
    accuracy_rows(ref, rows_a, sizeof rows_a);
    runcfg[strlen(runcfg) - strlen("/run.cfg")] = '\0';
    accuracy_rows(runcfg, rows_b, sizeof rows_b);
    ck_assert_str_eq(rows_b, rows_a);
}
END_TEST

/* A run folder is one run (issue 13): another run's folder is refused (or,
 * with --force, its files moved aside); --resume refuses a results.csv or a
 * checkpoint of another run, and a damaged results.csv, instead of mixing or
 * starting over; a second run into a folder in use is refused at once. */
START_TEST(run_folder_is_one_run)
{
    const char *cfg = tiny_cfg(tiny_data(), "finetune");
    char a[700], b[700], o[8192], e[8192], p[900], q[900];
    snprintf(a, sizeof a, "%s/one", tu_tmpdir());
    snprintf(b, sizeof b, "%s/other", tu_tmpdir());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, NULL), 0);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", b, "--set", "seed=4", NULL), 0);
    /* the same run again into its folder: allowed (it is that run) */
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, NULL), 0);
    /* another seed into it: refused, nothing touched */
    snprintf(p, sizeof p, "%s/results.csv", a);
    char before[8192];
    snprintf(before, sizeof before, "%s", slurp_file(p));
    int rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, "--set", "seed=5", NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(e, "holds another run") && strstr(e, "--force"), "%s", e);
    ck_assert_str_eq(slurp_file(p), before);
    /* --force: the old files go to replaced-TIME/, the new run is alone */
    rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", a, "--set", "seed=5", "--force", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    DIR *dp = opendir(a);
    struct dirent *de;
    char aside[300] = "";
    while ((de = readdir(dp)))
        if (!strncmp(de->d_name, "replaced-", 9))
            snprintf(aside, sizeof aside, "%s", de->d_name);
    closedir(dp);
    ck_assert_msg(aside[0], "no replaced-* folder in %s", a);
    snprintf(q, sizeof q, "%s/%s/results.csv", a, aside);
    ck_assert_str_eq(slurp_file(q), before);
    ck_assert_ptr_nonnull(strstr(slurp_file(p), "# seed: 5\n"));
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--resume", a, "--force", NULL), 2);

    /* --resume with another run's results.csv (b's, seed 4): refused, naming it */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp %s/results.csv %s/results.csv", b, a);
    ck_assert_int_eq(system(cmd), 0);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", a, NULL);
    ck_assert_int_eq(rc, 2);
    snprintf(q, sizeof q, "%s/results.csv belongs to another run", a);
    ck_assert_msg(strstr(e, q), "%s", e);
    /* its own results.csv but another run's checkpoint */
    snprintf(cmd, sizeof cmd, "cp %s/%s/results.csv %s/results.csv && cp %s/state-2.safetensors %s/", a, aside, a, b, a);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "mv %s/%s/run.cfg %s/run.cfg", a, aside, a); /* back to seed 3's run */
    ck_assert_int_eq(system(cmd), 0);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", a, NULL);
    ck_assert_int_eq(rc, 2);
    snprintf(q, sizeof q, "%s/state-2.safetensors belongs to another run", a);
    ck_assert_msg(strstr(e, q), "%s", e);
    /* a damaged results.csv: refused, not started over */
    tu_write("one/results.csv", "# label: x\nstate,oops\n");
    rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", a, NULL);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(e, "--resume cannot tell which states finished"), "%s", e);
    ck_assert_str_eq(slurp_file(p), "# label: x\nstate,oops\n");

    /* a folder in use: the second run is refused at once */
    snprintf(q, sizeof q, "%s/.cilscale.lock", b);
    int fd = open(q, O_RDWR | O_CREAT, 0666);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    ck_assert_int_eq(write(fd, "12345\n", 6), 6);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", b, "--set", "seed=4", NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(e, "another cilscale run is writing this folder (pid 12345)"), "%s", e);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", "--resume", b, NULL);
    ck_assert_int_eq(rc, 2);
    close(fd);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--resume", b, NULL), 0);
}
END_TEST

/* Divergence stops the run with one line that names the likely cause
 * (issue 13 item 6): a far too heavy LUCIR term, and weights or batch-norm
 * statistics that explode without a NaN. */
START_TEST(divergence_is_named)
{
    const char *cfg = tiny_cfg(tiny_data(), "lucir");
    char d[700], o[8192], e[8192];
    snprintf(d, sizeof d, "%s/div", tu_tmpdir());
    int rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", d, "--set", "cil.lambda_base=1e30", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(e, "state 1, epoch 1/2: the loss became") &&
                      strstr(e, "the term cosine_embed (weight 1.") && strstr(e, "is far too heavy: lower its weight"),
                  "%s", e);
    rc = tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", d, "--force", "--set", "train.lr=1000", "--set",
                "train.weight_decay=0", "--set", "train.epochs=10", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(e, "the training diverged") || strstr(e, "the weights diverged") ||
                      strstr(e, "is not finite"),
                  "%s", e);
    ck_assert_msg(strstr(e, "lower the learning rate"), "%s", e);
}
END_TEST

/* cilscale eval reproduces a run's numbers from its checkpoints (issue 14 item 3). */
START_TEST(eval_reproduces_the_run)
{
    const char *cfg = tiny_cfg(tiny_data(), "lucir");
    char d[700], o[16384], e[8192], dumpdir[800], want[256];
    snprintf(d, sizeof d, "%s/ev", tu_tmpdir());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", d, NULL), 0);
    char path[800];
    snprintf(path, sizeof path, "%s/results.csv", d);
    char csv[8192];
    snprintf(csv, sizeof csv, "%s", slurp_file(path));
    for (int st = 0; st < 3; st++) {
        /* the state's row: state,n_new,n_seen,top1,top5,... */
        char key[16];
        snprintf(key, sizeof key, "\n%d,", st);
        const char *row = strstr(csv, key);
        ck_assert_ptr_nonnull(row);
        int s0, nn, ns;
        double t1, t5 = NAN;
        char t5s[32];
        ck_assert_int_ge(sscanf(row + 1, "%d,%d,%d,%lf,%31[^,]", &s0, &nn, &ns, &t1, t5s), 5);
        t5 = strcmp(t5s, "nan") ? atof(t5s) : NAN;
        char sarg[8];
        snprintf(sarg, sizeof sarg, "%d", st);
        int rc = st == 2 ? tu_run(o, sizeof o, e, sizeof e, "eval", d, NULL)
                         : tu_run(o, sizeof o, e, sizeof e, "eval", d, "--state", sarg, NULL);
        ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
        snprintf(want, sizeof want, "state %d (%d classes seen, ", st, ns);
        ck_assert_msg(strstr(o, want), "%s", o);
        snprintf(want, sizeof want, "top-1 %.2f%%, top-5 ", 100 * t1);
        ck_assert_msg(strstr(o, want), "want '%s' in %s", want, o);
        if (isnan(t5))
            ck_assert_ptr_nonnull(strstr(o, "top-5 n/a"));
        else {
            snprintf(want, sizeof want, "top-5 %.2f%%", 100 * t5);
            ck_assert_msg(strstr(o, want), "want '%s' in %s", want, o);
        }
    }
    snprintf(dumpdir, sizeof dumpdir, "%s/dump", tu_tmpdir());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "eval", d, "--dump", dumpdir, NULL), 0);
    snprintf(path, sizeof path, "%s/logits.npy", dumpdir);
    const char *npy = slurp_file(path);
    ck_assert_int_eq(memcmp(npy, "\x93NUMPY\x01\x00", 8), 0);
    ck_assert_ptr_nonnull(strstr(npy + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (80, 10), }"));
    snprintf(path, sizeof path, "%s/confusion.csv", dumpdir);
    ck_assert_ptr_nonnull(strstr(slurp_file(path), "true\\predicted,0,1,2,3,4,5,6,7,8,9\n"));
    snprintf(path, sizeof path, "%s/per_class.csv", dumpdir);
    char dumped[4096];
    snprintf(dumped, sizeof dumped, "%s", slurp_file(path));
    ck_assert_ptr_nonnull(strstr(dumped, "label,class,test_images,top1\n0,"));
    /* the run folder's own per-class and confusion files of its last state say the same */
    snprintf(path, sizeof path, "%s/per_class-2.csv", d);
    ck_assert_str_eq(slurp_file(path), dumped);
    snprintf(path, sizeof path, "%s/confusion.csv", dumpdir);
    snprintf(dumped, sizeof dumped, "%s", slurp_file(path));
    snprintf(path, sizeof path, "%s/confusion-2.csv", d);
    ck_assert_str_eq(slurp_file(path), dumped);
    snprintf(path, sizeof path, "%s/confusion-0.csv", d); /* state 0: its 4 classes */
    ck_assert_ptr_nonnull(strstr(slurp_file(path), "true\\predicted,0,1,2,3\n"));
    /* refused: a state the run does not have, a folder without a run, another run's checkpoint */
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "eval", d, "--state", "7", NULL), 2);
    ck_assert_msg(strstr(e, "--state 7: the run has states 0 to 2"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "eval", tu_tmpdir(), NULL), 1);
    ck_assert_msg(strstr(e, "run.cfg: cannot read experiment"), "%s", e);
    char other[700], cmd[2000];
    snprintf(other, sizeof other, "%s/ev2", tu_tmpdir());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", cfg, "--out", other, "--set", "seed=4", NULL), 0);
    snprintf(cmd, sizeof cmd, "cp %s/state-1.safetensors %s/state-1.safetensors", other, d);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "eval", d, "--state", "1", NULL), 2);
    ck_assert_msg(strstr(e, "state-1.safetensors belongs to another run"), "%s", e);
}
END_TEST

/* cilscale train: a model and its per-epoch log (issue 14 item 1). */
START_TEST(train_writes_epochs)
{
    const char *data = tiny_data();
    char d[700], o[8192], e[8192], path[800];
    snprintf(d, sizeof d, "%s/tr", tu_tmpdir());
    int rc = tu_run(o, sizeof o, e, sizeof e, "train", "--arch", "resnet18", "--width", "0.1", "--depth", "0.5",
                    "--data", data, "--epochs", "2", "--batch", "16", "--device", "threads=1", "--out", d, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_ptr_nonnull(strstr(o, "test accuracy "));
    snprintf(path, sizeof path, "%s/epochs.csv", d);
    const char *csv = slurp_file(path);
    ck_assert_ptr_nonnull(csv);
    ck_assert_ptr_nonnull(strstr(csv, "state,epoch,lr,loss,train_top1,images_per_s,seconds,term,value,weight\n0,0,0.1,"));
    ck_assert_ptr_nonnull(strstr(csv, "\n0,1,0.05,")); /* cosine: half the rate in the second of two epochs */
    ck_assert_ptr_nonnull(strstr(csv, ",softmax_xent,"));
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/losses.svg", d);
    ck_assert_int_eq(stat(path, &st), 0);
}
END_TEST

START_TEST(run_config_errors)
{
    char o[4096], e[4096];
    const char *p = tu_write("badplugin.cfg", "cil = { algorithm = \"icarl\"; };\n");
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", p, "--set", "data.path=/nonexistent", NULL), 2);
    /* the data path fails first or the plugin: whichever, one line naming it */
    ck_assert_msg(strstr(e, "icarl") || strstr(e, "/nonexistent"), "%s", e);
    p = tu_write("badplugin2.cfg", "cil = { algorithm = \"icarl\"; };\n");
    char data_arg[700];
    snprintf(data_arg, sizeof data_arg, "data.path=%s", tiny_data());
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", p, "--set", data_arg, NULL), 2);
    ck_assert_msg(strstr(e, "cil.algorithm: unknown cil 'icarl' (loaded: lucir, finetune)"), "%s", e);
    p = tu_write("nodata.cfg", "data = { path = \"/nonexistent/fm\"; };\n");
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", p, NULL), 1);
    ck_assert_msg(strstr(e, "/nonexistent/fm"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--set", "train.epoch=3", NULL), 2);
    ck_assert_msg(strstr(e, "cilscale run: --set: unknown key 'train.epoch'"), "%s", e);
    p = tu_write("badopt.cfg", "cil = { algorithm = \"lucir\"; lambda = 3; };\n");
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", p, "--set", data_arg, NULL), 2);
    ck_assert_msg(strstr(e, "cil.lambda: unknown key 'lambda' (lucir knows: lambda_base)"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "a.cfg", "b.cfg", NULL), 2);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--help", NULL), 0);
    ck_assert_ptr_nonnull(strstr(o, "usage: cilscale run"));
    /* issue 13 item 9: each names the file, key or value and what is expected */
    p = tu_write("groupkey.cfg", "data = 5;\n");
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", p, NULL), 2);
    ck_assert_msg(strstr(e, "groupkey.cfg:1: data: expected a group, data = { ... };"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--set", "foo.bar=1", NULL), 2);
    ck_assert_msg(strstr(e, "unknown key 'foo.bar': no group 'foo' (known: data, scenario, model"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", tu_tmpdir(), NULL), 2);
    ck_assert_msg(strstr(e, "cannot read experiment: not a file (a folder)") && !strstr(e, "flex"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--set", "out=", NULL), 2);
    ck_assert_msg(strstr(e, "out: expected a folder, not an empty string"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--out", "", NULL), 2);
    ck_assert_msg(strstr(e, "--out '': expected a folder"), "%s", e);
    static char longpath[5000];
    for (int i = 0; i < 4400; i += 2)
        memcpy(longpath + i, "a/", 2);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--out", longpath, NULL), 2);
    ck_assert_msg(strstr(e, "--out: a path of 4400 bytes; at most"), "%s", e);
    ck_assert_int_eq(tu_run(o, sizeof o, e, sizeof e, "run", "--resume", longpath, NULL), 2);
    ck_assert_msg(strstr(e, "--resume: a path of 4400 bytes"), "%s", e);
    (void)base_cfg;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cil");
    TCase *t = tcase_create("scenario");
    tcase_add_test(t, scenario_equal_split_covers_every_class_once);
    tcase_add_test(t, scenario_order_from_seed);
    tcase_add_test(t, scenario_errors);
    tcase_add_test(t, scenario_indices_per_class_limit);
    suite_add_tcase(s, t);
    t = tcase_create("algorithms");
    tcase_add_test(t, lucir_lambda_is_adaptive);
    tcase_add_test(t, lucir_imprints_new_classes);
    tcase_add_test(t, finetune_is_plain);
    suite_add_tcase(s, t);
    t = tcase_create("experiment");
    tcase_add_checked_fixture(t, NULL, tu_remove_tmpdir);
    tcase_add_test(t, experiment_errors_name_the_key);
    tcase_add_test(t, experiment_round_trips);
    tcase_add_test(t, experiment_settings_name_what_matters);
    tcase_add_test(t, experiment_accepted_reads_back);
    suite_add_tcase(s, t);
    t = tcase_create("runs");
    tcase_set_timeout(t, 240);
    tcase_add_checked_fixture(t, NULL, tu_remove_tmpdir);
    tcase_add_test(t, run_writes_results_and_resume_matches);
    tcase_add_test(t, interrupt_saves_and_resume_finishes);
    tcase_add_test(t, sigterm_saves);
    tcase_add_test(t, run_config_errors);
    tcase_add_test(t, run_folder_is_one_run);
    tcase_add_test(t, divergence_is_named);
    tcase_add_test(t, eval_reproduces_the_run);
    tcase_add_test(t, train_writes_epochs);
    tcase_add_test(t, sweep_lists_and_refuses);
    tcase_add_test(t, sweep_runs_skips_and_resumes);
    suite_add_tcase(s, t);
    return tu_run_suite(s) ? EXIT_FAILURE : EXIT_SUCCESS;
}
