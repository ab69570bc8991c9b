/* dnnl_conv.h: convolutions on oneDNN (Debian's libdnnl-dev), one of the cpu
 * backend's kernel families.
 *
 * Each conv node gets oneDNN's forward, backward-data and backward-weights
 * primitives, created at prepare time for the graph's batch (and on first use
 * for another row count), in the layouts oneDNN prefers (blocked, nChw16c on
 * AVX-512), with reorders from and to the backend's plain NCHW / OIHW arrays
 * around each call. Gradients accumulate into the backend's arrays through the
 * reorders' sum post-op, as the other kernels' do. Built only where oneDNN is
 * found (CS_HAVE_DNNL); elsewhere dconv_available() is 0 and the im2col +
 * OpenBLAS kernels run every convolution. */
#ifndef CILSCALE_CPU_DNNL_CONV_H
#define CILSCALE_CPU_DNNL_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct dconv dconv;

/* 1 if the backend was built with oneDNN and its CPU engine opens. */
int dconv_available(void);
/* "oneDNN 2.6.3 (avx512_core)", or why it is not there. */
void dconv_describe(char *buf, size_t size);

/* The channel block oneDNN's convolutions prefer on this CPU (16 with AVX-512,
 * 8 with AVX2 or less), or 0 without oneDNN. */
int dconv_block(void);

/* The primitives of one convolution at g->n rows; the backend's arrays hold
 * the source and the output plain (NCHW, block 0) or channel-blocked (block
 * dconv_block(), kernels_blk.c's layout); wino: Winograd for 3x3 stride-1
 * convolutions where oneDNN has it (else direct); fold_act >= 0: also an
 * inference primitive for dconv_forward_folded, with that CPU_ACT_* as its
 * post-op (-1: none). *ws_floats is the scratch it needs
 * from the plan's shared workspace. 0, or -1 with the reason in why. */
int dconv_create(dconv **c, const conv_geom *g, int has_bias, int src_block, int dst_block, int wino, int fold_act,
                 int threads, int64_t *ws_floats, char *why, size_t size);
void dconv_free(dconv *c);
/* Floats of workspace the primitives for n rows need (made now and kept for
 * the calls that follow), or -1 where they cannot be made. A batch of other
 * than the planned rows (the last, partial one) can need more than the
 * planned batch: oneDNN may pick another algorithm for it. */
int64_t dconv_ws_for(dconv *c, int n);
/* oneDNN's name for the implementation it chose ("jit:avx512_core", "gemm:jit"). */
const char *dconv_impl(const dconv *c);

/* out = conv(in, weight) + bias over n rows (n <= the batch it was created
 * for); din, dweight, dbias (each may be NULL) += the gradients. 0, or -1 with
 * the reason in why. */
int dconv_forward(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                  int n, char *why, size_t size);
/* Inference with the batch norm that reads this convolution's output folded
 * into its weights and bias (gamma, beta, running mean and var, eps), and the
 * activation dconv_create was given applied: out = act(bn(conv(in))). */
int dconv_forward_folded(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight,
                         const float *bias, const float *gamma, const float *beta, const float *mean,
                         const float *var, float eps, int n, char *why, size_t size);
int dconv_backward(dconv *c, const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                   const float *in, const float *weight, int n, char *why, size_t size);

#endif
