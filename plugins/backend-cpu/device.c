/* device.c: the `cpu` backend plugin: its descriptor, and opening and describing the device (threads, BLAS). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cilscale/plugin.h"
#include "kernels.h"
#include "plan.h"

/* "12" -> 12 when it is a whole number in [1, CPU_MAX_THREADS], else 0. */
static int parse_threads(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > CPU_MAX_THREADS)
        return 0;
    return (int)v;
}

static int default_threads(void)
{
#ifdef _OPENMP
    int n = omp_get_num_procs(); /* the CPUs this process may run on */
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n < 1 ? 1 : n > CPU_MAX_THREADS ? CPU_MAX_THREADS : (int)n;
}

/* device: "" (CILSCALE_THREADS if set, else one thread per CPU) or "threads=N". */
static int cpu_open(const char *device, void **ctx, cs_error *err)
{
    int threads;
    if (device && *device) {
        if (strncmp(device, "threads=", 8) != 0 || !(threads = parse_threads(device + 8)))
            return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': expected \"\" or threads=N (N from 1 to %d)",
                                device, CPU_MAX_THREADS);
    } else {
        const char *env = getenv("CILSCALE_THREADS");
        if (env && *env) {
            if (!(threads = parse_threads(env)))
                return cs_error_set(err, CS_ERR_ARG,
                                    "cpu backend: CILSCALE_THREADS='%s': expected a thread count from 1 to %d", env,
                                    CPU_MAX_THREADS);
        } else {
            threads = default_threads();
        }
    }
    cpu_device *d = calloc(1, sizeof *d);
    if (!d)
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory opening the device");
    d->threads = threads;
    fast_blas_init();
#ifdef _OPENMP
    /* the kernels split work by the thread count they get: it must not vary */
    omp_set_dynamic(0);
#endif
    *ctx = d;
    return CS_OK;
}

static void cpu_close(void *ctx) { free(ctx); }

/* The "model name" line of /proc/cpuinfo, or "unknown CPU". */
static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static void cpu_describe(void *ctx, char *buf, size_t size)
{
    const cpu_device *d = ctx;
    char model[256], blas[128];
    cpu_model(model, sizeof model);
    fast_blas_describe(blas, sizeof blas);
    snprintf(buf, size, "cpu: %s, %d thread%s, %s", model, d->threads, d->threads == 1 ? "" : "s", blas);
}

static const cs_backend_iface iface = {
    .open = cpu_open,
    .close = cpu_close,
    .describe = cpu_describe,
    .prepare = cpu_prepare,
    .release = cpu_release,
    .write = cpu_write,
    .read = cpu_read,
    .set_input = cpu_set_input,
    .read_tensor = cpu_read_tensor,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .update = cpu_update,
    .step = cpu_step,
    .profile = cpu_profile,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "cpu",
    .version = "1.0.0",
    .description = "every op forward and backward on the CPU: OpenBLAS SGEMM for convolutions, OpenMP threads",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
