/* dnnl_conv.c: convolutions on oneDNN (see dnnl_conv.h). */
#include "dnnl_conv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef CS_HAVE_DNNL

int dconv_available(void) { return 0; }
void dconv_describe(char *buf, size_t size) { snprintf(buf, size, "oneDNN not built in"); }
int dconv_block(void) { return 0; }
int dconv_create(dconv **c, const conv_geom *g, int has_bias, int src_block, int dst_block, int wino, int fold_act,
                 int threads, int64_t *ws_floats, char *why, size_t size)
{
    (void)g, (void)has_bias, (void)src_block, (void)dst_block, (void)wino, (void)fold_act, (void)threads;
    *c = NULL;
    *ws_floats = 0;
    snprintf(why, size, "the cpu backend was built without oneDNN");
    return -1;
}
void dconv_free(dconv *c) { (void)c; }
const char *dconv_impl(const dconv *c) { return (void)c, "none"; }
int dconv_forward(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                  int n, char *why, size_t size)
{
    (void)c, (void)p, (void)out, (void)in, (void)weight, (void)bias, (void)n;
    snprintf(why, size, "the cpu backend was built without oneDNN");
    return -1;
}
int dconv_forward_folded(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight,
                         const float *bias, const float *gamma, const float *beta, const float *mean,
                         const float *var, float eps, int n, char *why, size_t size)
{
    (void)c, (void)p, (void)out, (void)in, (void)weight, (void)bias, (void)gamma, (void)beta, (void)mean, (void)var;
    (void)eps, (void)n;
    snprintf(why, size, "the cpu backend was built without oneDNN");
    return -1;
}
int64_t dconv_ws_for(dconv *c, int n)
{
    (void)c, (void)n;
    return -1;
}
int dconv_backward(dconv *c, const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                   const float *in, const float *weight, int n, char *why, size_t size)
{
    (void)c, (void)p, (void)din, (void)dweight, (void)dbias, (void)dout, (void)in, (void)weight, (void)n;
    snprintf(why, size, "the cpu backend was built without oneDNN");
    return -1;
}

#else

#include <pthread.h>
#include <stdlib.h>

#include <dnnl.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static struct {
    pthread_once_t once;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_status_t status;
} E = {.once = PTHREAD_ONCE_INIT};

static void engine_open(void)
{
    E.status = dnnl_engine_create(&E.engine, dnnl_cpu, 0);
    if (E.status == dnnl_success)
        E.status = dnnl_stream_create(&E.stream, E.engine, dnnl_stream_default_flags);
}

int dconv_available(void)
{
    pthread_once(&E.once, engine_open);
    return E.status == dnnl_success;
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
    }
}

void dconv_describe(char *buf, size_t size)
{
    if (!dconv_available()) {
        snprintf(buf, size, "oneDNN unusable (engine status %d)", (int)E.status);
        return;
    }
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, size, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
}

/* A reorder between a plain array and a primitive's layout. */
typedef struct edge {
    dnnl_memory_desc_t md; /* the primitive's side */
    dnnl_primitive_t r;    /* NULL: the primitive reads or writes the plain array itself */
    size_t bytes;
} edge;

/* Everything for one row count. Slots of the shared workspace: A holds a
 * source, D a gradient of the output, B weights, C what a primitive writes
 * before it is reordered out, S the scratchpad. */
typedef struct prims {
    int n;
    dnnl_primitive_t fwd, bwd_data, bwd_wei;
    dnnl_memory_desc_t user_src, user_dst, user_wei, user_bias; /* the backend's arrays */
    edge f_src, f_wei, f_dst;   /* forward */
    edge d_ddst, d_wei, d_dsrc; /* backward data (d_dsrc always a reorder: it accumulates) */
    edge w_src, w_ddst, w_dwei; /* backward weights (w_dwei always a reorder: it accumulates) */
    int w_ddst_same;            /* w_ddst's layout is d_ddst's: reuse slot D */
    dnnl_memory_desc_t scr_f, scr_d, scr_w; /* the scratchpads */
    int own_wgrad;  /* depthwise weight gradient on the own kernel (w_src / w_ddst: plain copies) */
    /* inference with the following batch norm folded in (dconv_forward_folded):
     * bias, the fused activation as a post-op */
    dnnl_primitive_t fwd_fold;
    edge ff_src, ff_wei, ff_dst;
    dnnl_memory_desc_t scr_ff;
    size_t own_ws;  /* floats of scratch it needs */
    size_t slot[7];             /* bytes of A, D, B, C, S, O, W */
    char impl[160]; /* forward / backward data / backward weights */
} prims;

/* O: the own kernel's scratch; W: folded plain weights and bias */
enum { SLOT_A, SLOT_D, SLOT_B, SLOT_C, SLOT_S, SLOT_O, SLOT_W, N_SLOTS };
#define MAX_SETS 4

struct dconv {
    conv_geom g;
    int has_bias, threads, src_block, dst_block, wino;
    int fold_act; /* -1: no folded inference primitive; else its CPU_ACT_* post-op */
    prims set[MAX_SETS];
    int n_sets;
};

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }
static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

static void prims_free(prims *s)
{
    dnnl_primitive_t all[] = {s->fwd,     s->bwd_data, s->bwd_wei,  s->f_src.r,  s->f_wei.r,
                              s->f_dst.r, s->d_ddst.r, s->d_wei.r,  s->d_dsrc.r, s->w_src.r,
                              s->w_ddst.r, s->w_dwei.r, s->fwd_fold, s->ff_src.r, s->ff_wei.r, s->ff_dst.r};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            dnnl_primitive_destroy(all[i]);
    memset(s, 0, sizeof *s);
}

/* A reorder from `from` to `to`, accumulating into `to` when sum. */
static dnnl_status_t make_reorder(dnnl_primitive_t *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                  int sum)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success && sum) {
        if ((st = dnnl_post_ops_create(&po)) == dnnl_success && (st = dnnl_post_ops_append_sum(po, 1.0f)) == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, from, E.engine, to, E.engine, attr);
    if (st == dnnl_success)
        st = dnnl_primitive_create(r, pd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The edge between the plain array and the layout pd wants for `what`;
 * to_plain: the primitive writes it (reorder out); always: even when equal. */
static dnnl_status_t make_edge(edge *e, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                               const dnnl_memory_desc_t *plain, int to_plain, int always)
{
    e->md = *dnnl_primitive_desc_query_md(pd, what, 0);
    e->bytes = dnnl_memory_desc_get_size(&e->md);
    e->r = NULL;
    if (!always && dnnl_memory_desc_equal(&e->md, plain))
        return dnnl_success;
    return to_plain ? make_reorder(&e->r, &e->md, plain, always) : make_reorder(&e->r, plain, &e->md, 0);
}

static size_t scratch_bytes(const_dnnl_primitive_desc_t pd)
{
    return dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
}

static int threads_now(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static void set_threads(int threads)
{
#ifdef _OPENMP
    /* oneDNN sizes its work split by omp_get_max_threads() when a primitive
     * is created and run: it must be the backend's thread count */
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

int dconv_block(void)
{
    if (!dconv_available())
        return 0;
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? 16 : 8;
}

static dnnl_format_tag_t act_tag(int block)
{
    return block == 16 ? dnnl_nChw16c : block == 8 ? dnnl_nChw8c : dnnl_nchw;
}

static dnnl_status_t prims_try(prims *s, const conv_geom *g, int has_bias, int n, int src_block, int dst_block,
                               int forced, dnnl_alg_kind_t alg, int fold_act);

/* The primitives in the arrays' own layouts where oneDNN has them (no
 * reorder of activations), else in the layouts it prefers; Winograd (F(4x4,
 * 3x3)) for a 3x3 stride-1 convolution of 16 or more channels in and out where oneDNN has it for this CPU
 * (AVX-512) and wino is set, else direct. A fixed rule: the same shapes get
 * the same algorithm on every run. */
static dnnl_status_t prims_make(prims *s, const conv_geom *g, int has_bias, int n, int src_block, int dst_block,
                                int wino, int fold_act)
{
    /* not on few channels (a stem on raw pixels): little work to save there,
     * and Winograd's transforms cost accuracy there the most */
    const int wino_shape = wino && g->k == 3 && g->stride == 1 && g->groups == 1 && g->c >= 16 && g->oc >= 16;
    for (int w = wino_shape; w >= 0; w--) {
        const dnnl_alg_kind_t alg = w ? dnnl_convolution_winograd : dnnl_convolution_direct;
        if (src_block || dst_block) {
            dnnl_status_t st = prims_try(s, g, has_bias, n, src_block, dst_block, 1, alg, fold_act);
            /* a reference implementation is no gain over a reorder to a jit one */
            if (st == dnnl_success && !strstr(s->impl, "ref"))
                return st;
            if (st == dnnl_success)
                prims_free(s);
        }
        dnnl_status_t st = prims_try(s, g, has_bias, n, src_block, dst_block, 0, alg, fold_act);
        if (st == dnnl_success && (!w || !strstr(s->impl, "ref")))
            return st;
        if (st == dnnl_success)
            prims_free(s);
    }
    return dnnl_unimplemented;
}

static dnnl_status_t prims_try(prims *s, const conv_geom *g, int has_bias, int n, int src_block, int dst_block,
                               int forced, dnnl_alg_kind_t alg, int fold_act)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    const int grouped = g->groups > 1;
    dnnl_dims_t src = {n, g->c, g->h, g->w}, dst = {n, g->oc, g->oh, g->ow}, bias = {g->oc};
    dnnl_dims_t wei = {g->oc, g->c, g->k, g->k};
    if (grouped) {
        dnnl_dims_t gw = {g->groups, g->oc / g->groups, g->c / g->groups, g->k, g->k};
        memcpy(wei, gw, sizeof gw);
    }
    const int wnd = grouped ? 5 : 4;
    dnnl_dims_t strides = {g->stride, g->stride}, pad_l = {g->pad, g->pad};
    /* PyTorch's output size: the right padding is what the last window needs */
    dnnl_dims_t pad_r = {(g->oh - 1) * g->stride + g->k - g->h - g->pad, (g->ow - 1) * g->stride + g->k - g->w - g->pad};
    dnnl_memory_desc_t any_src, any_dst, any_wei, bias_md;
    dnnl_status_t st;
#define TRY(x)                                                                                                        \
    do {                                                                                                              \
        if ((st = (x)) != dnnl_success)                                                                               \
            goto done;                                                                                                \
    } while (0)
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    TRY(dnnl_memory_desc_init_by_tag(&s->user_src, 4, src, dnnl_f32, act_tag(src_block)));
    TRY(dnnl_memory_desc_init_by_tag(&s->user_dst, 4, dst, dnnl_f32, act_tag(dst_block)));
    TRY(dnnl_memory_desc_init_by_tag(&s->user_wei, wnd, wei, dnnl_f32, grouped ? dnnl_goihw : dnnl_oihw));
    TRY(dnnl_memory_desc_init_by_tag(&s->user_bias, 1, bias, dnnl_f32, dnnl_x));
    TRY(dnnl_memory_desc_init_by_tag(&any_src, 4, src, dnnl_f32, forced ? act_tag(src_block) : dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&any_dst, 4, dst, dnnl_f32, forced ? act_tag(dst_block) : dnnl_format_tag_any));
    dnnl_memory_desc_t free_src, free_dst;
    TRY(dnnl_memory_desc_init_by_tag(&free_src, 4, src, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&free_dst, 4, dst, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&any_wei, wnd, wei, dnnl_f32, dnnl_format_tag_any));
    bias_md = s->user_bias;
    TRY(dnnl_primitive_attr_create(&attr));
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    dnnl_convolution_desc_t fd, dd, wd;
    TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &any_src, &any_wei,
                                           has_bias ? &bias_md : NULL, &any_dst, strides, pad_l, pad_r));
    TRY(dnnl_primitive_desc_create(&fpd, &fd, attr, E.engine, NULL));
    TRY(dnnl_convolution_backward_data_desc_init(&dd, alg, &any_src, &any_wei, &any_dst, strides,
                                                 pad_l, pad_r));
    TRY(dnnl_primitive_desc_create(&dpd, &dd, attr, E.engine, fpd));
    TRY(dnnl_convolution_backward_weights_desc_init(&wd, alg, &any_src, &any_wei, NULL, &any_dst,
                                                    strides, pad_l, pad_r));
    st = dnnl_primitive_desc_create(&wpd, &wd, attr, E.engine, fpd);
    const char *wimpl = NULL;
    if (st == dnnl_success)
        dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &wimpl);
    if (forced && (st != dnnl_success || (wimpl && strstr(wimpl, "ref")))) {
        /* the weight gradient alone in the layouts oneDNN prefers (reorders around it) */
        if (wpd)
            dnnl_primitive_desc_destroy(wpd);
        wpd = NULL;
        TRY(dnnl_convolution_backward_weights_desc_init(&wd, alg, &free_src, &any_wei, NULL, &free_dst, strides,
                                                        pad_l, pad_r));
        st = dnnl_primitive_desc_create(&wpd, &wd, attr, E.engine, fpd);
        wimpl = NULL;
        if (st == dnnl_success)
            dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &wimpl);
    }
    TRY(st);
    /* a depthwise weight gradient oneDNN would run as per-channel GEMMs (tiny
     * planes with padding, where its jit kernel stops) goes to the own direct
     * kernel instead: ten times faster there */
    s->own_wgrad = g->groups == g->c && g->groups == g->oc && wimpl && (strstr(wimpl, "gemm") || strstr(wimpl, "ref"));

    TRY(dnnl_primitive_create(&s->fwd, fpd));
    TRY(dnnl_primitive_create(&s->bwd_data, dpd));
    if (!s->own_wgrad)
        TRY(dnnl_primitive_create(&s->bwd_wei, wpd));
    TRY(make_edge(&s->f_src, fpd, dnnl_query_src_md, &s->user_src, 0, 0));
    TRY(make_edge(&s->f_wei, fpd, dnnl_query_weights_md, &s->user_wei, 0, 0));
    TRY(make_edge(&s->f_dst, fpd, dnnl_query_dst_md, &s->user_dst, 1, 0));
    if (fold_act >= 0) {
        dnnl_primitive_attr_t fattr = NULL;
        dnnl_post_ops_t po = NULL;
        dnnl_convolution_desc_t id;
        TRY(dnnl_primitive_attr_create(&fattr));
        st = dnnl_primitive_attr_set_scratchpad_mode(fattr, dnnl_scratchpad_mode_user);
        if (st == dnnl_success && fold_act != CPU_ACT_NONE) {
            if ((st = dnnl_post_ops_create(&po)) == dnnl_success)
                st = fold_act == CPU_ACT_RELU ? dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0)
                                              : dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0, 6);
            if (st == dnnl_success)
                st = dnnl_primitive_attr_set_post_ops(fattr, po);
        }
        if (st == dnnl_success)
            st = dnnl_convolution_forward_desc_init(&id, dnnl_forward_training, alg, &any_src, &any_wei, &bias_md,
                                                    &any_dst, strides, pad_l, pad_r);
        dnnl_primitive_desc_t ipd = NULL;
        if (st == dnnl_success)
            st = dnnl_primitive_desc_create(&ipd, &id, fattr, E.engine, NULL);
        if (st == dnnl_success)
            st = dnnl_primitive_create(&s->fwd_fold, ipd);
        if (st == dnnl_success)
            st = make_edge(&s->ff_src, ipd, dnnl_query_src_md, &s->user_src, 0, 0);
        if (st == dnnl_success)
            st = make_edge(&s->ff_wei, ipd, dnnl_query_weights_md, &s->user_wei, 0, 0);
        if (st == dnnl_success)
            st = make_edge(&s->ff_dst, ipd, dnnl_query_dst_md, &s->user_dst, 1, 0);
        if (st == dnnl_success) {
            s->scr_ff = *dnnl_primitive_desc_query_md(ipd, dnnl_query_scratchpad_md, 0);
            s->slot[SLOT_W] = ((size_t)g->oc * (g->c / g->groups) * g->k * g->k + (size_t)g->oc) * sizeof(float);
        }
        if (ipd)
            dnnl_primitive_desc_destroy(ipd);
        if (po)
            dnnl_post_ops_destroy(po);
        dnnl_primitive_attr_destroy(fattr);
        TRY(st);
    }
    TRY(make_edge(&s->d_ddst, dpd, dnnl_query_diff_dst_md, &s->user_dst, 0, 0));
    TRY(make_edge(&s->d_wei, dpd, dnnl_query_weights_md, &s->user_wei, 0, 0));
    TRY(make_edge(&s->d_dsrc, dpd, dnnl_query_diff_src_md, &s->user_src, 1, 1));
    if (!s->own_wgrad) {
        TRY(make_edge(&s->w_src, wpd, dnnl_query_src_md, &s->user_src, 0, 0));
        TRY(make_edge(&s->w_ddst, wpd, dnnl_query_diff_dst_md, &s->user_dst, 0, 0));
        TRY(make_edge(&s->w_dwei, wpd, dnnl_query_diff_weights_md, &s->user_wei, 1, 1));
    } else {
        /* plain copies of the source and the output gradient, and the own kernel's scratch */
        s->w_src.bytes = (size_t)n * g->c * g->h * g->w * sizeof(float);
        s->w_ddst.bytes = (size_t)n * g->oc * g->oh * g->ow * sizeof(float);
        conv_geom gn = *g;
        gn.n = n;
        s->own_ws = (size_t)fast_conv2d_workspace(&gn, threads_now());
    }
    s->w_ddst_same = !s->own_wgrad && dnnl_memory_desc_equal(&s->w_ddst.md, &s->d_ddst.md);
    s->slot[SLOT_A] = max_sz(max_sz(s->f_src.bytes, s->w_src.bytes), s->ff_src.bytes);
    s->slot[SLOT_D] = max_sz(s->d_ddst.bytes, s->w_ddst.bytes);
    s->slot[SLOT_B] = max_sz(max_sz(s->f_wei.bytes, s->d_wei.bytes), s->ff_wei.bytes);
    s->slot[SLOT_C] = max_sz(max_sz(max_sz(s->f_dst.bytes, s->d_dsrc.bytes), s->w_dwei.bytes), s->ff_dst.bytes);
    s->scr_f = *dnnl_primitive_desc_query_md(fpd, dnnl_query_scratchpad_md, 0);
    s->scr_d = *dnnl_primitive_desc_query_md(dpd, dnnl_query_scratchpad_md, 0);
    if (!s->own_wgrad)
        s->scr_w = *dnnl_primitive_desc_query_md(wpd, dnnl_query_scratchpad_md, 0);
    s->slot[SLOT_S] = max_sz(max_sz(scratch_bytes(fpd), scratch_bytes(dpd)), s->own_wgrad ? 0 : scratch_bytes(wpd));
    s->slot[SLOT_O] = s->own_ws * sizeof(float);
    if (s->fwd_fold)
        s->slot[SLOT_S] = max_sz(s->slot[SLOT_S], dnnl_memory_desc_get_size(&s->scr_ff));
    const char *fi = NULL, *di = NULL, *wi = NULL;
    dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &fi);
    dnnl_primitive_desc_query(dpd, dnnl_query_impl_info_str, 0, &di);
    if (s->own_wgrad)
        wi = "own direct depthwise";
    else
        dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &wi);
    snprintf(s->impl, sizeof s->impl, "%s / %s / %s", fi ? fi : "?", di ? di : "?", wi ? wi : "?");
done:
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        prims_free(s);
    return st;
#undef TRY
}

static int64_t ws_floats_of(const prims *s)
{
    size_t total = 64; /* alignment of the first slot */
    for (int i = 0; i < N_SLOTS; i++)
        total += round64(s->slot[i]);
    return (int64_t)((total + sizeof(float) - 1) / sizeof(float));
}

int dconv_create(dconv **out, const conv_geom *g, int has_bias, int src_block, int dst_block, int wino, int fold_act,
                 int threads, int64_t *ws_floats, char *why, size_t size)
{
    *out = NULL;
    *ws_floats = 0;
    if (!dconv_available()) {
        snprintf(why, size, "oneDNN's CPU engine did not open (status %d)", (int)E.status);
        return -1;
    }
    dconv *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    c->g = *g;
    c->has_bias = has_bias;
    c->threads = threads;
    c->src_block = src_block;
    c->dst_block = dst_block;
    set_threads(threads);
    c->wino = wino;
    c->fold_act = fold_act;
    dnnl_status_t st = prims_make(&c->set[0], g, has_bias, g->n, src_block, dst_block, wino, fold_act);
    if (st != dnnl_success) {
        snprintf(why, size, "oneDNN has no convolution for this shape (status %d)", (int)st);
        free(c);
        return -1;
    }
    c->n_sets = 1;
    *ws_floats = ws_floats_of(&c->set[0]);
    *out = c;
    return 0;
}

void dconv_free(dconv *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_sets; i++)
        prims_free(&c->set[i]);
    free(c);
}

const char *dconv_impl(const dconv *c) { return c ? c->set[0].impl : "none"; }

/* (the last set is replaced when all are taken) */
int64_t dconv_ws_for(dconv *c, int n)
{
    for (int i = 0; i < c->n_sets; i++)
        if (c->set[i].n == n)
            return ws_floats_of(&c->set[i]);
    int at = c->n_sets < MAX_SETS ? c->n_sets : MAX_SETS - 1;
    if (at < c->n_sets)
        prims_free(&c->set[at]);
    else
        c->n_sets++;
    conv_geom g = c->g;
    g.n = n;
    set_threads(c->threads);
    if (prims_make(&c->set[at], &g, c->has_bias, n, c->src_block, c->dst_block, c->wino, c->fold_act) != dnnl_success) {
        c->n_sets--;
        return -1;
    }
    return ws_floats_of(&c->set[at]);
}

/* The primitives for n rows, made on first use (dconv_ws_for); NULL with
 * why filled when they cannot be made or need more scratch than p has. */
static prims *prims_for(dconv *c, const cpu_par *p, int n, char *why, size_t size)
{
    int64_t need = dconv_ws_for(c, n);
    if (need < 0 || need > p->ws_size) {
        snprintf(why, size, "oneDNN convolution for %d rows: %s", n,
                 need >= 0 ? "needs more scratch than the plan has" : "cannot be created");
        return NULL;
    }
    for (int i = 0; i < c->n_sets; i++)
        if (c->set[i].n == n)
            return &c->set[i];
    snprintf(why, size, "oneDNN convolution for %d rows: lost", n); /* not reached: dconv_ws_for made the set */
    return NULL;
}

/* Where each slot starts in the plan's workspace. */
static void carve(const prims *s, const cpu_par *p, void *slot[N_SLOTS])
{
    char *at = (char *)(((uintptr_t)p->ws + 63) & ~(uintptr_t)63);
    for (int i = 0; i < N_SLOTS; i++) {
        slot[i] = at;
        at += round64(s->slot[i]);
    }
}

typedef struct exec {
    dnnl_exec_arg_t args[8];
    dnnl_memory_t mem[8];
    int n;
    dnnl_status_t st;
} exec;

static void arg(exec *x, int what, const dnnl_memory_desc_t *md, const void *data)
{
    if (x->st != dnnl_success)
        return;
    x->st = dnnl_memory_create(&x->mem[x->n], md, E.engine, (void *)data);
    if (x->st != dnnl_success)
        return;
    x->args[x->n].arg = what;
    x->args[x->n].memory = x->mem[x->n];
    x->n++;
}

static dnnl_status_t run(exec *x, dnnl_primitive_t prim)
{
    if (x->st == dnnl_success)
        x->st = dnnl_primitive_execute(prim, E.stream, x->n, x->args);
    if (x->st == dnnl_success)
        x->st = dnnl_stream_wait(E.stream);
    for (int i = 0; i < x->n; i++)
        dnnl_memory_destroy(x->mem[i]);
    x->n = 0;
    return x->st;
}

/* Runs edge e from `from` to `to` (plain on one side, e->md on the other). */
static dnnl_status_t reorder(const edge *e, const dnnl_memory_desc_t *plain, int to_plain, const void *from, void *to);

/* Runs prim on x's arguments, then moves what it wrote at `written` to the
 * backend's array `to` through edge e (when e is a reorder). */
static dnnl_status_t run_out(exec *x, dnnl_primitive_t prim, const edge *e, const dnnl_memory_desc_t *user,
                             void *written, void *to)
{
    dnnl_status_t st = run(x, prim);
    return st == dnnl_success && e->r ? reorder(e, user, 1, written, to) : st;
}

static dnnl_status_t reorder(const edge *e, const dnnl_memory_desc_t *plain, int to_plain, const void *from, void *to)
{
    exec x = {.st = dnnl_success};
    arg(&x, DNNL_ARG_FROM, to_plain ? &e->md : plain, from);
    arg(&x, DNNL_ARG_TO, to_plain ? plain : &e->md, to);
    return run(&x, e->r);
}

/* The primitive's copy of a plain input: the array itself, or slot after the reorder. */
static const void *input(const edge *e, const dnnl_memory_desc_t *plain, const void *data, void *slot,
                         dnnl_status_t *st)
{
    if (!e->r || *st != dnnl_success)
        return data;
    *st = reorder(e, plain, 0, data, slot);
    return slot;
}

static int fail(dnnl_status_t st, const char *what, char *why, size_t size)
{
    snprintf(why, size, "oneDNN convolution %s failed (status %d)", what, (int)st);
    return -1;
}

/* What every call starts with: the primitives for n rows, oneDNN's thread
 * count, and where each slot lies in the plan's workspace. NULL with why. */
static prims *begin(dconv *c, const cpu_par *p, int n, void *slot[N_SLOTS], char *why, size_t size)
{
    prims *s = prims_for(c, p, n, why, size);
    if (!s)
        return NULL;
    set_threads(c->threads);
    carve(s, p, slot);
    return s;
}

/* A forward primitive (training, or the folded inference one) with its three
 * edges and scratchpad: out = prim(in, weight, bias). */
static dnnl_status_t run_forward(const prims *s, dnnl_primitive_t prim, const edge *esrc, const edge *ewei,
                                 const edge *edst, const dnnl_memory_desc_t *scr, void *slot[N_SLOTS], float *out,
                                 const float *in, const float *weight, const float *bias)
{
    dnnl_status_t st = dnnl_success;
    const void *src = input(esrc, &s->user_src, in, slot[SLOT_A], &st);
    const void *wei = input(ewei, &s->user_wei, weight, slot[SLOT_B], &st);
    void *dst = edst->r ? slot[SLOT_C] : out;
    exec x = {.st = st};
    arg(&x, DNNL_ARG_SRC, &esrc->md, src);
    arg(&x, DNNL_ARG_WEIGHTS, &ewei->md, wei);
    if (bias)
        arg(&x, DNNL_ARG_BIAS, &s->user_bias, bias);
    arg(&x, DNNL_ARG_DST, &edst->md, dst);
    arg(&x, DNNL_ARG_SCRATCHPAD, scr, slot[SLOT_S]);
    return run_out(&x, prim, edst, &s->user_dst, dst, out);
}

int dconv_forward(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight, const float *bias,
                  int n, char *why, size_t size)
{
    void *slot[N_SLOTS];
    prims *s = begin(c, p, n, slot, why, size);
    if (!s)
        return -1;
    dnnl_status_t st = run_forward(s, s->fwd, &s->f_src, &s->f_wei, &s->f_dst, &s->scr_f, slot, out, in, weight,
                                   c->has_bias ? bias : NULL);
    return st == dnnl_success ? 0 : fail(st, "forward", why, size);
}

int dconv_forward_folded(dconv *c, const cpu_par *p, float *out, const float *in, const float *weight,
                         const float *bias, const float *gamma, const float *beta, const float *mean,
                         const float *var, float eps, int n, char *why, size_t size)
{
    void *slot[N_SLOTS];
    prims *s = begin(c, p, n, slot, why, size);
    if (!s)
        return -1;
    if (!s->fwd_fold) {
        snprintf(why, size, "this convolution has no folded inference primitive");
        return -1;
    }
    /* w'[o] = w[o] * gamma[o] / sqrt(var[o] + eps); b'[o] = beta[o] + (b[o] - mean[o]) * that scale */
    const int64_t per_o = (int64_t)(c->g.c / c->g.groups) * c->g.k * c->g.k;
    float *fw = slot[SLOT_W], *fb = fw + per_o * c->g.oc;
    for (int o = 0; o < c->g.oc; o++) {
        const float k = (float)(gamma[o] / sqrt((double)var[o] + eps));
        for (int64_t j = 0; j < per_o; j++)
            fw[o * per_o + j] = weight[o * per_o + j] * k;
        fb[o] = beta[o] + ((bias ? bias[o] : 0) - mean[o]) * k;
    }
    dnnl_status_t st = run_forward(s, s->fwd_fold, &s->ff_src, &s->ff_wei, &s->ff_dst, &s->scr_ff, slot, out, in,
                                   fw, fb);
    return st == dnnl_success ? 0 : fail(st, "folded forward", why, size);
}

/* dbias += the sum of dout over rows and positions (double sums, in a fixed
 * order); dout plain (block 0) or channel-blocked. */
static void bias_grad(float *dbias, const float *dout, int n, int oc, int64_t ohw, int block)
{
    const int b = block ? block : 1;
    const int64_t cbs = (oc + b - 1) / b;
    for (int o = 0; o < oc; o++) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            const float *d = dout + ((int64_t)i * cbs + o / b) * ohw * b + o % b;
            for (int64_t j = 0; j < ohw; j++)
                acc += d[j * b];
        }
        dbias[o] += (float)acc;
    }
}

int dconv_backward(dconv *c, const cpu_par *p, float *din, float *dweight, float *dbias, const float *dout,
                   const float *in, const float *weight, int n, char *why, size_t size)
{
    if (dbias)
        bias_grad(dbias, dout, n, c->g.oc, (int64_t)c->g.oh * c->g.ow, c->dst_block);
    if (!din && !dweight)
        return 0;
    void *slot[N_SLOTS];
    prims *s = begin(c, p, n, slot, why, size);
    if (!s)
        return -1;
    dnnl_status_t st = dnnl_success;
    const void *ddst = NULL;
    if (din) {
        ddst = input(&s->d_ddst, &s->user_dst, dout, slot[SLOT_D], &st);
        const void *wei = input(&s->d_wei, &s->user_wei, weight, slot[SLOT_B], &st);
        exec x = {.st = st};
        arg(&x, DNNL_ARG_DIFF_DST, &s->d_ddst.md, ddst);
        arg(&x, DNNL_ARG_WEIGHTS, &s->d_wei.md, wei);
        arg(&x, DNNL_ARG_DIFF_SRC, &s->d_dsrc.md, slot[SLOT_C]);
        arg(&x, DNNL_ARG_SCRATCHPAD, &s->scr_d, slot[SLOT_S]);
        if ((st = run_out(&x, s->bwd_data, &s->d_dsrc, &s->user_src, slot[SLOT_C], din)) != dnnl_success)
            return fail(st, "backward data", why, size);
    }
    if (dweight && s->own_wgrad) {
        conv_geom g = c->g;
        g.n = n;
        const cpu_par own = {c->threads, slot[SLOT_O], (int64_t)s->own_ws};
        const float *x = in, *dy = dout;
        if (c->src_block) {
            blk_to_plain(&own, slot[SLOT_A], in, n, g.c, g.h * g.w, c->src_block);
            x = slot[SLOT_A];
        }
        if (c->dst_block) {
            blk_to_plain(&own, slot[SLOT_D], dout, n, g.oc, g.oh * g.ow, c->dst_block);
            dy = slot[SLOT_D];
        }
        fast_conv2d_backward(&own, NULL, dweight, NULL, dy, x, weight, &g);
        return 0;
    }
    if (dweight) {
        const void *src = input(&s->w_src, &s->user_src, in, slot[SLOT_A], &st);
        if (!ddst || !s->w_ddst_same)
            ddst = input(&s->w_ddst, &s->user_dst, dout, slot[SLOT_D], &st);
        exec x = {.st = st};
        arg(&x, DNNL_ARG_SRC, &s->w_src.md, src);
        arg(&x, DNNL_ARG_DIFF_DST, &s->w_ddst.md, ddst);
        arg(&x, DNNL_ARG_DIFF_WEIGHTS, &s->w_dwei.md, slot[SLOT_C]);
        arg(&x, DNNL_ARG_SCRATCHPAD, &s->scr_w, slot[SLOT_S]);
        if ((st = run_out(&x, s->bwd_wei, &s->w_dwei, &s->user_wei, slot[SLOT_C], dweight)) != dnnl_success)
            return fail(st, "backward weights", why, size);
    }
    return 0;
}

#endif
