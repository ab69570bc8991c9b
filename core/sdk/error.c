/* error.c: filling cs_error (error.h). */
#include <stdarg.h>
#include <stdio.h>

#include "cilscale/error.h"

/* A message is one line of text: control characters in it came from
 * untrusted bytes (a file name, a tensor name, a value) and are shown as \xNN,
 * never passed to the terminal; a message too long for the buffer ends in
 * "[...]" so that the cut is seen. */
int cs_error_set(cs_error *err, int status, const char *fmt, ...)
{
    if (err) {
        static __thread char raw[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        const size_t cap = sizeof err->msg - 6; /* room for "[...]" */
        size_t o = 0;
        int cut = n < 0 || (size_t)n >= sizeof raw;
        for (const char *p = raw; *p; p++) {
            unsigned char c = (unsigned char)*p;
            int ctl = c < 0x20 || c == 0x7f;
            if (o + (ctl ? 4 : 1) > cap) {
                cut = 1;
                break;
            }
            if (ctl)
                o += (size_t)snprintf(err->msg + o, sizeof err->msg - o, "\\x%02x", c);
            else
                err->msg[o++] = (char)c;
        }
        if (cut)
            o += (size_t)snprintf(err->msg + o, sizeof err->msg - o, "[...]");
        err->msg[o] = '\0';
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
