/* vk_api.h: the Vulkan entry points the backend calls, loaded at run time from the loader library. */
#ifndef CILSCALE_VK_API_H
#define CILSCALE_VK_API_H

/* The plugin does not link libvulkan: it dlopen()s the loader, so that a
 * machine without one still loads the plugin, which then scores 0 and says
 * why in one line instead of failing to load. */
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "cilscale/error.h"

/* Instance-level entry points (resolved with vkGetInstanceProcAddr on the
 * process's instance; device-level ones dispatch through the loader's
 * trampolines, which is fine for a backend that submits a few times a step). */
#define VK_INSTANCE_FUNCS(X) \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties) \
    X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) \
    X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkGetPhysicalDeviceMemoryProperties) X(vkCreateDevice) \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) \
    X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) \
    X(vkUnmapMemory) X(vkGetBufferDeviceAddress) X(vkCreateShaderModule) X(vkDestroyShaderModule) \
    X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreatePipelineCache) X(vkDestroyPipelineCache) \
    X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateCommandPool) X(vkDestroyCommandPool) \
    X(vkAllocateCommandBuffers) X(vkFreeCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer) \
    X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdPushConstants) X(vkCmdDispatch) \
    X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) X(vkCmdWriteTimestamp) X(vkCmdResetQueryPool) \
    X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkGetQueryPoolResults) X(vkCreateFence) X(vkDestroyFence) \
    X(vkWaitForFences) X(vkResetFences) X(vkQueueSubmit) X(vkDeviceWaitIdle)

typedef struct vk_api {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define VK_API_MEMBER_(name) PFN_##name name;
    VK_INSTANCE_FUNCS(VK_API_MEMBER_)
#undef VK_API_MEMBER_
} vk_api;

/* Filled by vk_instance(); read-only afterwards. */
extern vk_api vkf;

/* The process's Vulkan instance (API 1.2), created on first use and kept
 * until the process ends: Mesa's drivers leak a little at vkDestroyInstance
 * and are unloaded by it, and a backend plugin stays loaded anyway
 * (RTLD_NODELETE). Fails, with one line saying why (no loader, no driver, a
 * loader older than 1.2), the same way every time. */
int vk_instance(VkInstance *inst, cs_error *err);

/* "VK_ERROR_OUT_OF_DEVICE_MEMORY" */
const char *vk_result_name(VkResult r);

#endif
