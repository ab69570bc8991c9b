/* stub.c: the `vulkan` backend as built where glslangValidator or the Vulkan headers were missing:
 * it loads, scores 0, and says so when asked to open a device. */
#include "cilscale/backend.h"
#include "cilscale/plugin.h"

static const char why[] = "vulkan backend: this build has no Vulkan support (glslangValidator or the Vulkan headers "
                          "were missing when meson configured it): install glslang-tools and libvulkan-dev "
                          "(tools/deps.sh) and reconfigure";

static int stub_open(const char *device, void **ctx, cs_error *err)
{
    (void)device;
    *ctx = NULL;
    return cs_error_set(err, CS_ERR, "%s", why);
}
static void stub_close(void *ctx) { (void)ctx; }
static void stub_describe(void *ctx, char *buf, size_t size)
{
    (void)ctx;
    if (size)
        buf[0] = '\0';
}
static int stub_prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err)
{
    (void)ctx;
    (void)g;
    *plan = NULL;
    return cs_error_set(err, CS_ERR, "%s", why);
}
static void stub_release(void *plan) { (void)plan; }
static int stub_copy(void *plan, cs_arena a, int64_t offset, int64_t count, float *buf, cs_error *err)
{
    (void)plan, (void)a, (void)offset, (void)count, (void)buf;
    return cs_error_set(err, CS_ERR, "%s", why);
}
static int stub_write(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err)
{
    return stub_copy(plan, a, offset, count, (float *)src, err);
}
static int stub_tensor(void *plan, int tensor, float *buf, int n, cs_error *err)
{
    (void)plan, (void)tensor, (void)buf, (void)n;
    return cs_error_set(err, CS_ERR, "%s", why);
}
static int stub_set_input(void *plan, int tensor, const float *src, int n, cs_error *err)
{
    return stub_tensor(plan, tensor, (float *)src, n, err);
}
static int stub_forward(void *plan, int n, int flags, cs_error *err)
{
    (void)plan, (void)n, (void)flags;
    return cs_error_set(err, CS_ERR, "%s", why);
}
static int stub_backward(void *plan, int n, cs_error *err) { return stub_forward(plan, n, 0, err); }
static int stub_update(void *plan, const cs_sgd *opt, cs_error *err)
{
    (void)opt;
    return stub_forward(plan, 0, 0, err);
}

static const cs_backend_iface iface = {
    .open = stub_open,
    .close = stub_close,
    .describe = stub_describe,
    .prepare = stub_prepare,
    .release = stub_release,
    .write = stub_write,
    .read = stub_copy,
    .set_input = stub_set_input,
    .read_tensor = stub_tensor,
    .forward = stub_forward,
    .backward = stub_backward,
    .update = stub_update,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "vulkan",
    .version = "1.0.0",
    .description = "(built without Vulkan support: glslangValidator or the Vulkan headers were missing)",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
CS_PLUGIN_EXPORT int cs_plugin_score(void) { return 0; }
