/* blas.c: OpenBLAS, loaded at run time with the core type this CPU should get.
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH: when the library initialises
 * it picks its kernels from the CPU model, and on a model it does not know (a
 * virtual machine's "Intel Xeon Processor", a CPU newer than the release) it
 * falls to the Prescott kernels: SSE3, a third of the speed or less on an
 * AVX-512 machine. The only way to correct that is OPENBLAS_CORETYPE in the
 * environment before the library's constructor runs, which is why the backend
 * does not link OpenBLAS: it sets the core type from CPUID's feature bits and
 * then dlopens the library. A core type the user set is kept as it is. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);

static struct {
    pthread_once_t once;
    void *lib;
    sgemm_fn sgemm;
    char *(*get_config)(void);
    char *(*get_corename)(void);
    char coretype[32];   /* what we set OPENBLAS_CORETYPE to, "" if we did not */
    char how[64];        /* "from CPUID", "from OPENBLAS_CORETYPE", ... */
    char error[256];
} B = {.once = PTHREAD_ONCE_INIT};

const char *fast_cpu_isa(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "avx512";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "avx2";
    return "sse2";
#else
    return "generic";
#endif
}

/* The OPENBLAS_CORETYPE for an extension, or NULL to leave the choice to OpenBLAS. */
static const char *coretype_for(const char *isa, int amd)
{
    if (!strcmp(isa, "avx512"))
        return "SkylakeX";
    if (!strcmp(isa, "avx2"))
        return amd ? "Zen" : "Haswell";
    return NULL; /* leave the choice to OpenBLAS */
}

static int cpu_is_amd(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
#else
    return 0;
#endif
}

static void blas_load(void)
{
    static const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    /* already in the process (another library linked it): its core type is fixed */
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !B.lib; i++)
        B.lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (B.lib)
        snprintf(B.how, sizeof B.how, "loaded before the backend: core type as OpenBLAS chose");
    else if (env && *env)
        snprintf(B.how, sizeof B.how, "core type from OPENBLAS_CORETYPE");
    else {
        const char *ct = coretype_for(fast_cpu_isa(), cpu_is_amd());
        if (ct) {
            snprintf(B.coretype, sizeof B.coretype, "%s", ct);
            setenv("OPENBLAS_CORETYPE", ct, 1);
            snprintf(B.how, sizeof B.how, "core type from CPUID: %s", fast_cpu_isa());
        } else {
            snprintf(B.how, sizeof B.how, "core type as OpenBLAS chose");
        }
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !B.lib; i++)
        B.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!B.lib) {
        snprintf(B.error, sizeof B.error, "cannot load OpenBLAS (libopenblas.so.0): %s (install libopenblas0)",
                 dlerror());
        return;
    }
    void (*set_threads)(int) = (void (*)(int))dlsym(B.lib, "openblas_set_num_threads");
    B.sgemm = (sgemm_fn)dlsym(B.lib, "cblas_sgemm");
    B.get_config = (char *(*)(void))dlsym(B.lib, "openblas_get_config");
    B.get_corename = (char *(*)(void))dlsym(B.lib, "openblas_get_corename");
    if (!set_threads || !B.sgemm || !B.get_config || !B.get_corename) {
        snprintf(B.error, sizeof B.error, "the OpenBLAS loaded lacks cblas_sgemm or openblas_* functions");
        B.sgemm = NULL;
        return;
    }
    /* openblas_set_num_threads is process-wide: the kernels split work over
     * OpenMP threads themselves, and OpenBLAS's own pool would compete. */
    set_threads(1);
}

int fast_blas_init(char *why, size_t size)
{
    pthread_once(&B.once, blas_load);
    if (B.sgemm)
        return 0;
    if (why)
        snprintf(why, size, "%s", B.error);
    return -1;
}

void fast_blas_describe(char *buf, int size)
{
    if (fast_blas_init(NULL, 0)) {
        snprintf(buf, (size_t)size, "no OpenBLAS");
        return;
    }
    /* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" */
    char name[32] = "OpenBLAS", version[32] = "";
    sscanf(B.get_config(), "%31s %31s", name, version);
    snprintf(buf, (size_t)size, "%s %s (%s kernel, %s)", name, version, B.get_corename(), B.how);
}

const char *fast_blas_corename(void) { return fast_blas_init(NULL, 0) ? "none" : B.get_corename(); }

void fast_blas_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc)
{
    if (fast_blas_init(NULL, 0)) {
        /* cpu_open and the tests call fast_blas_init first and report its error */
        fprintf(stderr, "cpu backend: %s\n", B.error);
        abort();
    }
    enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 }; /* cblas.h's values */
    B.sgemm(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
