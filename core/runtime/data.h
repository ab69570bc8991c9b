/* data.h: image data sets on disk, and the batches (augmented, in a background thread) that training reads. */
#ifndef CILSCALE_DATA_H
#define CILSCALE_DATA_H

#include <stdint.h>

#include "cilscale/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A whole split in memory, 8-bit, CHW per image, every image the same size. */
typedef struct cs_dataset {
    int n;           /* images */
    int c, h, w;     /* channels (1 or 3), height, width */
    int n_classes;   /* labels are 0 .. n_classes-1 */
    uint8_t *pixels; /* n * c * h * w */
    int *labels;     /* n */
    char **class_names; /* n_classes names (folder names, or "0", "1", ...) */
} cs_dataset;

typedef enum cs_data_format {
    CS_DATA_IDX = 0,   /* MNIST / Fashion-MNIST: DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] */
    CS_DATA_CIFAR10,   /* DIR/data_batch_{1..5}.bin, DIR/test_batch.bin */
    CS_DATA_CIFAR100,  /* DIR/train.bin, DIR/test.bin (fine labels) */
    CS_DATA_FOLDER,    /* DIR/{train,test}/CLASS/NAME.{png,jpg,jpeg}, resized to size x size */
    CS_DATA_LIST,      /* DIR/{train,test}.lst: lines "relative/path label" (the AdvisIL authors' image
                          lists; a first line "ROOT -1" sets the paths' folder, else DIR), labels
                          0 .. K-1; resized like folder */
} cs_data_format;

/* "idx", "cifar10", "cifar100", "folder", "list"; parse returns CS_ERR_ARG for
 * another name, name returns NULL for another value. */
int cs_data_format_parse(const char *s, cs_data_format *out);
const char *cs_data_format_name(cs_data_format f);

/* Loads the train (train = 1) or test split. For CS_DATA_FOLDER and CS_DATA_LIST, size is the
 * side images are resized to (0 = 32) and channels 1 or 3 (0 = 3); others
 * ignore both. Every problem is one line naming the file: a missing or
 * truncated file, a bad magic number, an image / label count mismatch, a
 * label out of range, an image that does not decode, an empty class folder,
 * no class folders. On failure *out is NULL and nothing is left allocated.
 *
 * IDX data sets have 10 classes (MNIST, Fashion-MNIST), 1 channel. CIFAR
 * class names come from batches.meta.txt / fine_label_names.txt when the
 * folder has them. Folder class names are the sorted folder names of
 * DIR/train (for both splits, so a test split numbers its classes as
 * training does); images are decoded to RGB (alpha dropped), made gray with
 * PIL's luma weights when channels = 1, and resized as cs_augment's resize. */
int cs_dataset_load(cs_data_format fmt, const char *dir, int train, int size, int channels, cs_dataset **out,
                    cs_error *err);
void cs_dataset_free(cs_dataset *d);

/* What happens to an image on its way into a batch. */
typedef struct cs_augment {
    int out_h, out_w;   /* resize to this (bilinear, half-pixel centres; antialiased when
                           shrinking, as PIL) first; 0 = keep that side */
    int crop_pad;       /* random crop after zero padding by this many pixels (0 = none) */
    int flip;           /* random horizontal flip */
    float mean[3], std[3]; /* per channel, on [0, 1] pixel values: x = (p/255 - mean) / std;
                              a std of 0 counts as 1, so a zeroed cs_augment gives p/255.
                              Padding pixels are p = 0 before normalising. */
} cs_augment;

/* Batches over a list of image indices, one epoch at a time. A background
 * thread prepares the next batch while the caller trains on this one.
 * label_map (may be NULL; d->n_classes entries) maps a data-set label to the
 * label the model sees; an index whose label maps below 0 is refused here.
 * With train = 1 each epoch is a shuffle of indices drawn from (seed, epoch)
 * and each batch's crops and flips from (seed, epoch, batch), so the same
 * seed gives the same batches whatever the thread timing. With train = 0 the
 * order is indices' own and there is no random crop or flip (resize and
 * normalisation still apply). Order per image: resize, crop, flip, normalise.
 * indices and label_map are copied; d must outlive the batcher. Returns NULL
 * (and fills err) on a bad argument. */
typedef struct cs_batcher cs_batcher;

cs_batcher *cs_batcher_new(const cs_dataset *d, const int *indices, int n_indices, int batch,
                           const cs_augment *aug, int train, const int *label_map, uint64_t seed, cs_error *err);
/* The same batches, of which this batcher hands out only rank's share of
 * each (rows [lo, hi) as cs_dp_share splits them; the draws of every row
 * are made all the same, so the shares put together are the batch one rank
 * gets). A last batch with fewer images than world ranks is left out by
 * every rank. world = 1 is cs_batcher_new. */
cs_batcher *cs_batcher_new_shard(const cs_dataset *d, const int *indices, int n_indices, int batch,
                                 const cs_augment *aug, int train, const int *label_map, uint64_t seed, int rank,
                                 int world, cs_error *err);
/* Rows of the whole batch the last cs_batcher_next handed out a share of. */
int cs_batcher_global_rows(const cs_batcher *b);
/* Fills images [batch, c, out_h, out_w] and labels [batch] (as floats) and
 * returns the number of rows (the last batch of an epoch may be short), or 0
 * at the end of the epoch; the next call starts the next epoch. Either
 * output may be NULL to skip it. */
int cs_batcher_next(cs_batcher *b, float *images, float *labels);
/* Output image geometry. */
void cs_batcher_shape(const cs_batcher *b, int *c, int *h, int *w);
int cs_batcher_batches_per_epoch(const cs_batcher *b);
/* Stops the thread (at any point of an epoch) and frees; NULL is fine. */
void cs_batcher_free(cs_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
