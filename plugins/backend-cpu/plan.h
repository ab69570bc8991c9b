/* plan.h: what device.c (the plugin and its device) and plan.c (running graphs) share. */
#ifndef CILSCALE_CPU_PLAN_H
#define CILSCALE_CPU_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "cilscale/backend.h"

/* Which kernels run a convolution (device option conv=...). */
typedef enum cpu_conv_family {
    CPU_CONV_AUTO,   /* oneDNN where built in, else im2col */
    CPU_CONV_DNNL,   /* oneDNN for every convolution (an error where it is not built in) */
    CPU_CONV_IM2COL, /* the own kernels: im2col + OpenBLAS SGEMM, direct depthwise */
} cpu_conv_family;

/* An opened cpu device: how many threads its plans split work over, and which convolution kernels. */
typedef struct cpu_device {
    int threads;
    cpu_conv_family conv;
    int plain_layout; /* layout=plain: every activation NCHW, even between oneDNN convolutions */
    int no_fuse;      /* fuse=off: every relu runs as its own op */
    int no_wino;      /* wino=off: direct convolutions only */
} cpu_device;

/* "auto", "dnnl", "im2col". */
const char *cpu_conv_family_name(cpu_conv_family f);

int cpu_prepare(void *ctx, const cs_graph *g, void **plan, cs_error *err);
void cpu_release(void *plan);
int cpu_write(void *plan, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err);
int cpu_read(void *plan, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err);
int cpu_set_input(void *plan, int tensor, const float *src, int n, cs_error *err);
int cpu_read_tensor(void *plan, int tensor, float *dst, int n, cs_error *err);
int cpu_forward(void *plan, int n, int flags, cs_error *err);
int cpu_backward(void *plan, int n, cs_error *err);
int cpu_update(void *plan, const cs_sgd *opt, cs_error *err);
int cpu_step(void *plan, int n, const cs_sgd *opt, cs_error *err);
int cpu_profile(void *plan, char *report, size_t size, cs_error *err);
int cpu_set_comm(void *plan, const cs_comm *comm, cs_error *err);

#endif
