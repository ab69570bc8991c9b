/* cmd_bench.c: `cilscale bench`: training and inference throughput of a scaled network on a backend. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/clock.h"
#include "cilscale/rng.h"
#include "runtime/train.h"
#include "cli/cli.h"
#include "cli/dp_mpi.h"

static const char usage[] =
    "usage: cilscale bench --arch A (--budget M [--policy P] | --width W [--depth D]) --batch N --input CxHxW\n"
    "                      [--backend B] [--device D] [--classes K] [--stem S] [--head H] [--steps S]\n"
    "                      [--warmup W] [--json] [--profile]\n"
    "\n"
    "Times training steps (forward, backward, SGD update) and inference passes\n"
    "of the network on random data, after warm-up, and prints images/s and the\n"
    "GFLOP/s achieved (forward conv + linear multiply-adds x 2; a training step\n"
    "counts three times the forward).\n"
    "\n"
    "Under mpirun -np N each rank runs its share of every batch (of the same\n"
    "random batch) and the gradients are summed over the ranks each step, as\n"
    "in a data-parallel train; images/s are the whole batch's, rank 0 prints.\n"
    "\n"
    "  --batch N          images per step (default 128)\n"
    "  --input CxHxW      input size (default 3x32x32)\n"
    "  --backend B        compute backend plugin (default cpu)\n"
    "  --device D         backend device string (cpu: threads=N)\n"
    "  --steps S          timed steps of each kind (default 20)\n"
    "  --warmup W         untimed steps first (default 3)\n"
    "  --profile          then the time per op of all those steps (cpu: wall time; vulkan: timestamps)\n"
    "  --sync-bn          under mpirun: batch norm over the whole batch (see cilscale train)\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 the backend failed; 2 bad usage.\n";

enum { O_BATCH = 256, O_INPUT, O_BACKEND, O_DEVICE, O_STEPS, O_WARMUP, O_PROFILE, O_SYNC_BN };

typedef struct bench_opts {
    cli_net_opts net;
    int batch, steps, warmup, ic, ih, iw, profile, have_input, sync_bn;
    const char *backend, *device;
} bench_opts;

/* What one bench needs and frees: the plugins, the device, the model and its random batch. */
typedef struct bench {
    cs_registry *reg;
    const cs_plugin *bp, *ap;
    cs_scale_result net;
    cs_device *dev;
    cs_model m;
    float *x, *y, *logits_row;
    double train_ips, infer_ips;
    cs_dp *dp; /* under mpirun: this rank's rows [lo, hi) of each batch */
    int lo, hi;
} bench;

static int take_option(void *ctx, int opt, const char *arg)
{
    bench_opts *o = ctx;
    int bad = 0;
    switch (opt) {
    case O_BATCH: bad = cli_int("bench", "batch", arg, 1, 65536, &o->batch); break;
    case O_STEPS: bad = cli_int("bench", "steps", arg, 1, 1000000, &o->steps); break;
    case O_WARMUP: bad = cli_int("bench", "warmup", arg, 0, 1000000, &o->warmup); break;
    case O_BACKEND: o->backend = arg; break;
    case O_DEVICE: o->device = arg; break;
    case O_PROFILE: o->profile = 1; break;
    case O_SYNC_BN: o->sync_bn = 1; break;
    case O_INPUT:
        o->have_input = 1;
        if (sscanf(arg, "%dx%dx%d", &o->ic, &o->ih, &o->iw) != 3 || o->ic < 1 || o->ih < 1 || o->iw < 1 ||
            o->ic > 4096 || o->ih > 8192 || o->iw > 8192) {
            fprintf(stderr, "cilscale bench: --input '%s': expected CxHxW, e.g. 3x32x32\n", arg);
            bad = 1;
        }
        break;
    default: return CLI_OPT_UNKNOWN;
    }
    return bad ? CLI_OPT_BAD : CLI_OPT_TAKEN;
}

/* The network on its device, with a random batch set as its input and labels.
 * CLI_USAGE for an unknown plugin or bad network, CLI_FAIL when the backend fails. */
static int bench_setup(const bench_opts *o, bench *b, cs_error *err)
{
    b->bp = cli_find("bench", b->reg, CS_KIND_BACKEND, o->backend);
    int rc;
    if (!b->bp)
        return CLI_USAGE;
    if ((rc = cli_net_resolve("bench", b->reg, &o->net, &b->ap, &b->net)))
        return rc; /* printed */
    if (cs_device_open(b->bp->iface, b->bp->name, o->device, &b->dev, err) || cs_dp_check_device(b->dp, b->dev, err) ||
        cs_model_init(&b->m, b->ap->iface, b->ap->name, &b->net.cfg, o->batch, o->ic, o->ih, o->iw, b->dev, 1, err))
        return CLI_FAIL;
    size_t nx = (size_t)o->batch * (size_t)o->ic * (size_t)o->ih * (size_t)o->iw;
    b->x = malloc(sizeof(float) * nx);
    b->y = malloc(sizeof(float) * (size_t)o->batch);
    b->logits_row = malloc(sizeof(float) * (size_t)o->net.classes);
    if (!b->x || !b->y || !b->logits_row) {
        cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        return CLI_FAIL;
    }
    cs_rng r;
    cs_rng_seed(&r, 1, 7);
    for (size_t i = 0; i < nx; i++)
        b->x[i] = (float)cs_rng_normal(&r);
    for (int i = 0; i < o->batch; i++)
        b->y[i] = (float)cs_rng_below(&r, (uint32_t)o->net.classes);
    b->lo = 0;
    b->hi = o->batch;
    if (b->dp) {
        cs_dp_share(b->dp, o->batch, &b->lo, &b->hi);
        if (b->hi == b->lo)
            return cs_error_set(err, CS_ERR_ARG, "%d ranks cannot share batches of %d: give each rank at least one "
                                "image", cs_dp_world(b->dp), o->batch), CLI_USAGE;
        if (cs_dp_attach(b->dp, &b->m, err))
            return CLI_FAIL;
    }
    const size_t row = (size_t)o->ic * (size_t)o->ih * (size_t)o->iw;
    if (cs_plan_set_input(b->m.plan, b->m.input, b->x + row * (size_t)b->lo, b->hi - b->lo, err) ||
        cs_plan_set_input(b->m.plan, b->m.labels, b->y + b->lo, b->hi - b->lo, err))
        return CLI_FAIL;
    if (o->profile && !cs_plan_can_profile(b->m.plan)) {
        fprintf(stderr, "cilscale bench: --profile: the %s backend has no profiler\n", b->bp->name);
        return CLI_USAGE;
    }
    /* every step below is timed on the device too (timestamps slow it a little) */
    if (o->profile && cs_plan_profile(b->m.plan, NULL, 0, err))
        return CLI_FAIL;
    return CLI_OK;
}

/* Warm-up, then timed training steps and inference passes. */
static int time_steps(const bench_opts *o, bench *b, cs_error *err)
{
    cs_sgd sgd = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f};
    double t_train = 0, t_infer = 0;
    float y_loss[1];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < o->warmup + o->steps; i++) {
            double t0 = cs_now_s();
            int e;
            const int n = b->hi - b->lo;
            if (pass == 0 && b->dp) /* this rank's rows, the sum over the ranks, the update */
                e = cs_dp_forward_backward(b->dp, &b->m, n, o->batch, 0, err) || cs_plan_update(b->m.plan, &sgd, err);
            else if (pass == 0)
                e = cs_plan_step(b->m.plan, n, &sgd, err);
            else
                e = cs_plan_forward(b->m.plan, n, 0, err);
            /* reading a value back waits for the device to finish the step */
            if (e || (pass == 0 ? cs_plan_read_tensor(b->m.plan, b->m.xent, y_loss, 1, err)
                                : cs_plan_read_tensor(b->m.plan, b->m.logits, b->logits_row, 1, err)))
                return CLI_FAIL;
            if (i >= o->warmup)
                *(pass == 0 ? &t_train : &t_infer) += cs_now_s() - t0;
        }
    }
    b->train_ips = o->batch * o->steps / t_train;
    b->infer_ips = o->batch * o->steps / t_infer;
    return CLI_OK;
}

static void print_result(const bench_opts *o, const bench *b)
{
    double flops = cs_graph_flops_per_image(b->m.g);
    char desc[256], a[32];
    cs_device_describe(b->dev, desc, sizeof desc);
    if (o->net.json) {
        printf("{\"backend\": ");
        cli_json_string(stdout, b->bp->name);
        printf(", \"device\": ");
        cli_json_string(stdout, desc);
        printf(", \"arch\": ");
        cli_json_string(stdout, b->ap->name);
        printf(", \"policy\": ");
        if (o->net.manual)
            printf("null");
        else
            cli_json_string(stdout, o->net.policy ? o->net.policy : "psi");
        printf(", \"w\": %.6g, \"depths\": ", b->net.w);
        cli_json_ints(stdout, b->net.cfg.depths, ((const cs_arch_iface *)b->ap->iface)->n_stages);
        printf(", \"params\": %lld, \"batch\": %d, \"input\": \"%dx%dx%d\", \"classes\": %d, \"stem\": \"%s\", "
               "\"steps\": %d, \"train_img_per_s\": %.1f, \"infer_img_per_s\": %.1f, \"fwd_gflop_per_img\": %.4f, "
               "\"train_gflops\": %.2f, \"infer_gflops\": %.2f}\n",
               (long long)b->net.params, o->batch, o->ic, o->ih, o->iw, o->net.classes, cs_stem_name(o->net.stem),
               o->steps, b->train_ips, b->infer_ips, flops / 1e9, 3 * flops * b->train_ips / 1e9,
               flops * b->infer_ips / 1e9);
    } else {
        printf("%s on %s\n", b->ap->name, desc);
        printf("  %s parameters, batch %d, input %dx%dx%d, %s stem, %.3f GFLOP per image forward\n",
               cli_thousands(b->net.params, a, sizeof a), o->batch, o->ic, o->ih, o->iw, cs_stem_name(o->net.stem),
               flops / 1e9);
        printf("  train     %9.1f img/s  %7.2f GFLOP/s\n", b->train_ips, 3 * flops * b->train_ips / 1e9);
        printf("  inference %9.1f img/s  %7.2f GFLOP/s\n", b->infer_ips, flops * b->infer_ips / 1e9);
    }
}

static int bench_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_NET_LONG_OPTIONS,
        {"batch", required_argument, 0, O_BATCH},     {"input", required_argument, 0, O_INPUT},
        {"backend", required_argument, 0, O_BACKEND}, {"device", required_argument, 0, O_DEVICE},
        {"steps", required_argument, 0, O_STEPS},     {"warmup", required_argument, 0, O_WARMUP},
        {"profile", no_argument, 0, O_PROFILE},       {"sync-bn", no_argument, 0, O_SYNC_BN},
        {0, 0, 0, 0},
    };
    bench_opts o = {.batch = 128, .steps = 20, .warmup = 3, .ic = 3, .ih = 32, .iw = 32, .backend = "cpu", .device = ""};
    cli_net_defaults(&o.net);
    int rc = cli_getopt("bench", argc, argv, longopts, usage, &o.net, take_option, &o, 0);
    if (rc != CLI_CONTINUE)
        return rc;
    if (cli_net_validate("bench", &o.net))
        return CLI_USAGE;
    /* the input's C is the channel count: --in-channels says the same or nothing */
    if (o.net.have_in_channels && o.have_input && o.net.in_channels != o.ic) {
        fprintf(stderr, "cilscale bench: --in-channels %d and --input %dx%dx%d disagree (the input's C is the "
                        "channel count)\n", o.net.in_channels, o.ic, o.ih, o.iw);
        return CLI_USAGE;
    }
    if (o.net.have_in_channels)
        o.ic = o.net.in_channels;
    o.net.in_channels = o.ic;
    bench b = {0};
    if (cli_dp_join("bench", o.sync_bn, &b.dp))
        return CLI_FAIL;
    if (!(b.reg = cli_load_plugins("bench", o.net.plugins_conf, 0)))
        return CLI_FAIL;
    cs_error err = {0};
    rc = bench_setup(&o, &b, &err);
    if (b.dp && cli_dp_agree(rc ? CS_ERR : CS_OK, &err) && !rc)
        rc = CLI_FAIL; /* another rank's failure, named in err */
    if (!rc && !(rc = time_steps(&o, &b, &err))) {
        print_result(&o, &b);
        cli_dp_report("bench", stderr);
        if (o.profile) {
            char report[16384];
            if (cs_plan_profile(b.m.plan, report, sizeof report, &err))
                rc = CLI_FAIL;
            else
                fputs(report, o.net.json ? stderr : stdout);
        }
    }
    if (rc == CLI_FAIL && err.msg[0]) /* the steps that print their own reason leave err empty */
        fprintf(stderr, "cilscale bench: %s\n", err.msg);
    if (b.dp)
        cs_dp_attach(b.dp, NULL, &err);
    if (b.m.g)
        cs_model_free(&b.m);
    cs_device_close(b.dev);
    free(b.x);
    free(b.y);
    free(b.logits_row);
    cs_registry_free(b.reg);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    int rc = cli_dp_begin("bench");
    return rc ? rc : cli_dp_end(bench_cmd(argc, argv));
}
