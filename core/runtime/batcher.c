/* batcher.c: shuffled, augmented float NCHW batches, prepared one ahead by a background thread. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "cilscale/rng.h"
#include "runtime/image.h"

#define MAX_OUT_SIDE 16384
#define MAX_CROP_PAD 4096

/* RNG streams, so that every draw is a function of (seed, epoch, batch) and
 * never of how far a shared stream has run: the order of an epoch, and the
 * crops and flips of one batch. The top nibble keeps them apart from the
 * small stream numbers other users of the seed take. */
#define STREAM_SHUFFLE 0xB000000000000000ULL
#define STREAM_AUGMENT 0xA000000000000000ULL

typedef struct slot {
    float *images;
    float *labels;
    int rows, global_rows;
    int full;
} slot;

struct cs_batcher {
    const cs_dataset *d;
    int *indices, n, batch, train, n_batches;
    int *label_map; /* copy, d->n_classes entries, or NULL */
    uint64_t seed;
    int rank, world; /* the rows of each batch this batcher hands out (cs_batcher_new_shard) */
    int last_global;
    int c, oh, ow, pad, flip;
    double scale[3], shift[3]; /* x = p * scale + shift = (p/255 - mean) / std */
    size_t image_floats;       /* c * oh * ow */

    /* worker only */
    int resize;
    cs_resizer rs;
    float *work;     /* c * oh * ow: one image after the resize, 0..255 */
    int *perm;       /* this epoch's order */
    uint64_t p_epoch;
    int p_batch, p_slot;

    /* consumer only */
    int c_batch, c_slot;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int sync_init, thread_started, stop;
    slot slots[2];
};

static void make_perm(cs_batcher *b, uint64_t epoch)
{
    memcpy(b->perm, b->indices, sizeof(int) * (size_t)b->n);
    if (b->train) {
        cs_rng r;
        cs_rng_seed(&r, b->seed, STREAM_SHUFFLE | (epoch & 0x0FFFFFFFFFFFFFFFULL));
        cs_rng_shuffle(&r, b->perm, b->n);
    }
}

static void augment_one(cs_batcher *b, int idx, int dy, int dx, int flip, float *out)
{
    const cs_dataset *d = b->d;
    size_t in_plane = (size_t)d->h * (size_t)d->w, out_plane = (size_t)b->oh * (size_t)b->ow;
    const uint8_t *src = d->pixels + (size_t)idx * (size_t)d->c * in_plane;
    for (int ch = 0; ch < b->c; ch++) {
        float *w = b->work + (size_t)ch * out_plane;
        if (b->resize)
            cs_resize_plane_u8(&b->rs, src + (size_t)ch * in_plane, (size_t)d->w, 1, w);
        else
            for (size_t i = 0; i < out_plane; i++)
                w[i] = src[(size_t)ch * in_plane + i];
    }
    /* Crop (zero padding, offsets dy, dx in [0, 2 pad]) then flip: output
     * (y, x) is padded (y + dy, x' + dx) with x' = ow - 1 - x when flipped. */
    for (int ch = 0; ch < b->c; ch++) {
        const float *w = b->work + (size_t)ch * out_plane;
        float *o = out + (size_t)ch * out_plane;
        double scale = b->scale[ch], shift = b->shift[ch];
        for (int y = 0; y < b->oh; y++) {
            int sy = y + dy - b->pad;
            for (int x = 0; x < b->ow; x++) {
                int sx = (flip ? b->ow - 1 - x : x) + dx - b->pad;
                double p = (sy >= 0 && sy < b->oh && sx >= 0 && sx < b->ow) ? w[(size_t)sy * b->ow + sx] : 0.0;
                o[(size_t)y * b->ow + x] = (float)(p * scale + shift);
            }
        }
    }
}

static void fill(cs_batcher *b, slot *s, uint64_t epoch, int bi)
{
    cs_rng r;
    cs_rng_seed(&r, b->seed, STREAM_AUGMENT | (epoch & 0x0FFFFFFFULL) << 32 | (uint32_t)bi);
    int start = bi * b->batch;
    int rows = b->n - start < b->batch ? b->n - start : b->batch;
    /* this rank's rows: every row's draws are made, so each rank's share of
     * the batch is what one rank would have made of those rows */
    const int q = rows / b->world, e = rows % b->world;
    const int lo = b->rank * q + (b->rank < e ? b->rank : e), hi = lo + q + (b->rank < e);
    for (int i = 0; i < rows; i++) {
        int idx = b->perm[start + i];
        int dy = b->pad, dx = b->pad, flip = 0; /* centre, unflipped: evaluation */
        if (b->train) { /* three draws per image whatever is enabled, so options do not shift each other */
            uint32_t span = 2 * (uint32_t)b->pad + 1;
            dy = (int)cs_rng_below(&r, span);
            dx = (int)cs_rng_below(&r, span);
            flip = (int)cs_rng_below(&r, 2) & b->flip;
        }
        if (i < lo || i >= hi)
            continue;
        augment_one(b, idx, dy, dx, flip, s->images + (size_t)(i - lo) * b->image_floats);
        int label = b->d->labels[idx];
        s->labels[i - lo] = (float)(b->label_map ? b->label_map[label] : label);
    }
    s->rows = hi - lo;
    s->global_rows = rows;
}

static void *worker(void *arg)
{
    cs_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        slot *s = &b->slots[b->p_slot];
        while (!b->stop && s->full)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stop)
            break;
        pthread_mutex_unlock(&b->mu);
        if (b->p_batch == 0)
            make_perm(b, b->p_epoch);
        fill(b, s, b->p_epoch, b->p_batch);
        pthread_mutex_lock(&b->mu);
        s->full = 1;
        b->p_slot ^= 1;
        if (++b->p_batch == b->n_batches) {
            b->p_batch = 0;
            b->p_epoch++;
        }
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static int bad_float(float v) { return !isfinite(v); }

cs_batcher *cs_batcher_new(const cs_dataset *d, const int *indices, int n_indices, int batch,
                           const cs_augment *aug, int train, const int *label_map, uint64_t seed, cs_error *err)
{
    return cs_batcher_new_shard(d, indices, n_indices, batch, aug, train, label_map, seed, 0, 1, err);
}

cs_batcher *cs_batcher_new_shard(const cs_dataset *d, const int *indices, int n_indices, int batch,
                                 const cs_augment *aug, int train, const int *label_map, uint64_t seed, int rank,
                                 int world, cs_error *err)
{
    static const cs_augment none = {.std = {1, 1, 1}};
    if (!aug)
        aug = &none;
    if (!d || d->n <= 0 || !d->pixels || !d->labels) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: the data set is empty");
        return NULL;
    }
    if (d->c < 1 || d->c > 3 || d->h < 1 || d->w < 1) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: data set images are %dx%dx%d: expected 1 to 3 channels",
                     d->c, d->h, d->w);
        return NULL;
    }
    if (!indices || n_indices <= 0) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: no images to batch (n_indices = %d)", n_indices);
        return NULL;
    }
    if (batch <= 0) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: batch size %d: expected at least 1", batch);
        return NULL;
    }
    if (world < 1 || rank < 0 || rank >= world) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: rank %d of %d", rank, world);
        return NULL;
    }
    if (batch < world || n_indices < world) {
        cs_error_set(err, CS_ERR_ARG, "%d ranks cannot share batches of %d out of %d images: give each rank at least "
                     "one image (fewer ranks, or a larger batch)", world, batch, n_indices);
        return NULL;
    }
    if (aug->out_h < 0 || aug->out_w < 0 || aug->out_h > MAX_OUT_SIDE || aug->out_w > MAX_OUT_SIDE) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: output size %dx%d: expected 0 (keep) or 1 .. %d", aug->out_h,
                     aug->out_w, MAX_OUT_SIDE);
        return NULL;
    }
    if (aug->crop_pad < 0 || aug->crop_pad > MAX_CROP_PAD) {
        cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: crop_pad %d: expected 0 .. %d", aug->crop_pad, MAX_CROP_PAD);
        return NULL;
    }
    for (int ch = 0; ch < d->c; ch++)
        if (bad_float(aug->mean[ch]) || bad_float(aug->std[ch]) || aug->std[ch] < 0) {
            cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: channel %d: mean %g, std %g: expected finite, std >= 0", ch,
                         (double)aug->mean[ch], (double)aug->std[ch]);
            return NULL;
        }
    for (int i = 0; i < n_indices; i++) {
        int idx = indices[i];
        if (idx < 0 || idx >= d->n) {
            cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: indices[%d] = %d is outside the data set (0 .. %d)", i, idx,
                         d->n - 1);
            return NULL;
        }
        int label = d->labels[idx];
        if (label < 0 || label >= d->n_classes) {
            cs_error_set(err, CS_ERR_ARG, "cs_batcher_new: image %d has label %d, outside the data set's 0 .. %d", idx,
                         label, d->n_classes - 1);
            return NULL;
        }
        if (label_map && label_map[label] < 0) {
            cs_error_set(err, CS_ERR_ARG,
                         "cs_batcher_new: indices[%d] = %d is an image of class %d (%s), which label_map maps to %d: "
                         "only mapped classes may be batched",
                         i, idx, label, d->class_names && d->class_names[label] ? d->class_names[label] : "?",
                         label_map[label]);
            return NULL;
        }
    }

    cs_batcher *b = calloc(1, sizeof *b);
    if (!b) {
        cs_error_set(err, CS_ERR_NOMEM, "cs_batcher_new: out of memory");
        return NULL;
    }
    b->d = d;
    b->n = n_indices;
    b->batch = batch;
    b->train = train != 0;
    b->n_batches = (int)(((long long)n_indices + batch - 1) / batch);
    b->rank = rank;
    b->world = world;
    if (n_indices % batch && n_indices % batch < world)
        b->n_batches--; /* a last batch with fewer images than ranks: every rank leaves it out */
    b->seed = seed;
    b->c = d->c;
    b->oh = aug->out_h ? aug->out_h : d->h;
    b->ow = aug->out_w ? aug->out_w : d->w;
    b->pad = aug->crop_pad;
    b->flip = aug->flip != 0;
    for (int ch = 0; ch < b->c; ch++) {
        double std = aug->std[ch] == 0 ? 1.0 : aug->std[ch];
        b->scale[ch] = 1.0 / (255.0 * std);
        b->shift[ch] = -(double)aug->mean[ch] / std;
    }
    b->image_floats = (size_t)b->c * (size_t)b->oh * (size_t)b->ow;
    b->resize = b->oh != d->h || b->ow != d->w;
    b->indices = malloc(sizeof(int) * (size_t)n_indices);
    b->perm = malloc(sizeof(int) * (size_t)n_indices);
    b->work = malloc(sizeof(float) * b->image_floats);
    int ok = b->indices && b->perm && b->work;
    if (ok) {
        memcpy(b->indices, indices, sizeof(int) * (size_t)n_indices);
        if (label_map) {
            b->label_map = malloc(sizeof(int) * (size_t)d->n_classes);
            ok = b->label_map != NULL;
            if (ok)
                memcpy(b->label_map, label_map, sizeof(int) * (size_t)d->n_classes);
        }
    }
    for (int i = 0; ok && i < 2; i++) {
        b->slots[i].images = malloc(sizeof(float) * b->image_floats * (size_t)batch);
        b->slots[i].labels = malloc(sizeof(float) * (size_t)batch);
        ok = b->slots[i].images && b->slots[i].labels;
    }
    if (ok && b->resize)
        ok = cs_resizer_init(&b->rs, d->h, d->w, b->oh, b->ow) == CS_OK;
    if (!ok) {
        cs_error_set(err, CS_ERR_NOMEM, "cs_batcher_new: out of memory for %d x %dx%dx%d batches", batch, b->c, b->oh,
                     b->ow);
        cs_batcher_free(b);
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->sync_init = 1;
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        cs_error_set(err, CS_ERR, "cs_batcher_new: cannot start the batch thread");
        cs_batcher_free(b);
        return NULL;
    }
    b->thread_started = 1;
    return b;
}

int cs_batcher_next(cs_batcher *b, float *images, float *labels)
{
    if (!b)
        return 0;
    if (b->c_batch == b->n_batches) {
        b->c_batch = 0;
        return 0;
    }
    slot *s = &b->slots[b->c_slot];
    pthread_mutex_lock(&b->mu);
    while (!s->full)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    int rows = s->rows;
    b->last_global = s->global_rows;
    if (images)
        memcpy(images, s->images, sizeof(float) * b->image_floats * (size_t)rows);
    if (labels)
        memcpy(labels, s->labels, sizeof(float) * (size_t)rows);
    pthread_mutex_lock(&b->mu);
    s->full = 0;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    b->c_slot ^= 1;
    b->c_batch++;
    return rows;
}

void cs_batcher_shape(const cs_batcher *b, int *c, int *h, int *w)
{
    if (c)
        *c = b ? b->c : 0;
    if (h)
        *h = b ? b->oh : 0;
    if (w)
        *w = b ? b->ow : 0;
}

int cs_batcher_batches_per_epoch(const cs_batcher *b) { return b ? b->n_batches : 0; }

int cs_batcher_global_rows(const cs_batcher *b) { return b ? b->last_global : 0; }

void cs_batcher_free(cs_batcher *b)
{
    if (!b)
        return;
    if (b->thread_started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    if (b->sync_init) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
    }
    if (b->resize)
        cs_resizer_free(&b->rs);
    for (int i = 0; i < 2; i++) {
        free(b->slots[i].images);
        free(b->slots[i].labels);
    }
    free(b->indices);
    free(b->perm);
    free(b->work);
    free(b->label_map);
    free(b);
}
