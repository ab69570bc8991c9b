/* cmd_train.c: `cilscale train`: ordinary (joint, non-incremental) training of a scaled network. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/train.h"
#include "cli/cli.h"
#include "cli/dp_mpi.h"
#include "runtime/results.h"
#include "cli/progress.h"

static const char usage[] =
    "usage: cilscale train --arch A (--budget M [--policy P] | --width W [--depth D | --depths LIST]) [options]\n"
    "\n"
    "Trains a scaled network on every class of a data set at once (the upper\n"
    "bound of class-incremental learning), evaluating on the test split after\n"
    "each epoch. Ctrl-C (or SIGTERM) stops at the next batch and saves the model.\n"
    "Under mpirun -np N (or srun) it is data-parallel: each rank trains on its\n"
    "share of every batch, the gradients are summed each step, rank 0 alone\n"
    "prints and writes --out, and a rank's failure stops every rank.\n"
    "\n"
    "data:\n"
    "  --data DIR         data set folder (default /usr/share/datasets/fashion-mnist)\n"
    "  --format F         idx, cifar10, cifar100, folder or list (default idx)\n"
    "  --image-size S     folder and list formats: images are resized to S x S (default 32)\n"
    "  --limit-train N    use only the first N training images (default all)\n"
    "  --limit-test N     evaluate on only the first N test images (default all)\n"
    "  --no-augment       no random crop or flip\n"
    "network (as cilscale scale; classes and input channels come from the data):\n"
    "  --arch A --budget M --policy P | --width W --depth D | --depths LIST\n"
    "  --stem S           imagenet or small (default: small for images up to 64 px)\n"
    "  --head H           linear or cosine (default linear)\n"
    "training:\n"
    "  --epochs E         (default 10)\n"
    "  --batch B          (default 128)\n"
    "  --lr X             base learning rate (default 0.1)\n"
    "  --momentum X       (default 0.9)\n"
    "  --weight-decay X   (default 5e-4)\n"
    "  --nesterov         Nesterov momentum\n"
    "  --schedule S       cosine, constant or multistep:E1,E2 (default cosine)\n"
    "  --seed S           drives initialisation, shuffling and augmentation (default 1)\n"
    "  --sync-bn          under mpirun: batch norm over the whole batch, not each rank's share\n"
    "                     (as one rank computes it; the cpu backend)\n"
    "  --backend B        compute backend plugin (default cpu)\n"
    "  --device D         backend device string (cpu: threads=N)\n"
    "  --out DIR          write the trained model there (model.safetensors), and epochs.csv and\n"
    "                     losses.svg (a row per epoch: lr, loss, training accuracy, images/s)\n"
    "  --plugins FILE     plugins.conf to load\n"
    "  --help             this text\n"
    "\n"
    "Exit status: 0 done; 1 failed (data, backend, non-finite loss); 2 bad usage; 130 interrupted by Ctrl-C,\n"
    "143 by SIGTERM (model saved).\n";


typedef struct train_opts {
    cli_net_opts net;
    const char *data, *format, *backend, *device, *out, *schedule;
    int image_size, limit_train, limit_test, augment, epochs, batch, nesterov, sync_bn;
    double lr, momentum, wd;
    uint64_t seed;
} train_opts;

enum { O_DATA = 256, O_FORMAT, O_SIZE, O_LTRAIN, O_LTEST, O_NOAUG, O_EPOCHS, O_BATCH, O_LR, O_MOM, O_WD,
       O_NESTEROV, O_SCHED, O_SEED, O_BACKEND, O_DEVICE, O_OUT, O_SYNC_BN };

static int take_option(void *ctx, int opt, const char *arg)
{
    train_opts *o = ctx;
    int bad = 0, seed = 0;
    switch (opt) {
    case O_DATA: o->data = arg; break;
    case O_FORMAT: o->format = arg; break;
    case O_SIZE: bad = cli_int("train", "image-size", arg, 8, 4096, &o->image_size); break;
    case O_LTRAIN: bad = cli_int("train", "limit-train", arg, 1, INT_MAX, &o->limit_train); break;
    case O_LTEST: bad = cli_int("train", "limit-test", arg, 1, INT_MAX, &o->limit_test); break;
    case O_NOAUG: o->augment = 0; break;
    case O_EPOCHS: bad = cli_int("train", "epochs", arg, 1, 100000, &o->epochs); break;
    case O_BATCH: bad = cli_int("train", "batch", arg, 1, 65536, &o->batch); break;
    case O_LR: bad = cli_positive("train", "lr", arg, &o->lr); break;
    case O_MOM: bad = cli_nonneg("train", "momentum", arg, &o->momentum); break;
    case O_WD: bad = cli_nonneg("train", "weight-decay", arg, &o->wd); break;
    case O_NESTEROV: o->nesterov = 1; break;
    case O_SCHED: o->schedule = arg; break;
    case O_SEED:
        bad = cli_int("train", "seed", arg, 0, INT_MAX, &seed);
        o->seed = (uint64_t)seed;
        break;
    case O_BACKEND: o->backend = arg; break;
    case O_DEVICE: o->device = arg; break;
    case O_OUT: o->out = arg; break;
    case O_SYNC_BN: o->sync_bn = 1; break;
    default: return CLI_OPT_UNKNOWN;
    }
    return bad ? CLI_OPT_BAD : CLI_OPT_TAKEN;
}

static int parse(int argc, char **argv, train_opts *o)
{
    static const struct option longopts[] = {
        CLI_NET_LONG_OPTIONS,
        {"data", required_argument, 0, O_DATA},          {"format", required_argument, 0, O_FORMAT},
        {"image-size", required_argument, 0, O_SIZE},    {"limit-train", required_argument, 0, O_LTRAIN},
        {"limit-test", required_argument, 0, O_LTEST},   {"no-augment", no_argument, 0, O_NOAUG},
        {"epochs", required_argument, 0, O_EPOCHS},      {"batch", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR},              {"momentum", required_argument, 0, O_MOM},
        {"weight-decay", required_argument, 0, O_WD},    {"nesterov", no_argument, 0, O_NESTEROV},
        {"schedule", required_argument, 0, O_SCHED},     {"seed", required_argument, 0, O_SEED},
        {"backend", required_argument, 0, O_BACKEND},    {"device", required_argument, 0, O_DEVICE},
        {"out", required_argument, 0, O_OUT},            {"sync-bn", no_argument, 0, O_SYNC_BN},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    cli_net_defaults(&o->net);
    o->data = "/usr/share/datasets/fashion-mnist";
    o->format = "idx";
    o->backend = "cpu";
    o->device = "";
    o->schedule = "cosine";
    o->augment = 1;
    o->epochs = 10;
    o->batch = 128;
    o->lr = 0.1;
    o->momentum = 0.9;
    o->wd = 5e-4;
    o->seed = 1;
    o->image_size = 32;
    int rc = cli_getopt("train", argc, argv, longopts, usage, &o->net, take_option, o, 0);
    if (rc != CLI_CONTINUE)
        return rc == CLI_OK ? -1 : rc;
    if (o->momentum >= 1) {
        fprintf(stderr, "cilscale train: --momentum %g: expected a number in [0, 1)\n", o->momentum);
        return CLI_USAGE;
    }
    return cli_net_validate("train", &o->net);
}

/* The first n of a split's indices. */
static int *first_indices(int total, int limit, int *n)
{
    *n = limit && limit < total ? limit : total;
    int *v = malloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; v && i < *n; i++)
        v[i] = i;
    return v;
}

typedef struct progress_ctx {
    cli_progress *p;
    int epoch, epochs;
    double done_s, epoch_est_s;
} progress_ctx;

static int on_batch(void *ctx, int bi, int nb, const cs_epoch_stats *st)
{
    progress_ctx *pc = ctx;
    if (cli_progress_due(pc->p)) {
        double per_batch = st->seconds / bi;
        double left = per_batch * (nb - bi) + per_batch * nb * (pc->epochs - pc->epoch - 1);
        cli_progress_update(pc->p, "epoch %d/%d  batch %d/%d  loss %.4f  acc %.1f%%  %.0f img/s  %s left",
                            pc->epoch + 1, pc->epochs, bi, nb, st->loss, 100.0 * (double)st->top1 / (double)st->seen,
                            (double)st->seen / st->seconds, cli_duration(left));
    }
    return cli_interrupted();
}

static int train_cmd(int argc, char **argv)
{
    train_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    cs_error err;
    cs_data_format fmt;
    if (cs_data_format_parse(o.format, &fmt)) {
        fprintf(stderr, "cilscale train: --format '%s': expected idx, cifar10, cifar100, folder or list\n", o.format);
        return CLI_USAGE;
    }
    cs_schedule sched;
    if (cs_schedule_parse(o.schedule, (float)o.lr, o.epochs, &sched, &err)) {
        fprintf(stderr, "cilscale train: --%s\n", err.msg);
        return CLI_USAGE;
    }
    cs_dp *dp;
    if (cli_dp_join("train", o.sync_bn, &dp))
        return CLI_FAIL;
    cs_registry *reg = cli_load_plugins("train", o.net.plugins_conf, 0);
    if (!reg)
        return CLI_FAIL;
    cs_dataset *train = NULL, *test = NULL;
    cs_batcher *tb = NULL, *eb = NULL;
    int *ti = NULL, *ei = NULL;
    cs_device *be_dev = NULL;
    cs_model m = {0};
    rc = CLI_USAGE;
    const cs_plugin *bp = cli_find("train", reg, CS_KIND_BACKEND, o.backend);
    if (!bp)
        goto out;
    rc = CLI_FAIL;
    /* (every failure a rank alone may meet is agreed on, so no rank waits for one that left) */
    int bad = cs_dataset_load(fmt, o.data, 1, o.image_size, 0, &train, &err) ||
              cs_dataset_load(fmt, o.data, 0, o.image_size, train->c, &test, &err);
    if (!bad && (test->n_classes != train->n_classes || test->c != train->c || test->h != train->h ||
                 test->w != train->w))
        bad = cs_error_set(&err, CS_ERR, "%s: the test split (%d classes, %dx%dx%d) does not match the training split "
                           "(%d classes, %dx%dx%d)", o.data, test->n_classes, test->c, test->h, test->w,
                           train->n_classes, train->c, train->h, train->w);
    if (cli_dp_agree(bad ? CS_ERR : CS_OK, &err)) {
        fprintf(stderr, "cilscale train: %s\n", err.msg);
        goto out;
    }
    o.net.classes = train->n_classes;
    o.net.in_channels = train->c;
    if (!o.net.have_stem)
        o.net.stem = cs_stem_auto(train->h);
    const cs_plugin *ap;
    cs_scale_result net;
    if ((rc = cli_net_resolve("train", reg, &o.net, &ap, &net)))
        goto out;
    rc = CLI_FAIL;
    cs_image_input in;
    cs_image_input_for(train, net.resolution, o.augment, &in);
    int n_train, n_test;
    ti = first_indices(train->n, o.limit_train, &n_train);
    ei = first_indices(test->n, o.limit_test, &n_test);
    bad = !ti || !ei ? cs_error_set(&err, CS_ERR_NOMEM, "out of memory") : CS_OK;
    if (!bad) {
        tb = dp ? cs_batcher_new_shard(train, ti, n_train, o.batch, &in.train, 1, NULL, o.seed, cs_dp_rank(dp),
                                       cs_dp_world(dp), &err)
                : cs_batcher_new(train, ti, n_train, o.batch, &in.train, 1, NULL, o.seed, &err);
        eb = tb ? cs_batcher_new(test, ei, n_test, o.batch, &in.eval, 0, NULL, o.seed, &err) : NULL;
        bad = !tb || !eb || cs_device_open(bp->iface, bp->name, o.device, &be_dev, &err) ||
              cs_model_init(&m, ap->iface, ap->name, &net.cfg, o.batch, train->c, in.h, in.w, be_dev, o.seed, &err);
    }
    if (!bad)
        bad = cs_dp_check_device(dp, be_dev, &err);
    if (!bad && o.out && cli_dp_lead() && cli_mkdirs(o.out))
        bad = cs_error_set(&err, CS_ERR_IO, "--out %s: %s", o.out, strerror(errno));
    if (cli_dp_agree(bad ? CS_ERR : CS_OK, &err)) {
        fprintf(stderr, "cilscale train: %s\n", err.msg);
        goto out;
    }
    char dev[256], pbuf[32];
    cs_device_describe(be_dev, dev, sizeof dev);
    fprintf(stderr, "cilscale train: %s w=%.3f depths", ap->name, net.w);
    for (int i = 0; i < ((const cs_arch_iface *)ap->iface)->n_stages; i++)
        fprintf(stderr, "%c%d", i ? ',' : ' ', net.cfg.depths[i]);
    char dpd[96] = "", dpw[80];
    if (dp) {
        cs_dp_describe(dp, dpw, sizeof dpw);
        snprintf(dpd, sizeof dpd, "; data-parallel over %s", dpw);
    }
    fprintf(stderr, ", %s parameters, %s stem, %s head; %d training and %d test images of %dx%dx%d, %d classes; %s%s\n",
            cli_thousands(net.params, pbuf, sizeof pbuf), cs_stem_name(net.cfg.stem), cs_head_name(net.cfg.head),
            n_train, n_test, train->c, in.h, in.w, train->n_classes, dev, dpd);
    cli_catch_interrupt();
    cli_progress prog;
    cli_progress_init(&prog, stderr);
    progress_ctx pc = {.p = &prog, .epochs = o.epochs};
    cs_epoch_stats tr = {0}, te = {0};
    int epoch, stopped = 0;
    double total_s = 0;
    /* with --out: DIR/epochs.csv and losses.svg, rewritten after each epoch (state 0 throughout) */
    cs_epoch_row *rows = o.out ? calloc((size_t)o.epochs + 1, sizeof *rows) : NULL;
    for (epoch = 0; epoch < o.epochs && !stopped; epoch++) {
        cs_sgd sgd = {.lr = cs_schedule_lr(&sched, epoch), .momentum = (float)o.momentum,
                      .weight_decay = (float)o.wd, .nesterov = o.nesterov};
        pc.epoch = epoch;
        int r = cs_model_train_epoch(&m, tb, &sgd, NULL, NULL, on_batch, &pc, &tr, &err);
        if (r < 0) {
            cli_progress_end(&prog);
            fprintf(stderr, "cilscale train: epoch %d: %s\n", epoch + 1, err.msg);
            goto out_sig;
        }
        stopped = r == 1;
        total_s += tr.seconds;
        if (cli_dp_agree(cs_model_evaluate(&m, eb, 0, &te, NULL, &err), &err)) {
            cli_progress_end(&prog);
            fprintf(stderr, "cilscale train: evaluating: %s\n", err.msg);
            goto out_sig;
        }
        total_s += te.seconds;
        if (rows && !stopped) {
            cs_epoch_row *e = &rows[epoch];
            *e = (cs_epoch_row){.state = 0, .epoch = epoch, .lr = sgd.lr, .loss = tr.loss,
                                .train_top1 = tr.seen ? (double)tr.top1 / (double)tr.seen : 0,
                                .images_per_s = tr.seconds > 0 ? (double)tr.seen / tr.seconds : 0,
                                .seconds = tr.seconds, .n_terms = tr.n_terms < CS_EPOCH_TERMS ? tr.n_terms : CS_EPOCH_TERMS};
            for (int t = 0; t < e->n_terms; t++) {
                e->term[t] = tr.term[t];
                e->weight[t] = tr.weight[t];
                snprintf(e->term_name[t], sizeof e->term_name[t], "%s", tr.term_name[t] ? tr.term_name[t] : "loss");
            }
            if (cli_dp_agree(cli_dp_lead() ? cs_epochs_write(o.out, rows, epoch + 1, &err) : CS_OK, &err)) {
                cli_progress_end(&prog);
                fprintf(stderr, "cilscale train: %s\n", err.msg);
                rc = CLI_FAIL;
                goto out_sig;
            }
        }
        char t5[16] = "n/a"; /* top-5 of 5 or fewer classes says nothing */
        if (train->n_classes > 5)
            snprintf(t5, sizeof t5, "%.2f%%", 100.0 * (double)te.top5 / (double)te.seen);
        cli_progress_line(&prog, "epoch %d/%d%s: loss %.4f, train acc %.2f%%, test acc %.2f%% (top-5 %s), lr %.4g, "
                                 "%.0f img/s, %s",
                          epoch + 1, o.epochs, stopped ? " (interrupted)" : "", tr.loss,
                          100.0 * (double)tr.top1 / (double)(tr.seen ? tr.seen : 1),
                          100.0 * (double)te.top1 / (double)te.seen, t5, sgd.lr, (double)tr.seen / tr.seconds,
                          cli_duration(total_s));
    }
    char t5[16] = "n/a";
    if (train->n_classes > 5)
        snprintf(t5, sizeof t5, "%.2f%%", 100.0 * (double)te.top5 / (double)te.seen);
    printf("test accuracy %.2f%% (top-5 %s) after %d epoch%s, %s\n", 100.0 * (double)te.top1 / (double)te.seen, t5,
           epoch, epoch == 1 ? "" : "s", cli_duration(total_s));
    rc = stopped ? 128 + (cli_interrupted() ? cli_interrupted() : SIGINT) : CLI_OK;
    if (o.out) {
        char path[PATH_MAX];
        float *params = malloc(sizeof(float) * (size_t)(cs_graph_n_params(m.g) + cs_graph_n_buffers(m.g) + 1));
        snprintf(path, sizeof path, "%s/model.safetensors", o.out);
        char acc[32], ep[16];
        snprintf(acc, sizeof acc, "%.4f", (double)te.top1 / (double)te.seen);
        snprintf(ep, sizeof ep, "%d", epoch);
        const char *extra[] = {"test_top1", acc, "epochs", ep, NULL};
        cs_model_meta mm;
        const char *const *meta = cs_model_meta_fill(&mm, &m, &in.eval, extra);
        int sv = !params ? cs_error_set(&err, CS_ERR_NOMEM, "out of memory")
                 : !cli_dp_lead() ? CS_OK /* rank 0 writes */
                 : cs_model_read_params(&m, params, params + cs_graph_n_params(m.g), &err) ||
                       cs_checkpoint_save(path, m.g, params, params + cs_graph_n_params(m.g), meta, &err);
        if (cli_dp_agree(sv ? CS_ERR : CS_OK, &err)) {
            fprintf(stderr, "cilscale train: saving the model: %s\n", err.msg);
            rc = CLI_FAIL;
        } else {
            fprintf(stderr, "cilscale train: model saved to %s\n", path);
        }
        free(params);
    }
    cli_dp_report("train", stderr);
out_sig:
    cli_release_interrupt();
    free(rows);
out:
    cs_model_free(&m);
    cs_device_close(be_dev);
    cs_batcher_free(tb);
    cs_batcher_free(eb);
    free(ti);
    free(ei);
    cs_dataset_free(train);
    cs_dataset_free(test);
    cs_registry_free(reg);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    int rc = cli_dp_begin("train");
    return rc ? rc : cli_dp_end(train_cmd(argc, argv));
}
