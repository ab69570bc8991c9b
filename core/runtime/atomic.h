/* atomic.h: writing a file so that it always holds either its old contents or
 * the complete new ones: every file cilscale writes (checkpoints, results,
 * run.cfg, reports) goes through here.
 *
 * The new contents go to PATH.tmp in the target's folder, created exclusively
 * and never through a link (O_CREAT | O_EXCL | O_NOFOLLOW): a file or link
 * already there (a crash's leftover, or planted) is removed first, never
 * written through. The temporary file is flushed and fsynced, renamed over
 * PATH, and the folder fsynced so the rename lasts. On any failure the
 * temporary file is removed and PATH is left as it was; the error is one line
 * naming PATH, the temporary file and the cause. Two writers of one PATH at
 * once are not supported (they share PATH.tmp; one of them fails). */
#ifndef CILSCALE_RUNTIME_ATOMIC_H
#define CILSCALE_RUNTIME_ATOMIC_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "cilscale/error.h"

typedef struct cs_atomic {
    char *path;   /* the target */
    char *tmp;    /* path ".tmp", in the same folder */
    FILE *f;      /* the temporary file, open from cs_atomic_open to cs_atomic_close */
    int errnum;   /* the first write error cs_atomic_put met, else 0 */
    int have_tmp; /* tmp is on disk and ours to remove */
} cs_atomic;

/* Creates path.tmp with mode (less the umask) and opens a->f on it for
 * writing; write with cs_atomic_put or any stdio call on a->f. On failure
 * nothing is left on disk, and cs_atomic_release is still safe to call. */
int cs_atomic_open(cs_atomic *a, const char *path, mode_t mode, cs_error *err);

/* Writes n bytes to a->f, keeping the first error's errno for the message
 * cs_atomic_close gives; 0 or -1. */
int cs_atomic_put(cs_atomic *a, const void *p, size_t n);

/* Flushes, fsyncs and closes the temporary file (it stays under tmp, not yet
 * renamed): CS_ERR_IO when anything written to a->f failed. */
int cs_atomic_close(cs_atomic *a, cs_error *err);

/* Closes the temporary file if still open, renames it over path and fsyncs
 * the folder. */
int cs_atomic_commit(cs_atomic *a, cs_error *err);

/* Removes the temporary file unless it was committed, and frees a's memory:
 * call once after cs_atomic_open, whether or not anything failed. */
void cs_atomic_release(cs_atomic *a);

/* The whole of it for contents already in memory: path gets data[0..n). */
int cs_atomic_write(const char *path, const void *data, size_t n, mode_t mode, cs_error *err);

#endif
