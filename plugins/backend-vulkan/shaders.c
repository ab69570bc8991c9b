/* shaders.c: the SPIR-V of every shader variant, embedded at build time (no shader files at run time). */
#include <stdint.h>

#include "spv_all.h" /* meson: one spv_<variant>.h per line of shaders.list, from glslangValidator --vn */
#include "vk.h"

const vk_spirv vk_spirv_table[VK_SH_COUNT_] = {
#define VK_SPIRV_ENTRY_(name) [VK_SH_##name] = {#name, spv_##name, sizeof spv_##name},
    VK_SHADERS(VK_SPIRV_ENTRY_)
#undef VK_SPIRV_ENTRY_
};
