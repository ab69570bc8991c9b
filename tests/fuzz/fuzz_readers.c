/* fuzz_readers.c: one libFuzzer target per reader of untrusted bytes, picked
 * at build time by FUZZ_TARGET (meson builds each): idx, cifar, image, list,
 * safetensors, experiment, plugins_conf, results. Every input must end in
 * CS_OK or one error line; a crash, a leak or a sanitizer report is a finding. */
#include <stdlib.h>
#include <string.h>

#include "cilscale/graph.h"
#include "cilscale/registry.h"
#include "fuzz.h"
#include "runtime/checkpoint.h"
#include "runtime/data.h"
#include "runtime/experiment.h"
#include "runtime/image.h"
#include "runtime/plugins_conf.h"
#include "runtime/results.h"

#define IDX 1
#define CIFAR 2
#define IMAGE 3
#define LIST 4
#define SAFETENSORS 5
#define EXPERIMENT 6
#define PLUGINS_CONF 7
#define RESULTS 8

/* A 1x1 RGB PNG, for list entries to point at. */
__attribute__((unused)) static const uint8_t png1[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49,
    0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

__attribute__((unused)) static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

__attribute__((unused)) static void load(cs_data_format fmt, int train)
{
    cs_dataset *d = NULL;
    cs_error err;
    if (cs_dataset_load(fmt, fuzz_dir(), train, 8, 0, &d, &err) == CS_OK)
        cs_dataset_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_error err;
    (void)err;
#if FUZZ_TARGET == IDX
    /* byte 0 even: the input is the images file (3 valid labels beside it); odd: the labels file */
    uint8_t img[16 + 3 * 6] = {0}, lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3};
    be32(img, 0x803), be32(img + 4, 3), be32(img + 8, 2), be32(img + 12, 3);
    int labels = size && (data[0] & 1);
    const uint8_t *in = size ? data + 1 : data;
    size_t n = size ? size - 1 : 0;
    fuzz_write("train-images-idx3-ubyte", labels ? img : in, labels ? sizeof img : n);
    fuzz_write("train-labels-idx1-ubyte", labels ? in : lab, labels ? n : sizeof lab);
    load(CS_DATA_IDX, 1);
#elif FUZZ_TARGET == CIFAR
    /* byte 0 even: CIFAR-10's data_batch_1.bin (batches 2-5 one valid record each); odd: CIFAR-100's train.bin */
    static uint8_t rec[3074];
    const uint8_t *in = size ? data + 1 : data;
    size_t n = size ? size - 1 : 0;
    if (size && (data[0] & 1)) {
        fuzz_write("train.bin", in, n);
        load(CS_DATA_CIFAR100, 1);
    } else {
        fuzz_write("data_batch_1.bin", in, n);
        for (int b = 2; b <= 5; b++) {
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", b);
            fuzz_write(name, rec, 3073);
        }
        load(CS_DATA_CIFAR10, 1);
    }
#elif FUZZ_TARGET == IMAGE
    uint8_t *rgb = NULL;
    int w, h;
    if (cs_image_decode("input", data, size, &rgb, &w, &h, &err) == CS_OK)
        free(rgb);
#elif FUZZ_TARGET == LIST
    fuzz_write("a.png", png1, sizeof png1);
    fuzz_write("train.lst", data, size);
    fuzz_write("test.lst", (const uint8_t *)"a.png 0\n", 8);
    load(CS_DATA_LIST, 1);
#elif FUZZ_TARGET == SAFETENSORS
    cs_graph *g = cs_graph_new(1);
    int x = cs_input_vec(g, "x", 3);
    cs_linear(g, "fc", x, 2, 1, CS_INIT_UNIFORM_FAN_IN);
    float p[8], b[1];
    static cs_checkpoint_info info;
    const char *path = fuzz_write("model.safetensors", data, size);
    cs_checkpoint_load(path, g, p, b, &info, &err);
    cs_checkpoint_load_ex(path, g, p, b, CS_CKPT_ALLOW_MISSING | CS_CKPT_GROW_ROWS, &info, &err);
    cs_graph_free(g);
#elif FUZZ_TARGET == EXPERIMENT
    static cs_experiment e;
    cs_experiment_defaults(&e);
    if (cs_experiment_load(fuzz_write("run.cfg", data, size), &e, &err) == CS_OK) {
        char settings[4096], id[17];
        cs_experiment_settings(&e, settings, sizeof settings);
        cs_experiment_identity(&e, id);
    }
#elif FUZZ_TARGET == PLUGINS_CONF
    /* entries resolve in the scratch folder, which holds no plugin */
    cs_registry *r = cs_registry_new();
    cs_registry_load_conf(r, fuzz_write("plugins.conf", data, size), &err);
    cs_registry_free(r);
#elif FUZZ_TARGET == RESULTS
    static cs_run_result res;
    fuzz_write("results.csv", data, size);
    if (cs_results_read(fuzz_dir(), &res, &err) == CS_OK) {
        cs_run_summary s;
        cs_run_summarize(&res, &s);
    }
#else
#error "FUZZ_TARGET: one of IDX, CIFAR, IMAGE, LIST, SAFETENSORS, EXPERIMENT, PLUGINS_CONF, RESULTS"
#endif
    return 0;
}
