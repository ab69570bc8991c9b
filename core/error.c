/* error.c: filling cs_error, and the names of the plugin kinds. */
#include <stdarg.h>
#include <stdio.h>

#include "cilscale/error.h"
#include "cilscale/plugin.h"

int cs_error_set(cs_error *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void cs_error_clear(cs_error *err)
{
    if (err) {
        err->status = CS_OK;
        err->msg[0] = '\0';
    }
}

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
