/* plan.h: what device.c (the plugin and its device) and plan.c (running graphs) share. */
#ifndef CILSCALE_CPU_PLAN_H
#define CILSCALE_CPU_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "cilscale/backend.h"

/* An opened cpu device: how many threads its plans split work over. */
typedef struct cpu_device {
    int threads;
} cpu_device;

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

#endif
