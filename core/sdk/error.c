/* error.c: filling cs_error (error.h). */
#include <stdarg.h>
#include <stdio.h>

#include "cilscale/error.h"

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
