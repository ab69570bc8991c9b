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
#include "dnnl_conv.h"
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

/* key=on|off into *off. */
static int on_off(const char *device, const char *key, const char *v, int *off, cs_error *err)
{
    if (strcmp(v, "on") && strcmp(v, "off"))
        return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': %s='%s': expected on or off", device, key, v);
    *off = !strcmp(v, "off");
    return CS_OK;
}

/* One "key=value" of the device string into d; 0, or CS_ERR_ARG with the reason. */
static int device_option(const char *device, const char *opt, size_t len, cpu_device *d, int *have_threads,
                         cs_error *err)
{
    char buf[64];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, opt, len);
    buf[len] = '\0';
    if (!strncmp(buf, "threads=", 8)) {
        if (!(d->threads = parse_threads(buf + 8)))
            return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': threads='%s': expected a thread count "
                                "from 1 to %d", device, buf + 8, CPU_MAX_THREADS);
        *have_threads = 1;
        return CS_OK;
    }
    if (!strncmp(buf, "conv=", 5)) {
        const char *v = buf + 5;
        if (!strcmp(v, "auto"))
            d->conv = CPU_CONV_AUTO;
        else if (!strcmp(v, "dnnl"))
            d->conv = CPU_CONV_DNNL;
        else if (!strcmp(v, "im2col"))
            d->conv = CPU_CONV_IM2COL;
        else
            return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': conv='%s': expected auto, dnnl or im2col",
                                device, v);
        if (d->conv == CPU_CONV_DNNL && !dconv_available()) {
            char why[128];
            dconv_describe(why, sizeof why);
            return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': conv=dnnl, but %s", device, why);
        }
        return CS_OK;
    }
    if (!strncmp(buf, "wino=", 5))
        return on_off(device, "wino", buf + 5, &d->no_wino, err);
    if (!strncmp(buf, "fuse=", 5))
        return on_off(device, "fuse", buf + 5, &d->no_fuse, err);
    if (!strncmp(buf, "layout=", 7)) {
        if (strcmp(buf + 7, "auto") && strcmp(buf + 7, "plain"))
            return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': layout='%s': expected auto or plain",
                                device, buf + 7);
        d->plain_layout = !strcmp(buf + 7, "plain");
        return CS_OK;
    }
    return cs_error_set(err, CS_ERR_ARG, "cpu backend: device '%s': unknown option '%s' (expected threads=N, "
                        "conv=auto|dnnl|im2col, layout=auto|plain, fuse=on|off, wino=on|off, comma separated)", device, buf);
}

/* device: "" or comma-separated options: threads=N (default: CILSCALE_THREADS
 * if set, else one thread per CPU), conv=auto|dnnl|im2col (default auto),
 * layout=auto|plain (auto: activations between oneDNN convolutions stay
 * channel-blocked; plain: every one NCHW, reordered around each convolution),
 * fuse=on|off (on: a relu / relu6 right after a batch norm or an add runs
 * inside it, and the tensor between them is not kept), wino=on|off (on:
 * Winograd for 3x3 stride-1 convolutions where oneDNN has it). */
static int cpu_open(const char *device, void **ctx, cs_error *err)
{
    cpu_device dv = {.conv = CPU_CONV_AUTO};
    int have_threads = 0, rc;
    for (const char *at = device ? device : ""; *at;) {
        size_t len = strcspn(at, ",");
        if ((rc = device_option(device, at, len, &dv, &have_threads, err)))
            return rc;
        at += len + (at[len] == ',');
    }
    int threads = dv.threads;
    if (!have_threads) {
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
    char why[256];
    if (fast_blas_init(why, sizeof why))
        return cs_error_set(err, CS_ERR, "cpu backend: %s", why);
    cpu_device *d = calloc(1, sizeof *d);
    if (!d)
        return cs_error_set(err, CS_ERR_NOMEM, "cpu backend: out of memory opening the device");
    *d = dv;
    d->threads = threads;
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
    char model[256], blas[128], dnnl[128] = "";
    cpu_model(model, sizeof model);
    fast_blas_describe(blas, sizeof blas);
    if (d->conv != CPU_CONV_IM2COL && dconv_available()) {
        dconv_describe(dnnl, sizeof dnnl);
        size_t u = strlen(dnnl);
        /* (Winograd: oneDNN 2.6 has it with AVX-512 only) */
        if (!d->no_wino && dconv_block() == 16)
            u += (size_t)snprintf(dnnl + u, sizeof dnnl - u, ", Winograd for 3x3 stride 1 (16+ channels)");
        if (d->plain_layout)
            snprintf(dnnl + u, sizeof dnnl - u, ", plain activations");
        else
            snprintf(dnnl + u, sizeof dnnl - u, ", activations nChw%dc between them", dconv_block());
    }
    snprintf(buf, size, "cpu: %s, %d thread%s, %s; convolutions: %s%s; GEMM: %s", model, d->threads,
             d->threads == 1 ? "" : "s", fast_cpu_isa(), dnnl[0] ? dnnl : "im2col + GEMM",
             dnnl[0] ? "" : (d->conv == CPU_CONV_IM2COL ? " (conv=im2col)" : " (oneDNN not built in)"), blas);
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
    .set_comm = cpu_set_comm,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_BACKEND,
    .name = "cpu",
    .version = "1.0.0",
    .description = "every op forward and backward on the CPU: oneDNN or im2col + OpenBLAS SGEMM for convolutions, OpenMP threads",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
