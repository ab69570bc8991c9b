/* plugin.c: the plugin ABI's few functions (plugin.h): the names of the plugin kinds. */
#include <stddef.h>

#include "cilscale/plugin.h"

const char *cs_kind_name(int kind)
{
    switch (kind) {
    case CS_KIND_ARCH: return "arch";
    case CS_KIND_POLICY: return "policy";
    case CS_KIND_CIL: return "cil";
    case CS_KIND_BACKEND: return "backend";
    default: return NULL;
    }
}
