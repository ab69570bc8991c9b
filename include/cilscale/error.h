/* error.h: how cilscale functions report a failure the user will read. */
#ifndef CILSCALE_ERROR_H
#define CILSCALE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Functions that can fail return 0 on success and a negative cs_status on
 * failure, and fill a cs_error with one line: what failed, which file, key or
 * value, and what was expected. */
typedef enum cs_status {
    CS_OK = 0,
    CS_ERR = -1,        /* generic failure; the message says what */
    CS_ERR_ARG = -2,    /* a bad argument or value from the user */
    CS_ERR_BUDGET = -3, /* the budget is below the smallest network a policy can make */
    CS_ERR_IO = -4,     /* a file could not be read or written */
    CS_ERR_NOMEM = -5,
} cs_status;

typedef struct cs_error {
    int status;
    char msg[8192]; /* one line; control characters shown as \xNN; "[...]" when cut */
} cs_error;

/* Sets err (when not NULL) and returns status, so a failure reads
 *   return cs_error_set(err, CS_ERR_ARG, "budget '%s': expected ...", s); */
int cs_error_set(cs_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cs_error_clear(cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
