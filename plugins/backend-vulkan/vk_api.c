/* vk_api.c: loading the Vulkan loader with dlopen, and the one instance the process shares. */
#include <dlfcn.h>

#include <cilscale/registry.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vk_api.h"

vk_api vkf;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static VkInstance instance;
static cs_error instance_err; /* why there is none, when there is none */

static void create_instance(void)
{
    /* $CILSCALE_VULKAN_LOADER names a loader outside the library path (one
     * unpacked by hand, say); otherwise the system's. */
    const char *own = getenv("CILSCALE_VULKAN_LOADER");
    const char *names[] = {own && *own ? own : "libvulkan.so.1", own && *own ? NULL : "libvulkan.so"};
    void *lib = NULL;
    const char *why = NULL;
    if (own && *own && strchr(own, '/') && access(own, F_OK) == 0) { /* a file given by path: complete and ours
                                                                        before dlopen maps it */
        cs_error e2;
        if (cs_elf_check(own, &e2)) {
            cs_error_set(&instance_err, CS_ERR, "vulkan backend: $CILSCALE_VULKAN_LOADER: %s", e2.msg);
            return;
        }
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0] && names[i] && !lib; i++) {
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && i == 0) {
            const char *e = dlerror();
            why = e ? strdup(e) : NULL; /* the first name's reason is the one to report */
        }
    }
    if (!lib) {
        cs_error_set(&instance_err, CS_ERR,
                     "vulkan backend: no Vulkan loader (%s%s); install libvulkan1 and a driver "
                     "(mesa-vulkan-drivers has lavapipe, a CPU device)%s",
                     why ? why : names[0], why ? "" : ": not found",
                     own && *own ? ", or fix $CILSCALE_VULKAN_LOADER" : "");
        free((void *)why);
        return;
    }
    *(void **)&vkf.vkGetInstanceProcAddr = dlsym(lib, "vkGetInstanceProcAddr");
    if (!vkf.vkGetInstanceProcAddr) {
        cs_error_set(&instance_err, CS_ERR, "vulkan backend: the Vulkan loader has no vkGetInstanceProcAddr");
        return;
    }
    PFN_vkEnumerateInstanceVersion version_fn =
        (PFN_vkEnumerateInstanceVersion)vkf.vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    uint32_t version = VK_API_VERSION_1_0;
    if (version_fn && version_fn(&version) != VK_SUCCESS)
        version = VK_API_VERSION_1_0;
    if (version < VK_API_VERSION_1_2) {
        cs_error_set(&instance_err, CS_ERR,
                     "vulkan backend: the Vulkan loader is version %u.%u; the backend needs 1.2 (buffer device "
                     "addresses)",
                     VK_API_VERSION_MAJOR(version), VK_API_VERSION_MINOR(version));
        return;
    }
    PFN_vkCreateInstance create = (PFN_vkCreateInstance)vkf.vkGetInstanceProcAddr(NULL, "vkCreateInstance");
    const VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "cilscale",
        .pEngineName = "cilscale vulkan backend",
        .apiVersion = VK_API_VERSION_1_2,
    };
    const VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    VkResult r = create ? create(&ci, NULL, &instance) : VK_ERROR_INITIALIZATION_FAILED;
    if (r != VK_SUCCESS) {
        instance = VK_NULL_HANDLE;
        cs_error_set(&instance_err, CS_ERR,
                     r == VK_ERROR_INCOMPATIBLE_DRIVER
                         ? "vulkan backend: no Vulkan driver (vkCreateInstance: %s); install one "
                           "(mesa-vulkan-drivers has lavapipe, a CPU device)"
                         : "vulkan backend: vkCreateInstance failed: %s",
                     vk_result_name(r));
        return;
    }
    int missing = 0;
#define VK_API_LOAD_(name) \
    *(void **)&vkf.name = (void *)vkf.vkGetInstanceProcAddr(instance, #name); \
    if (!vkf.name && !missing++) \
        cs_error_set(&instance_err, CS_ERR, "vulkan backend: the Vulkan loader lacks %s", #name);
    VK_INSTANCE_FUNCS(VK_API_LOAD_)
#undef VK_API_LOAD_
    if (missing) {
        if (vkf.vkDestroyInstance)
            vkf.vkDestroyInstance(instance, NULL);
        instance = VK_NULL_HANDLE;
    }
}

int vk_instance(VkInstance *inst, cs_error *err)
{
    pthread_once(&once, create_instance);
    *inst = instance;
    if (instance == VK_NULL_HANDLE) {
        if (err)
            *err = instance_err;
        return instance_err.status ? instance_err.status : CS_ERR;
    }
    return CS_OK;
}

const char *vk_result_name(VkResult r)
{
    switch (r) {
#define N_(x) \
    case x: return #x;
        N_(VK_SUCCESS) N_(VK_NOT_READY) N_(VK_TIMEOUT) N_(VK_INCOMPLETE) N_(VK_ERROR_OUT_OF_HOST_MEMORY)
        N_(VK_ERROR_OUT_OF_DEVICE_MEMORY) N_(VK_ERROR_INITIALIZATION_FAILED) N_(VK_ERROR_DEVICE_LOST)
        N_(VK_ERROR_MEMORY_MAP_FAILED) N_(VK_ERROR_LAYER_NOT_PRESENT) N_(VK_ERROR_EXTENSION_NOT_PRESENT)
        N_(VK_ERROR_FEATURE_NOT_PRESENT) N_(VK_ERROR_INCOMPATIBLE_DRIVER) N_(VK_ERROR_TOO_MANY_OBJECTS)
        N_(VK_ERROR_FORMAT_NOT_SUPPORTED) N_(VK_ERROR_FRAGMENTED_POOL) N_(VK_ERROR_UNKNOWN)
        N_(VK_ERROR_OUT_OF_POOL_MEMORY) N_(VK_ERROR_INVALID_EXTERNAL_HANDLE) N_(VK_ERROR_FRAGMENTATION)
        N_(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
#undef N_
    default: return "an unknown VkResult";
    }
}
