/* testutil.c: shared helpers for the Check suites. */
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cilscale/rng.h"
#include "runtime/plugins_conf.h"
#include "testutil.h"

cs_registry *tu_registry(void)
{
    static cs_registry *r;
    if (!r) {
        const char *conf = getenv("CILSCALE_PLUGINS");
        ck_assert_msg(conf && *conf, "CILSCALE_PLUGINS is not set (run the tests with meson test)");
        r = cs_registry_new();
        cs_error err;
        ck_assert_msg(cs_registry_load_conf(r, conf, &err) == 0, "%s", err.msg);
        ck_assert_msg(cs_registry_n_problems(r) == 0, "%s", cs_registry_problem(r, 0));
    }
    return r;
}

const cs_arch_iface *tu_arch(const char *name)
{
    const cs_plugin *p = cs_registry_find(tu_registry(), CS_KIND_ARCH, name);
    ck_assert_msg(p != NULL, "architecture %s not loaded", name);
    return p->iface;
}

const cs_policy_iface *tu_policy(const char *name)
{
    const cs_plugin *p = cs_registry_find(tu_registry(), CS_KIND_POLICY, name);
    ck_assert_msg(p != NULL, "policy %s not loaded", name);
    return p->iface;
}

cs_arch_config tu_config(const cs_arch_iface *a, int classes)
{
    cs_arch_config base = {.w = 1, .in_channels = 3, .n_classes = classes, .stem = CS_STEM_IMAGENET,
                           .head = CS_HEAD_LINEAR};
    return cs_arch_reference(a, &base);
}

static void slurp(int fd, char *buf, size_t size)
{
    size_t used = 0;
    ssize_t k;
    char sink[4096];
    while ((k = read(fd, used + 1 < size ? buf + used : sink,
                     used + 1 < size ? size - 1 - used : sizeof sink)) > 0)
        if (used + 1 < size)
            used += (size_t)k;
    if (size)
        buf[used] = '\0';
}

int tu_run(char *out, size_t out_size, char *err, size_t err_size, const char *arg0, ...)
{
    const char *exe = getenv("CILSCALE_EXE");
    ck_assert_msg(exe && *exe, "CILSCALE_EXE is not set (run the tests with meson test)");
    const char *argv[64];
    int n = 0;
    argv[n++] = exe;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    /* Output goes to temporary files so a chatty child cannot block on a full pipe. */
    char out_path[] = "/tmp/cs-test-outXXXXXX", err_path[] = "/tmp/cs-test-errXXXXXX";
    int ofd = mkstemp(out_path), efd = mkstemp(err_path);
    ck_assert(ofd >= 0 && efd >= 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    slurp(ofd, out, out_size);
    slurp(efd, err, err_size);
    close(ofd);
    close(efd);
    unlink(out_path);
    unlink(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *tu_tmpdir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/cs-testXXXXXX");
        ck_assert(mkdtemp(dir) != NULL);
    }
    return dir;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    const char *fork_mode = getenv("CK_FORK");
    if (ftw->level == 0 && fork_mode && strcmp(fork_mode, "no") == 0)
        return 0;
    return remove(path);
}

void tu_remove_tmpdir(void) { nftw(tu_tmpdir(), remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

const char *tu_path(const char *name)
{
    static char paths[32][512];
    static int slot;
    char *p = paths[slot++ % 32];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    return p;
}

const char *tu_write(const char *name, const char *text)
{
    const char *p = tu_path(name);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
    return p;
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

static void write_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

void tu_write_tiny_idx(const char *dir, const char *split, int per_class, uint64_t seed)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, split);
    FILE *fl = fopen(p, "wb");
    ck_assert(fi && fl);
    int n = 10 * per_class;
    write_be32(fi, 0x803);
    write_be32(fi, (uint32_t)n);
    write_be32(fi, 8);
    write_be32(fi, 8);
    write_be32(fl, 0x801);
    write_be32(fl, (uint32_t)n);
    cs_rng r;
    cs_rng_seed(&r, seed, 3);
    for (int i = 0; i < n; i++) {
        int c = i % 10;
        unsigned char img[64];
        for (int j = 0; j < 64; j++)
            img[j] = (unsigned char)cs_rng_below(&r, 60);
        int y0 = (c / 5) * 4, x0 = (c % 5) + 1;
        for (int y = y0; y < y0 + 3; y++)
            for (int x = x0; x < x0 + 3; x++)
                img[y * 8 + x] = 255;
        fwrite(img, 1, 64, fi);
        unsigned char l = (unsigned char)c;
        fwrite(&l, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}
