/* device.c: the `vulkan` backend plugin: choosing and opening a device, describing it, its pipelines, its score. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/plugin.h"
#include "vk.h"

int vk_fail(cs_error *err, VkResult r, const char *what)
{
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: %s: device memory exhausted (%s)", what,
                            vk_result_name(r));
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: %s: out of host memory (%s)", what,
                            vk_result_name(r));
    return cs_error_set(err, CS_ERR, "vulkan backend: %s failed: %s", what, vk_result_name(r));
}

/* ---- choosing a device ---- */

#define MAX_DEVICES 16

typedef struct candidate {
    VkPhysicalDevice pd;
    VkPhysicalDeviceProperties props;
    uint32_t queue_family, timestamp_bits;
    const char *unusable; /* why it cannot run the backend, or NULL */
} candidate;

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU device";
    default: return "other device";
    }
}

/* The default's order of preference: discrete, integrated, virtual, CPU, other. */
static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static void inspect(candidate *c)
{
    vkf.vkGetPhysicalDeviceProperties(c->pd, &c->props);
    c->unusable = NULL;
    if (c->props.apiVersion < VK_API_VERSION_1_2) {
        c->unusable = "Vulkan 1.2 needed";
        return;
    }
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12};
    vkf.vkGetPhysicalDeviceFeatures2(c->pd, &f2);
    if (!f12.bufferDeviceAddress) {
        c->unusable = "no bufferDeviceAddress feature";
        return;
    }
    if (c->props.limits.maxPushConstantsSize < VK_PUSH_BYTES || c->props.limits.maxComputeWorkGroupInvocations < 64 ||
        c->props.limits.maxComputeWorkGroupSize[0] < 64 || c->props.limits.maxComputeWorkGroupCount[0] < 65535) {
        c->unusable = "compute limits below the backend's needs";
        return;
    }
    uint32_t nq = 0;
    vkf.vkGetPhysicalDeviceQueueFamilyProperties(c->pd, &nq, NULL);
    VkQueueFamilyProperties q[32];
    if (nq > 32)
        nq = 32;
    vkf.vkGetPhysicalDeviceQueueFamilyProperties(c->pd, &nq, q);
    /* a compute queue, preferring one with timestamps (profiling) */
    int best = -1;
    for (uint32_t i = 0; i < nq; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && q[i].queueCount > 0 &&
            (best < 0 || (q[i].timestampValidBits && !q[best].timestampValidBits)))
            best = (int)i;
    if (best < 0) {
        c->unusable = "no compute queue";
        return;
    }
    c->queue_family = (uint32_t)best;
    c->timestamp_bits = q[best].timestampValidBits;
}

/* Every device the instance sees (at most MAX_DEVICES), inspected. */
static int list_devices(VkInstance inst, candidate *c, uint32_t *n, cs_error *err)
{
    uint32_t count = 0;
    VkResult r = vkf.vkEnumeratePhysicalDevices(inst, &count, NULL);
    if (r != VK_SUCCESS)
        return vk_fail(err, r, "vkEnumeratePhysicalDevices");
    VkPhysicalDevice pd[MAX_DEVICES];
    if (count > MAX_DEVICES)
        count = MAX_DEVICES;
    r = vkf.vkEnumeratePhysicalDevices(inst, &count, pd);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return vk_fail(err, r, "vkEnumeratePhysicalDevices");
    for (uint32_t i = 0; i < count; i++) {
        c[i].pd = pd[i];
        inspect(&c[i]);
    }
    *n = count;
    return CS_OK;
}

/* "0 'llvmpipe (LLVM 15.0.6, 256 bits)' (CPU device); 1 ..." */
static void device_list(const candidate *c, uint32_t n, char *buf, size_t size)
{
    size_t u = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && u < size; i++)
        u += (size_t)snprintf(buf + u, size - u, "%s%u '%s' (%s%s%s)", i ? "; " : "", i, c[i].props.deviceName,
                              type_name(c[i].props.deviceType), c[i].unusable ? ": " : "",
                              c[i].unusable ? c[i].unusable : "");
}

static int ci_contains(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        size_t k = 0;
        while (needle[k] && hay[k] && tolower((unsigned char)hay[k]) == tolower((unsigned char)needle[k]))
            k++;
        if (!needle[k])
            return 1;
    }
    return 0;
}

/* device: "" (the best usable: discrete, integrated, virtual, CPU), an index, or a name substring. */
static int choose(const char *device, candidate *c, uint32_t n, int *chosen, cs_error *err)
{
    char list[700];
    device_list(c, n, list, sizeof list);
    if (n == 0)
        return cs_error_set(err, CS_ERR,
                            "vulkan backend: no Vulkan device (install a driver: mesa-vulkan-drivers has lavapipe, "
                            "a CPU device)");
    *chosen = -1;
    if (!device || !*device) {
        for (uint32_t i = 0; i < n; i++)
            if (!c[i].unusable &&
                (*chosen < 0 || type_rank(c[i].props.deviceType) < type_rank(c[*chosen].props.deviceType)))
                *chosen = (int)i;
        if (*chosen < 0)
            return cs_error_set(err, CS_ERR, "vulkan backend: no device can run the backend (%s)", list);
        return CS_OK;
    }
    int digits = 1;
    for (const char *s = device; *s; s++)
        digits &= isdigit((unsigned char)*s) != 0;
    if (digits) {
        long i = strtol(device, NULL, 10);
        if (i < 0 || i >= (long)n || strlen(device) > 6)
            return cs_error_set(err, CS_ERR_ARG, "vulkan backend: device '%s': no such index (devices: %s)", device,
                                list);
        *chosen = (int)i;
    } else {
        for (uint32_t i = 0; i < n && *chosen < 0; i++)
            if (ci_contains(c[i].props.deviceName, device))
                *chosen = (int)i;
        if (*chosen < 0)
            return cs_error_set(err, CS_ERR_ARG,
                                "vulkan backend: device '%s': no device name contains it (expected \"\", an index "
                                "or part of a name; devices: %s)",
                                device, list);
    }
    if (c[*chosen].unusable)
        return cs_error_set(err, CS_ERR, "vulkan backend: device %d '%s' cannot run the backend: %s", *chosen,
                            c[*chosen].props.deviceName, c[*chosen].unusable);
    return CS_OK;
}

/* ---- opening ---- */

static void vk_close(void *ctx)
{
    vk_device *d = ctx;
    if (!d)
        return;
    if (d->dev) {
        vkf.vkDeviceWaitIdle(d->dev);
        for (int s = 0; s < VK_SH_COUNT_; s++)
            if (d->pipe[s])
                vkf.vkDestroyPipeline(d->dev, d->pipe[s], NULL);
        if (d->cache)
            vkf.vkDestroyPipelineCache(d->dev, d->cache, NULL);
        if (d->layout)
            vkf.vkDestroyPipelineLayout(d->dev, d->layout, NULL);
        vkf.vkDestroyDevice(d->dev, NULL);
    }
    free(d);
}

static int vk_open(const char *device, void **ctx, cs_error *err)
{
    *ctx = NULL;
    VkInstance inst;
    int rc = vk_instance(&inst, err);
    if (rc)
        return rc;
    candidate c[MAX_DEVICES];
    uint32_t n = 0;
    int k = -1;
    if ((rc = list_devices(inst, c, &n, err)) || (rc = choose(device, c, n, &k, err)))
        return rc;
    vk_device *d = calloc(1, sizeof *d);
    if (!d)
        return cs_error_set(err, CS_ERR_NOMEM, "vulkan backend: out of memory opening the device");
    d->pd = c[k].pd;
    d->props = c[k].props;
    d->index = k;
    d->queue_family = c[k].queue_family;
    d->timestamp_bits = c[k].timestamp_bits;
    vkf.vkGetPhysicalDeviceMemoryProperties(d->pd, &d->mem);
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    vkf.vkGetPhysicalDeviceProperties2(d->pd, &p2);
    d->max_alloc = m3.maxMemoryAllocationSize;
    uint32_t wg = 256, lim = d->props.limits.maxComputeWorkGroupInvocations;
    if (d->props.limits.maxComputeWorkGroupSize[0] < lim)
        lim = d->props.limits.maxComputeWorkGroupSize[0];
    while (wg > lim)
        wg /= 2;
    d->wg = wg;

    const float prio = 1.0f;
    const VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                         .queueFamilyIndex = d->queue_family, .queueCount = 1,
                                         .pQueuePriorities = &prio};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .bufferDeviceAddress = VK_TRUE};
    const VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f12,
                                    .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci};
    VkResult r = vkf.vkCreateDevice(d->pd, &dci, NULL, &d->dev);
    if (r != VK_SUCCESS) {
        d->dev = VK_NULL_HANDLE;
        vk_close(d);
        char what[320];
        snprintf(what, sizeof what, "vkCreateDevice on '%s'", c[k].props.deviceName);
        return vk_fail(err, r, what);
    }
    vkf.vkGetDeviceQueue(d->dev, d->queue_family, 0, &d->queue);
    const VkPushConstantRange push = {VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES};
    const VkPipelineLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                            .pushConstantRangeCount = 1, .pPushConstantRanges = &push};
    const VkPipelineCacheCreateInfo cci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    if ((r = vkf.vkCreatePipelineLayout(d->dev, &lci, NULL, &d->layout)) != VK_SUCCESS ||
        (r = vkf.vkCreatePipelineCache(d->dev, &cci, NULL, &d->cache)) != VK_SUCCESS) {
        vk_close(d);
        return vk_fail(err, r, "creating the pipeline layout");
    }
    *ctx = d;
    return CS_OK;
}

VkPipeline vk_pipeline(vk_device *d, vk_shader s, cs_error *err)
{
    if (d->pipe[s])
        return d->pipe[s];
    const vk_spirv *sp = &vk_spirv_table[s];
    const VkShaderModuleCreateInfo mci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = sp->size,
                                          .pCode = sp->code};
    VkShaderModule mod;
    VkResult r = vkf.vkCreateShaderModule(d->dev, &mci, NULL, &mod);
    if (r != VK_SUCCESS) {
        vk_fail(err, r, "vkCreateShaderModule");
        return VK_NULL_HANDLE;
    }
    const VkSpecializationMapEntry entry = {0, 0, sizeof(uint32_t)};
    const VkSpecializationInfo spec = {1, &entry, sizeof d->wg, &d->wg};
    const VkComputePipelineCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod, .pName = "main", .pSpecializationInfo = &spec},
        .layout = d->layout,
    };
    r = vkf.vkCreateComputePipelines(d->dev, d->cache, 1, &pci, NULL, &d->pipe[s]);
    vkf.vkDestroyShaderModule(d->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        d->pipe[s] = VK_NULL_HANDLE;
        char what[128];
        snprintf(what, sizeof what, "creating the pipeline of shader %s", sp->name);
        vk_fail(err, r, what);
    }
    return d->pipe[s];
}

/* ---- describing ---- */

static void version_str(uint32_t vendor, uint32_t v, char *buf, size_t size)
{
    if (vendor == 0x10DE) /* NVIDIA: 10.8.8.6 bits */
        snprintf(buf, size, "%u.%u.%u", v >> 22, (v >> 14) & 0xff, (v >> 6) & 0xff);
    else
        snprintf(buf, size, "%u.%u.%u", VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v));
}

static void vk_describe(void *ctx, char *buf, size_t size)
{
    const vk_device *d = ctx;
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
                                                 .pNext = &drv};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    vkf.vkGetPhysicalDeviceProperties2(d->pd, &p2);
    char dv[32];
    version_str(d->props.vendorID, d->props.driverVersion, dv, sizeof dv);
    double local = 0;
    for (uint32_t h = 0; h < d->mem.memoryHeapCount; h++)
        if (d->mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            local += (double)d->mem.memoryHeaps[h].size;
    snprintf(buf, size,
             "vulkan: %s (%s, device %d), driver %s %s, Vulkan %u.%u.%u, %.0f MiB device-local, max allocation "
             "%.0f MiB, workgroup %u, timestamps %s",
             d->props.deviceName, type_name(d->props.deviceType), d->index,
             drv.driverName[0] ? drv.driverName : "version", drv.driverInfo[0] ? drv.driverInfo : dv,
             VK_API_VERSION_MAJOR(d->props.apiVersion), VK_API_VERSION_MINOR(d->props.apiVersion),
             VK_API_VERSION_PATCH(d->props.apiVersion), local / 1048576.0,
             (double)m3.maxMemoryAllocationSize / 1048576.0, d->wg, d->timestamp_bits ? "yes" : "no (no profiling)");
}

/* ---- the plugin ---- */

static const cs_backend_iface iface = {
    .open = vk_open,
    .close = vk_close,
    .describe = vk_describe,
    .prepare = vk_prepare,
    .release = vk_release,
    .write = vk_write,
    .read = vk_read,
    .set_input = vk_set_input,
    .read_tensor = vk_read_tensor,
    .forward = vk_forward,
    .backward = vk_backward,
    .update = vk_update,
    .step = vk_step,
    .profile = vk_profile,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "vulkan",
    .version = "1.0.0",
    .description = "every op forward and backward in GLSL compute shaders; one recorded command buffer per step",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }

/* 0: no usable device (or no loader, no driver); else by the best device's
 * kind: a discrete GPU 100, integrated 50, virtual 20, the CPU (lavapipe) 1. */
CS_PLUGIN_EXPORT int cs_plugin_score(void)
{
    VkInstance inst;
    candidate c[MAX_DEVICES];
    uint32_t n = 0;
    if (vk_instance(&inst, NULL) || list_devices(inst, c, &n, NULL))
        return 0;
    static const int by_rank[] = {100, 50, 20, 1, 1};
    int best = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!c[i].unusable && by_rank[type_rank(c[i].props.deviceType)] > best)
            best = by_rank[type_rank(c[i].props.deviceType)];
    return best;
}
