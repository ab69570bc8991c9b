/* backend_score0.c: a backend plugin whose cs_plugin_score returns 0 (cannot run here): every entry refuses. */
#include <stdio.h>
#include <stdlib.h>

#include <cilscale/backend.h>
#include <cilscale/plugin.h>

static int open_dev(const char *device, void **ctx, cs_error *err)
{
    (void)device;
    *ctx = NULL;
    return cs_error_set(err, CS_ERR, "score0: no device here");
}
static void close_dev(void *ctx) { (void)ctx; }
static void describe(void *ctx, char *buf, size_t size)
{
    (void)ctx;
    if (size)
        buf[0] = '\0';
}
static int prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err)
{
    (void)ctx, (void)g, (void)plan;
    return cs_error_set(err, CS_ERR, "score0: no device here");
}
static void release(void *plan) { (void)plan; }
static int copy(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err)
{
    (void)plan, (void)a, (void)offset, (void)count, (void)src;
    return cs_error_set(err, CS_ERR, "score0: no device here");
}
static int copy_out(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err)
{
    (void)dst;
    return copy(plan, a, offset, count, NULL, err);
}
static int tensor_in(void *plan, int t, const float *src, int n, cs_error *err)
{
    (void)plan, (void)t, (void)src, (void)n;
    return cs_error_set(err, CS_ERR, "score0: no device here");
}
static int tensor_out(void *plan, int t, float *dst, int n, cs_error *err)
{
    (void)dst;
    return tensor_in(plan, t, NULL, n, err);
}
static int forward(void *plan, int n, int flags, cs_error *err)
{
    (void)flags;
    return tensor_in(plan, 0, NULL, n, err);
}
static int backward(void *plan, int n, cs_error *err) { return tensor_in(plan, 0, NULL, n, err); }
static int update(void *plan, const cs_sgd *opt, cs_error *err)
{
    (void)opt;
    return tensor_in(plan, 0, NULL, 0, err);
}

static const cs_backend_iface iface = {
    .open = open_dev, .close = close_dev, .describe = describe, .prepare = prepare, .release = release,
    .write = copy, .read = copy_out, .set_input = tensor_in, .read_tensor = tensor_out,
    .forward = forward, .backward = backward, .update = update,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "score0",
    .version = "0.1.0",
    .description = "test: a backend that cannot run on this machine",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
/* Leaves a mark where $CILSCALE_TEST_SCORE_MARK says, so that a test can tell
 * whether (and when) the loader asked for the score: only on first use. */
CS_PLUGIN_EXPORT int cs_plugin_score(void)
{
    const char *mark = getenv("CILSCALE_TEST_SCORE_MARK");
    if (mark) {
        FILE *f = fopen(mark, "a");
        if (f) {
            fputs("asked\n", f);
            fclose(f);
        }
    }
    return 0;
}
