/* atomic.c: the one way cilscale writes a file: to PATH.tmp, created
 * exclusively without following links, flushed and fsynced, renamed over
 * PATH, the folder fsynced; on failure the temporary file is removed. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/atomic.h"

/* fsync of the folder holding path, so a rename into it is durable; best effort. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Exclusive creation, never through a link; a leftover at tmp (a file from a
 * crash, or a link: unlink removes the link, not what it points at) goes once. */
static int create_tmp(const char *tmp, mode_t mode)
{
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = open(tmp, flags, mode);
    if (fd < 0 && errno == EEXIST) {
        if (unlink(tmp) != 0 && errno != ENOENT)
            return -1; /* errno says why (a folder there: EISDIR) */
        fd = open(tmp, flags, mode);
    }
    return fd;
}

int cs_atomic_open(cs_atomic *a, const char *path, mode_t mode, cs_error *err)
{
    memset(a, 0, sizeof *a);
    if (!path || !*path)
        return cs_error_set(err, CS_ERR_ARG, "no file name given");
    size_t n = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(n + sizeof ".tmp");
    if (!a->path || !a->tmp)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory", path);
    memcpy(a->tmp, path, n);
    memcpy(a->tmp + n, ".tmp", sizeof ".tmp");
    int fd = create_tmp(a->tmp, mode);
    if (fd < 0)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot create %s (%s)", path, a->tmp, strerror(errno));
    a->have_tmp = 1;
    a->f = fdopen(fd, "w");
    if (!a->f) {
        int e = errno;
        close(fd);
        return cs_error_set(err, CS_ERR_IO, "%s: cannot create %s (%s)", path, a->tmp, strerror(e));
    }
    return CS_OK;
}

int cs_atomic_put(cs_atomic *a, const void *p, size_t n)
{
    if (a->errnum)
        return -1; /* the first error stands; the rest would only repeat it */
    if (n && fwrite(p, 1, n, a->f) != n) {
        if (!a->errnum)
            a->errnum = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

int cs_atomic_close(cs_atomic *a, cs_error *err)
{
    if (!a->f)
        return CS_OK;
    const char *what = "write";
    int errnum = ferror(a->f) ? (a->errnum ? a->errnum : EIO) : 0;
    if (!errnum && fflush(a->f) != 0)
        errnum = errno;
    /* some files cannot be synced (EINVAL) and a read-only mount need not be (EROFS) */
    if (!errnum && fsync(fileno(a->f)) != 0 && errno != EINVAL && errno != EROFS)
        errnum = errno, what = "sync";
    if (fclose(a->f) != 0 && !errnum)
        errnum = errno;
    a->f = NULL;
    if (errnum)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot %s %s (%s)", a->path, what, a->tmp, strerror(errnum));
    return CS_OK;
}

int cs_atomic_commit(cs_atomic *a, cs_error *err)
{
    int rc = cs_atomic_close(a, err);
    if (rc)
        return rc;
    if (!a->have_tmp)
        return cs_error_set(err, CS_ERR_IO, "%s: nothing to rename over it", a->path ? a->path : "?");
    if (rename(a->tmp, a->path) != 0)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot rename %s over it (%s)", a->path, a->tmp, strerror(errno));
    a->have_tmp = 0;
    sync_dir(a->path);
    return CS_OK;
}

void cs_atomic_release(cs_atomic *a)
{
    if (a->f)
        fclose(a->f);
    a->f = NULL;
    if (a->have_tmp)
        unlink(a->tmp);
    a->have_tmp = 0;
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
}

int cs_atomic_write(const char *path, const void *data, size_t n, mode_t mode, cs_error *err)
{
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, mode, err);
    if (rc == CS_OK) {
        cs_atomic_put(&a, data, n);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}
