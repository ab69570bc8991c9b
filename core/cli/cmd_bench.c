/* cmd_bench.c: `cilscale bench`: training and inference throughput of a scaled network on a backend. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/clock.h"
#include "cilscale/rng.h"
#include "runtime/train.h"
#include "cli/cli.h"

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
    "  --batch N          images per step (default 128)\n"
    "  --input CxHxW      input size (default 3x32x32)\n"
    "  --backend B        compute backend plugin (default cpu)\n"
    "  --device D         backend device string (cpu: threads=N)\n"
    "  --steps S          timed steps of each kind (default 20)\n"
    "  --warmup W         untimed steps first (default 3)\n"
    "  --profile          then the time per op of all those steps (cpu: wall time; vulkan: timestamps)\n" CLI_NET_HELP
    "\n"
    "Exit status: 0 done; 1 the backend failed; 2 bad usage.\n";

int cmd_bench(int argc, char **argv)
{
    enum { O_BATCH = 256, O_INPUT, O_BACKEND, O_DEVICE, O_STEPS, O_WARMUP, O_PROFILE };
    static const struct option longopts[] = {
        CLI_NET_LONG_OPTIONS,
        {"batch", required_argument, 0, O_BATCH},     {"input", required_argument, 0, O_INPUT},
        {"backend", required_argument, 0, O_BACKEND}, {"device", required_argument, 0, O_DEVICE},
        {"steps", required_argument, 0, O_STEPS},     {"warmup", required_argument, 0, O_WARMUP},
        {"profile", no_argument, 0, O_PROFILE},       {0, 0, 0, 0},
    };
    cli_net_opts o;
    cli_net_defaults(&o);
    int batch = 128, steps = 20, warmup = 3, ic = 3, ih = 32, iw = 32, profile = 0;
    const char *backend = "cpu", *device = "";
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int took = cli_net_option("bench", &o, c, optarg);
        if (took < 0)
            return CLI_USAGE;
        if (took)
            continue;
        int bad = 0;
        switch (c) {
        case 'h': fputs(usage, stdout); return CLI_OK;
        case O_BATCH: bad = cli_int("bench", "batch", optarg, 1, 65536, &batch); break;
        case O_STEPS: bad = cli_int("bench", "steps", optarg, 1, 1000000, &steps); break;
        case O_WARMUP: bad = cli_int("bench", "warmup", optarg, 0, 1000000, &warmup); break;
        case O_BACKEND: backend = optarg; break;
        case O_DEVICE: device = optarg; break;
        case O_PROFILE: profile = 1; break;
        case O_INPUT:
            if (sscanf(optarg, "%dx%dx%d", &ic, &ih, &iw) != 3 || ic < 1 || ih < 1 || iw < 1 || ic > 4096 ||
                ih > 8192 || iw > 8192) {
                fprintf(stderr, "cilscale bench: --input '%s': expected CxHxW, e.g. 3x32x32\n", optarg);
                return CLI_USAGE;
            }
            break;
        default: cli_bad_option("bench", optopt, argv, optind); return CLI_USAGE;
        }
        if (bad)
            return CLI_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "cilscale bench: unexpected argument '%s' (see cilscale bench --help)\n", argv[optind]);
        return CLI_USAGE;
    }
    if (cli_net_validate("bench", &o))
        return CLI_USAGE;
    o.in_channels = ic;
    cs_registry *reg = cli_load_plugins("bench", o.plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    int rc = CLI_USAGE;
    cs_device *dev = NULL;
    float *x = NULL, *y = NULL, *logits_row = NULL, y_loss[1];
    cs_model m = {0};
    const cs_plugin *bp = cli_find("bench", reg, CS_KIND_BACKEND, backend);
    const cs_plugin *ap;
    cs_scale_result net;
    if (!bp || (rc = cli_net_resolve("bench", reg, &o, &ap, &net)))
        goto out;
    rc = CLI_FAIL;
    cs_error err;
    if (cs_device_open(bp->iface, bp->name, device, &dev, &err) ||
        cs_model_init(&m, ap->iface, ap->name, &net.cfg, batch, ic, ih, iw, dev, 1, &err)) {
        fprintf(stderr, "cilscale bench: %s\n", err.msg);
        goto out;
    }
    size_t nx = (size_t)batch * (size_t)ic * (size_t)ih * (size_t)iw;
    x = malloc(sizeof(float) * nx);
    y = malloc(sizeof(float) * (size_t)batch);
    logits_row = malloc(sizeof(float) * (size_t)o.classes);
    if (!x || !y || !logits_row)
        goto out;
    cs_rng r;
    cs_rng_seed(&r, 1, 7);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)cs_rng_normal(&r);
    for (int i = 0; i < batch; i++)
        y[i] = (float)cs_rng_below(&r, (uint32_t)o.classes);
    cs_sgd sgd = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f};
    if (cs_plan_set_input(m.plan, m.input, x, batch, &err) || cs_plan_set_input(m.plan, m.labels, y, batch, &err))
        goto fail;
    if (profile && !cs_plan_can_profile(m.plan)) {
        fprintf(stderr, "cilscale bench: --profile: the %s backend has no profiler\n", bp->name);
        rc = CLI_USAGE;
        goto out;
    }
    /* every step below is timed on the device too (timestamps slow it a little) */
    if (profile && cs_plan_profile(m.plan, NULL, 0, &err))
        goto fail;
    double t_train = 0, t_infer = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < warmup + steps; i++) {
            double t0 = cs_now_s();
            int e;
            if (pass == 0)
                e = cs_plan_step(m.plan, batch, &sgd, &err);
            else
                e = cs_plan_forward(m.plan, batch, 0, &err);
            /* reading a value back waits for the device to finish the step */
            if (e || (pass == 0 ? cs_plan_read_tensor(m.plan, m.xent, y_loss, 1, &err)
                                : cs_plan_read_tensor(m.plan, m.logits, logits_row, 1, &err)))
                goto fail;
            if (i >= warmup)
                *(pass == 0 ? &t_train : &t_infer) += cs_now_s() - t0;
        }
    }
    double train_ips = batch * steps / t_train, infer_ips = batch * steps / t_infer;
    double flops = cs_graph_flops_per_image(m.g);
    char desc[256], a[32];
    cs_device_describe(dev, desc, sizeof desc);
    if (o.json) {
        printf("{\"backend\": ");
        cli_json_string(stdout, bp->name);
        printf(", \"device\": ");
        cli_json_string(stdout, desc);
        printf(", \"arch\": ");
        cli_json_string(stdout, ap->name);
        printf(", \"policy\": ");
        if (o.manual)
            printf("null");
        else
            cli_json_string(stdout, o.policy ? o.policy : "psi");
        printf(", \"w\": %.6g, \"depths\": ", net.w);
        cli_json_ints(stdout, net.cfg.depths, ((const cs_arch_iface *)ap->iface)->n_stages);
        printf(", \"params\": %lld, \"batch\": %d, \"input\": \"%dx%dx%d\", \"classes\": %d, \"stem\": \"%s\", "
               "\"steps\": %d, \"train_img_per_s\": %.1f, \"infer_img_per_s\": %.1f, \"fwd_gflop_per_img\": %.4f, "
               "\"train_gflops\": %.2f, \"infer_gflops\": %.2f}\n",
               (long long)net.params, batch, ic, ih, iw, o.classes, cs_stem_name(o.stem), steps, train_ips, infer_ips,
               flops / 1e9, 3 * flops * train_ips / 1e9, flops * infer_ips / 1e9);
    } else {
        printf("%s on %s\n", ap->name, desc);
        printf("  %s parameters, batch %d, input %dx%dx%d, %s stem, %.3f GFLOP per image forward\n",
               cli_thousands(net.params, a, sizeof a), batch, ic, ih, iw, cs_stem_name(o.stem), flops / 1e9);
        printf("  train     %9.1f img/s  %7.2f GFLOP/s\n", train_ips, 3 * flops * train_ips / 1e9);
        printf("  inference %9.1f img/s  %7.2f GFLOP/s\n", infer_ips, flops * infer_ips / 1e9);
    }
    if (profile) {
        char report[16384];
        if (cs_plan_profile(m.plan, report, sizeof report, &err))
            goto fail;
        fputs(report, o.json ? stderr : stdout);
    }
    rc = CLI_OK;
    goto out;
fail:
    fprintf(stderr, "cilscale bench: %s\n", err.msg);
out:
    if (m.g)
        cs_model_free(&m);
    cs_device_close(dev);
    free(x);
    free(y);
    free(logits_row);
    cs_registry_free(reg);
    return rc;
}
