/* kernels_ref.h: the reference kernels' prototypes, in terms of `real` and REF(name).
 * kernels.h includes it twice (float: ref_*, double: ref64_*), hence no include guard.
 * Shapes are in the comments; "save" buffers are laid out as kernels.h's *_save_size says. */

/* out[n,oc,oh,ow] = conv(in[n,c,h,w], weight[oc,c/groups,k,k]) + bias[oc] (bias may be NULL) */
void REF(conv2d_forward)(real *out, const real *in, const real *weight, const real *bias, const conv_geom *g);
void REF(conv2d_backward)(real *din, real *dweight, real *dbias, const real *dout, const real *in,
                          const real *weight, const conv_geom *g);

/* in, out [n,c,hw]; gamma, beta, running_mean, running_var [c]; save: mean[c], invstd[c].
 * Train: batch statistics (biased variance normalises, the unbiased one enters
 * running_var), running = (1 - momentum) * running + momentum * batch. Needs n*hw > 1. */
void REF(batchnorm_forward_train)(real *out, real *save, real *running_mean, real *running_var, const real *in,
                                  const real *gamma, const real *beta, int n, int c, int hw, float eps,
                                  float momentum);
void REF(batchnorm_forward_eval)(real *out, const real *in, const real *gamma, const real *beta,
                                 const real *running_mean, const real *running_var, int n, int c, int hw, float eps);
/* The backward of the train forward (the graph never back-propagates an eval pass). */
void REF(batchnorm_backward)(real *din, real *dgamma, real *dbeta, const real *dout, const real *in,
                             const real *save, const real *gamma, int n, int c, int hw);

/* Elementwise over count values: out = max(in, 0); relu6: min(max(in, 0), 6). */
void REF(relu_forward)(real *out, const real *in, int64_t count);
void REF(relu_backward)(real *din, const real *dout, const real *in, int64_t count);
void REF(relu6_forward)(real *out, const real *in, int64_t count);
void REF(relu6_backward)(real *din, const real *dout, const real *in, int64_t count);
void REF(add_forward)(real *out, const real *a, const real *b, int64_t count);
void REF(add_backward)(real *da, real *db, const real *dout, int64_t count);

/* out[n,c,oh,ow] = max over each k x k window of in[n,c,h,w] (padding is -inf);
 * argmax[n,c,oh,ow] = index of the first maximum within its input plane (h*w),
 * or -1 when a window holds only padding. */
void REF(maxpool_forward)(real *out, int32_t *argmax, const real *in, const conv_geom *g);
void REF(maxpool_backward)(real *din, const real *dout, const int32_t *argmax, const conv_geom *g);

/* out[n,c] = mean of in[n,c,hw] */
void REF(avgpool_forward)(real *out, const real *in, int n, int c, int hw);
void REF(avgpool_backward)(real *din, const real *dout, int n, int c, int hw);

/* out[n,count,hw] = in[n, start:start+count, hw] with in [n,c,hw] */
void REF(slice_forward)(real *out, const real *in, int n, int c, int hw, int start, int count);
void REF(slice_backward)(real *din, const real *dout, int n, int c, int hw, int start, int count);
/* out[n,ca+cb,hw] = channels of a[n,ca,hw] then b[n,cb,hw] */
void REF(concat_forward)(real *out, const real *a, const real *b, int n, int ca, int cb, int hw);
void REF(concat_backward)(real *da, real *db, const real *dout, int n, int ca, int cb, int hw);
/* ShuffleNet: out = in.view(n, groups, c/groups, hw).transpose(1, 2), so input
 * channel i*(c/groups) + j goes to output channel j*groups + i. */
void REF(shuffle_forward)(real *out, const real *in, int n, int c, int hw, int groups);
void REF(shuffle_backward)(real *din, const real *dout, int n, int c, int hw, int groups);

/* out[n,k] = in[n,f] weight[k,f]^T + bias[k] (bias may be NULL) */
void REF(linear_forward)(real *out, const real *in, const real *weight, const real *bias, int n, int f, int k);
void REF(linear_backward)(real *din, real *dweight, real *dbias, const real *dout, const real *in,
                          const real *weight, int n, int f, int k);
/* out[n,k] = sigma[0] * <in_n / |in_n|, weight_k / |weight_k|> (norms floored at CPU_NORM_EPS) */
void REF(cosine_linear_forward)(real *out, real *save, const real *in, const real *weight, const real *sigma, int n,
                                int f, int k);
void REF(cosine_linear_backward)(real *din, real *dweight, real *dsigma, const real *dout, const real *save,
                                 const real *sigma, int n, int f, int k);
/* out[n,f] = in_n / max(|in_n|, eps) */
void REF(l2norm_forward)(real *out, real *save, const real *in, int n, int f);
void REF(l2norm_backward)(real *din, const real *dout, const real *out, const real *save, int n, int f);

/* loss[0] = mean over rows of -log softmax(logits[n,k])[labels[n]]; labels are
 * class ids stored as reals, already checked to lie in [0, k). */
void REF(softmax_xent_forward)(real *loss, real *save, const real *logits, const real *labels, int n, int k);
void REF(softmax_xent_backward)(real *dlogits, real dloss, const real *save, const real *labels, int n, int k);
/* loss[0] = mean over rows of 1 - cos(a_n, b_n), a, b [n,f]; only a gets a gradient. */
void REF(cosine_embed_forward)(real *loss, real *save, const real *a, const real *b, int n, int f);
void REF(cosine_embed_backward)(real *da, real dloss, const real *save, const real *a, const real *b, int n, int f);

/* PyTorch's SGD on count values (backend.h): v = momentum v + (g + wd p);
 * p -= lr v, or with Nesterov p -= lr (g + wd p + momentum v). */
void REF(sgd_update)(real *param, const real *grad, real *mom, int64_t count, float lr, float momentum,
                     float weight_decay, int nesterov);
