/* cmd_eval.c: `cilscale eval RUN_DIR`: a run's checkpoint evaluated again,
 * with its per-class accuracy and confusion matrix, and its logits on request. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "runtime/atomic.h"
#include "runtime/experiment.h"
#include "runtime/results.h"

static const char usage[] =
    "usage: cilscale eval RUN_DIR [--state K] [--dump DIR [--inputs]] [--plugins FILE]\n"
    "\n"
    "Evaluates the checkpoint RUN_DIR/state-K.safetensors (default: the last\n"
    "finished state) on the test images of the classes seen by then, as the run\n"
    "did (its run.cfg: data, network, batches, device), and prints top-1, top-5\n"
    "and the accuracy of each class. The numbers equal the run's results.csv.\n"
    "\n"
    "  --state K        the state to evaluate (from 0, as in the file names)\n"
    "  --dump DIR       also write DIR/per_class.csv, DIR/confusion.csv (rows: true\n"
    "                   model label, columns: predicted), DIR/logits.npy (float32,\n"
    "                   test images x classes seen), DIR/labels.npy (int32) and\n"
    "                   DIR/predictions.csv\n"
    "  --inputs         with --dump, also DIR/inputs.npy: the test images as the\n"
    "                   network saw them (float32, images x C x H x W, normalised)\n"
    "  --plugins FILE   plugins.conf to load\n"
    "  --help           this text\n"
    "\n"
    "Model label i is data-set class class_order[i] (in results.json and in the\n"
    "files above). Exit status: 0 done; 1 the evaluation failed; 2 bad usage, or a\n"
    "checkpoint that is not the run's.\n";

typedef struct eval_opts {
    int state, inputs;
    const char *dump, *plugins;
} eval_opts;

enum { O_STATE = 300, O_DUMP, O_INPUTS, O_PLUGINS };

static int take_option(void *ctx, int opt, const char *arg)
{
    eval_opts *o = ctx;
    switch (opt) {
    case O_STATE: return cli_int("eval", "state", arg, 0, 63, &o->state) ? CLI_OPT_BAD : CLI_OPT_TAKEN;
    case O_DUMP: o->dump = arg; return CLI_OPT_TAKEN;
    case O_INPUTS: o->inputs = 1; return CLI_OPT_TAKEN;
    case O_PLUGINS: o->plugins = arg; return CLI_OPT_TAKEN;
    default: return CLI_OPT_UNKNOWN;
    }
}

/* A .npy file (format 1.0): a C-order array of dtype descr and shape dims[0..nd). */
static int write_npy(const char *path, const char *descr, const void *data, size_t elem, int nd, const int *dims,
                     cs_error *err)
{
    char hdr[256];
    size_t count = 1;
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < nd; i++) {
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%d%s", dims[i], nd == 1 || i + 1 < nd ? ", " : "");
        count *= (size_t)dims[i];
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    int total = 10 + n + 1, pad = (64 - total % 64) % 64; /* the header ends in \n on a 64-byte boundary */
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, 0666, err);
    if (rc == CS_OK) {
        unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
        unsigned hl = (unsigned)(n + pad + 1);
        magic[8] = (unsigned char)(hl & 255);
        magic[9] = (unsigned char)(hl >> 8);
        fwrite(magic, 1, 10, a.f);
        fwrite(hdr, 1, (size_t)n, a.f);
        for (int i = 0; i < pad; i++)
            fputc(' ', a.f);
        fputc('\n', a.f);
        fwrite(data, elem, count, a.f);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}

static int dump(const char *dir, const cs_eval_result *r, cs_error *err)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot make the folder (%s)", dir, strerror(errno));
    char path[PATH_MAX + 32];
    cs_atomic a;
    int rc, k = r->n_seen;
    if ((rc = cs_results_write_classes(dir, -1, k, r->class_order, r->hits, r->count, r->confusion, err)))
        return rc;
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    if ((rc = write_npy(path, "<f4", r->logits, sizeof(float), 2, (int[]){r->n_test, k}, err)))
        return rc;
    snprintf(path, sizeof path, "%s/labels.npy", dir);
    if ((rc = write_npy(path, "<i4", r->labels, sizeof(int), 1, (int[]){r->n_test}, err)))
        return rc;
    if (r->inputs) {
        snprintf(path, sizeof path, "%s/inputs.npy", dir);
        if ((rc = write_npy(path, "<f4", r->inputs, sizeof(float), 4, (int[]){r->n_test, r->in_c, r->in_h, r->in_w},
                            err)))
            return rc;
    }
    snprintf(path, sizeof path, "%s/predictions.csv", dir);
    if ((rc = cs_atomic_open(&a, path, 0666, err)) == CS_OK) {
        fputs("image,label,predicted\n", a.f);
        for (int i = 0; i < r->n_test; i++) {
            const float *row = r->logits + (size_t)i * (size_t)k;
            int best = 0;
            for (int c = 1; c < k; c++)
                if (row[c] > row[best])
                    best = c;
            fprintf(a.f, "%d,%d,%d\n", i, r->labels[i], best);
        }
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"state", required_argument, 0, O_STATE}, {"dump", required_argument, 0, O_DUMP},
        {"inputs", no_argument, 0, O_INPUTS},
        {"plugins", required_argument, 0, O_PLUGINS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    eval_opts o = {.state = -1};
    int rc = cli_getopt("eval", argc, argv, longopts, usage, NULL, take_option, &o, 1);
    if (rc != CLI_CONTINUE)
        return rc;
    if (optind >= argc) {
        fprintf(stderr, "cilscale eval: no run folder given (see cilscale eval --help)\n");
        return CLI_USAGE;
    }
    const char *dir = argv[optind];
    if (o.inputs && !o.dump) {
        fprintf(stderr, "cilscale eval: --inputs says what --dump DIR writes; give --dump DIR too\n");
        return CLI_USAGE;
    }
    static cs_experiment e;
    cs_experiment_defaults(&e);
    cs_error err;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/run.cfg", dir);
    if (cs_experiment_load(path, &e, &err)) {
        fprintf(stderr, "cilscale eval: %s\n", err.msg);
        return err.status == CS_ERR_IO ? CLI_FAIL : CLI_USAGE;
    }
    snprintf(e.out, sizeof e.out, "%s", dir);
    cs_registry *reg = cli_load_plugins("eval", o.plugins, 1);
    if (!reg)
        return CLI_FAIL;
    cs_eval_result r;
    rc = cs_experiment_eval(&e, reg, o.state, o.dump ? CS_EVAL_LOGITS | (o.inputs ? CS_EVAL_INPUTS : 0) : 0, &r, &err);
    cs_registry_free(reg);
    if (rc) {
        fprintf(stderr, "cilscale eval: %s\n", err.msg);
        return rc == CS_ERR_ARG ? CLI_USAGE : CLI_FAIL;
    }
    printf("%s, state %d (%d classes seen, %d test images): top-1 %.2f%%, top-5 ", dir, r.state, r.n_seen, r.n_test,
           100 * r.top1);
    if (isnan(r.top5))
        printf("n/a\n");
    else
        printf("%.2f%%\n", 100 * r.top5);
    printf("  label  class  images   top-1\n");
    for (int i = 0; i < r.n_seen; i++)
        printf("  %5d  %5d  %6lld  %5.2f%%\n", i, r.class_order[i], (long long)r.count[i],
               r.count[i] ? 100.0 * (double)r.hits[i] / (double)r.count[i] : NAN);
    if (o.dump && dump(o.dump, &r, &err)) {
        fprintf(stderr, "cilscale eval: %s\n", err.msg);
        rc = CLI_FAIL;
    } else if (o.dump) {
        printf("  per_class.csv, confusion.csv, logits.npy, labels.npy, predictions.csv%s in %s\n",
               o.inputs ? ", inputs.npy" : "", o.dump);
    }
    cs_eval_result_free(&r);
    return rc ? CLI_FAIL : CLI_OK;
}
