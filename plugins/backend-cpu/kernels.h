/* kernels.h: the CPU backend's kernels: reference (float and double) and fast (float, OpenBLAS + OpenMP). */
#ifndef CILSCALE_CPU_KERNELS_H
#define CILSCALE_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Conventions shared by every kernel:
 * - tensors are row-major float NCHW (or [N,F]); n is the number of rows the
 *   run uses, which may be below the batch the graph was built for;
 * - a forward overwrites its output and writes what its backward needs into
 *   the save buffers it is given;
 * - a backward ACCUMULATES (+=) into each gradient buffer, and skips any
 *   gradient passed as NULL;
 * - losses are means over the n rows; their backward takes dloss, the
 *   gradient of the total loss with respect to this loss value. */

/* A convolution or pooling window: input [n,c,h,w], weight [oc, c/groups, k, k],
 * output [n,oc,oh,ow] (pools: oc = c, groups unused). */
typedef struct conv_geom {
    int n, c, h, w;
    int oc, k, stride, pad, groups;
    int oh, ow;
} conv_geom;

/* Fills oh, ow (PyTorch's rule) and returns g. */
conv_geom *conv_geom_finish(conv_geom *g);

/* Floats each op's forward saves for its backward (besides its input and output tensors). */
int64_t batchnorm_save_size(int c);                   /* mean[c], invstd[c] */
int64_t cosine_linear_save_size(int n, int f, int k); /* xn[n,f], wn[k,f], xnorm[n], wnorm[k], cos[n,k] */
int64_t l2norm_save_size(int n);                      /* norm[n] */
int64_t softmax_xent_save_size(int n, int k);         /* probs[n,k] */
int64_t cosine_embed_save_size(int n);                /* anorm[n], bnorm[n], cos[n] */
/* The norm floor of F.normalize: rows shorter than this are divided by it instead. */
#define CPU_NORM_EPS 1e-12

/* ---- reference kernels: plain loops, compiled twice from kernels_ref.inc ----
 * ref_*   float, the numbers the fast kernels are compared with;
 * ref64_* double, for finite-difference checks of the backward formulas. */
#define real float
#define REF(name) ref_##name
#include "kernels_ref.h"
#undef real
#undef REF
#define real double
#define REF(name) ref64_##name
#include "kernels_ref.h"
#undef real
#undef REF

/* The fast kernels are compiled three times, for x86-64-v4 (AVX-512),
 * x86-64-v3 (AVX2, FMA) and the baseline, and the loader picks the clone for
 * this CPU (GCC's target_clones: an ifunc resolved by CPUID). fast_cpu_isa()
 * names the one it picks. Elsewhere: one build. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#endif

/* ---- fast kernels (float) ----
 * Every fast kernel takes a cpu_par: how many threads to use, and a workspace
 * of at least fast_workspace_size() floats for the largest op it will run.
 * For a fixed thread count the results are bit-identical run to run on one
 * machine: work is split statically and every reduction has a fixed order
 * (which may differ on a CPU without AVX2, where other vector code runs). */
#define CPU_MAX_THREADS 256
typedef struct cpu_par {
    int threads;
    float *ws;
    int64_t ws_size; /* floats */
} cpu_par;

/* Floats of workspace the kernels that need one use, on up to g->n (n) rows; the others need none. */
int64_t fast_conv2d_workspace(const conv_geom *g, int threads);
int64_t fast_cosine_linear_workspace(int n, int f, int k);

void fast_conv2d_forward(const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                         const conv_geom *g);
void fast_conv2d_backward(const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, const conv_geom *g);
void fast_batchnorm_forward_train(const cpu_par *p, float *out, float *save, float *running_mean,
                                  float *running_var, const float *in, const float *gamma, const float *beta, int n,
                                  int c, int hw, float eps, float momentum);
void fast_batchnorm_forward_eval(const cpu_par *p, float *out, const float *in, const float *gamma,
                                 const float *beta, const float *running_mean, const float *running_var, int n, int c,
                                 int hw, float eps);
void fast_batchnorm_backward(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *save, const float *gamma, int n, int c, int hw);
void fast_relu_forward(const cpu_par *p, float *out, const float *in, int64_t count);
void fast_relu_backward(const cpu_par *p, float *din, const float *dout, const float *in, int64_t count);
void fast_relu6_forward(const cpu_par *p, float *out, const float *in, int64_t count);
void fast_relu6_backward(const cpu_par *p, float *din, const float *dout, const float *in, int64_t count);
void fast_add_forward(const cpu_par *p, float *out, const float *a, const float *b, int64_t count);

/* ---- a relu or relu6 fused into the op before it (the plan's fuse pass) ----
 * forward: y = act(op(x)); backward: the op's output gradient is dy where
 * 0 < y (< 6 for relu6), else 0: the relu's own rule, read from its output. */
enum { CPU_ACT_NONE = 0, CPU_ACT_RELU = 1, CPU_ACT_RELU6 = 2 };
static inline float cpu_act(float v, int act)
{
    return act == CPU_ACT_NONE ? v : v < 0 ? 0 : (act == CPU_ACT_RELU6 && v > 6) ? 6 : v;
}
static inline float cpu_act_grad(float g, float y, int act)
{
    return act == CPU_ACT_NONE || (y > 0 && (act == CPU_ACT_RELU || y < 6)) ? g : 0;
}
void fast_batchnorm_forward_train_act(const cpu_par *p, float *out, float *save, float *running_mean,
                                      float *running_var, const float *in, const float *gamma, const float *beta, int n,
                                      int c, int hw, float eps, float momentum, int act);
void fast_batchnorm_forward_eval_act(const cpu_par *p, float *out, const float *in, const float *gamma,
                                     const float *beta, const float *running_mean, const float *running_var, int n,
                                     int c, int hw, float eps, int act);
/* yact: the fused activation's output (unused when act is CPU_ACT_NONE) */
void fast_batchnorm_backward_act(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *save, const float *gamma, int n, int c, int hw,
                                 const float *yact, int act);
/* ---- kernels_sync.c: batch norm in training over every rank's rows ----
 * reduce sums count doubles over the ranks in place (0 on success). b is 0
 * for NCHW, else the channel block of kernels_blk.c's layout. The same
 * outputs as the fast kernels above (save, running statistics, din, and
 * this rank's share of dgamma and dbeta) for the global batch. Return 0, or
 * -1 when reduce failed or memory ran out. */
typedef int (*cpu_reduce_fn)(void *ctx, double *buf, int count);
int sync_batchnorm_forward_train(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *out, float *save,
                                 float *running_mean, float *running_var, const float *in, const float *gamma,
                                 const float *beta, int n, int c, int hw, int b, float eps, float momentum, int act);
int sync_batchnorm_backward(const cpu_par *p, cpu_reduce_fn reduce, void *rctx, float *din, float *dgamma,
                            float *dbeta, const float *dout, const float *in, const float *save, const float *gamma,
                            int n, int c, int hw, int b, const float *yact, int act);
void fast_add_forward_act(const cpu_par *p, float *out, const float *a, const float *b, int64_t count, int act);
void fast_add_backward_act(const cpu_par *p, float *da, float *db, const float *dout, const float *yact,
                           int64_t count, int act);
void fast_add_backward(const cpu_par *p, float *da, float *db, const float *dout, int64_t count);
void fast_maxpool_forward(const cpu_par *p, float *out, int32_t *argmax, const float *in, const conv_geom *g);
void fast_maxpool_backward(const cpu_par *p, float *din, const float *dout, const int32_t *argmax,
                           const conv_geom *g);
void fast_avgpool_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw);
void fast_avgpool_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw);
void fast_slice_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int start,
                        int count);
void fast_slice_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int start,
                         int count);
void fast_concat_forward(const cpu_par *p, float *out, const float *a, const float *b, int n, int ca, int cb,
                         int hw);
void fast_concat_backward(const cpu_par *p, float *da, float *db, const float *dout, int n, int ca, int cb,
                          int hw);
void fast_shuffle_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int groups);
void fast_shuffle_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int groups);
void fast_linear_forward(const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                         int n, int f, int k);
void fast_linear_backward(const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, int n, int f, int k);
void fast_cosine_linear_forward(const cpu_par *p, float *out, float *save, const float *in, const float *weight,
                                const float *sigma, int n, int f, int k);
void fast_cosine_linear_backward(const cpu_par *p, float *din, float *dweight, float *dsigma, const float *dout,
                                 const float *save, const float *sigma, int n, int f, int k);
void fast_l2norm_forward(const cpu_par *p, float *out, float *save, const float *in, int n, int f);
void fast_l2norm_backward(const cpu_par *p, float *din, const float *dout, const float *out, const float *save,
                          int n, int f);
void fast_softmax_xent_forward(const cpu_par *p, float *loss, float *save, const float *logits,
                               const float *labels, int n, int k);
void fast_softmax_xent_backward(const cpu_par *p, float *dlogits, float dloss, const float *save,
                                const float *labels, int n, int k);
void fast_cosine_embed_forward(const cpu_par *p, float *loss, float *save, const float *a, const float *b, int n,
                               int f);
void fast_cosine_embed_backward(const cpu_par *p, float *da, float dloss, const float *save, const float *a,
                                const float *b, int n, int f);
/* x[0:count] = 0, split over the threads (gradients are zeroed every step). */
void fast_zero(const cpu_par *p, float *x, int64_t count);
void fast_sgd_update(const cpu_par *p, float *param, const float *grad, float *mom, int64_t count, float lr,
                     float momentum, float weight_decay, int nesterov);

/* blas.c: OpenBLAS, dlopened with OPENBLAS_CORETYPE set from CPUID (unless
 * the user set it), so that a CPU the library does not recognise still gets
 * its AVX2 / AVX-512 kernels. fast_blas_init loads it once (any thread) and
 * returns 0, or -1 with the reason in why; the other calls need it done. */
int fast_blas_init(char *why, size_t size);
/* "OpenBLAS 0.3.21 (SkylakeX kernel, core type from CPUID: avx512)" */
void fast_blas_describe(char *buf, int size);
/* OpenBLAS's name for the kernels it runs ("SkylakeX", "Haswell", "Prescott"). */
const char *fast_blas_corename(void);
/* cblas_sgemm, row-major; ta / tb: A / B transposed. */
void fast_blas_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* The widest x86 vector extension this CPU has that the kernels use:
 * "avx512" (x86-64-v4: F, BW, CD, DQ, VL), "avx2" (x86-64-v3: with FMA),
 * "sse2" (the baseline), or "generic" off x86; the fast kernels' clone. */
const char *fast_cpu_isa(void);


/* ---- kernels_blk.c: channel-blocked activations (x[n][c / b][h][w][c % b], b = 8 or 16,
 * the last block's lanes past c zero) ---- */
int64_t blk_size(int n, int c, int hw, int b); /* floats, padding included */
void blk_batchnorm_forward_train(const cpu_par *p, float *out, float *save, float *running_mean, float *running_var,
                                 const float *in, const float *gamma, const float *beta, int n, int c, int hw, int b,
                                 float eps, float momentum, int act);
void blk_batchnorm_forward_eval(const cpu_par *p, float *out, const float *in, const float *gamma, const float *beta,
                                const float *running_mean, const float *running_var, int n, int c, int hw, int b,
                                float eps, int act);
void blk_batchnorm_backward(const cpu_par *p, float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *in, const float *save, const float *gamma, int n, int c, int hw, int b,
                            const float *yact, int act);
/* out[n, c] = the mean over positions; din += dout / hw on every position. */
void blk_avgpool_forward(const cpu_par *p, float *out, const float *in, int n, int c, int hw, int b);
void blk_avgpool_backward(const cpu_par *p, float *din, const float *dout, int n, int c, int hw, int b);
/* Between the blocked and the plain NCHW layout (from_plain zeroes the padding). */
void blk_to_plain(const cpu_par *p, float *dst, const float *src, int n, int c, int hw, int b);
void blk_from_plain(const cpu_par *p, float *dst, const float *src, int n, int c, int hw, int b);

#endif
