/* checkpoint.h: saving and loading a graph's parameters and buffers as safetensors files.
 *
 * The file is Hugging Face's safetensors format
 * (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "layer1.0.conv1.weight": {"dtype": "F32", "shape": [64,64,3,3], "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8, then the tensors' little-endian bytes,
 * contiguous, offsets relative to the start of that byte buffer.
 *
 * Every PARAM and BUFFER tensor of the graph is stored under its name (which
 * is torchvision's state_dict name), as F32. Every batch-norm layer also gets
 * "<layer>.num_batches_tracked", an I64 scalar (shape []) of value 0, so the
 * file loads into the matching torchvision model with
 * load_state_dict(strict=True); the value does not matter there, as
 * torchvision's batch norms use momentum 0.1 (num_batches_tracked only feeds
 * momentum=None). As the reference writer does, tensors are laid out by
 * descending dtype alignment (I64 first), then by name, and the metadata
 * goes first in the header.
 */
#ifndef CILSCALE_CHECKPOINT_H
#define CILSCALE_CHECKPOINT_H

#include "cilscale/error.h"
#include "cilscale/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a load found; the metadata's first CS_CKPT_META_MAX pairs are copied
 * (a key or value longer than its buffer is cut short). */
#define CS_CKPT_META_MAX 32
#define CS_CKPT_META_KEY 64
#define CS_CKPT_META_VALUE 512

typedef struct cs_checkpoint_info {
    int n_file;     /* tensors in the file */
    int n_loaded;   /* tensors of the graph filled from it (in part, for CS_CKPT_GROW_ROWS) */
    int n_grown;    /* of those, loaded into a graph tensor with more rows (CS_CKPT_GROW_ROWS) */
    int n_ignored;  /* tensors in the file the graph does not have (a batch norm's
                       num_batches_tracked does not count: the graph has no slot for it) */
    int n_missing;  /* tensors of the graph left as they were (CS_CKPT_ALLOW_MISSING) */
    char first_missing[CS_NAME_MAX]; /* the first of those, or "" */
    int n_meta;     /* metadata pairs in the file (only the first CS_CKPT_META_MAX are copied) */
    char meta_key[CS_CKPT_META_MAX][CS_CKPT_META_KEY];
    char meta_value[CS_CKPT_META_MAX][CS_CKPT_META_VALUE];
} cs_checkpoint_info;

/* Writes every PARAM (from params, g->n_params floats) and BUFFER (from
 * buffers, g->n_buffers floats; may be NULL when g has none) of g to path,
 * with metadata meta_kv = {"key", "value", ..., NULL} (NULL for none; keys
 * must be distinct and not empty, values are strings, as the format wants).
 * Writes path.tmp in the same folder, fsyncs it, then renames it over path,
 * so path always holds either the old checkpoint or the complete new one;
 * on failure path.tmp is removed. Returns 0 or CS_ERR_IO / CS_ERR_ARG /
 * CS_ERR_NOMEM with err naming the file. Two saves to one path at once are
 * not supported (they share path.tmp). */
int cs_checkpoint_save(const char *path, const cs_graph *g, const float *params, const float *buffers,
                       const char *const *meta_kv, cs_error *err);

/* Fills every PARAM and BUFFER of g, bit for bit, from the tensor of the same
 * name in path. Fails (CS_ERR_IO, err one line naming the file and, where one
 * is at fault, the tensor) when the file is not a safetensors file, is
 * truncated, has an absurd header length (over 100,000,000 bytes, the
 * format's limit) or bad JSON, or when a tensor of the graph is missing from
 * it, is not F32 or has another shape (the message gives both). Tensors in the
 * file the graph does not have are ignored (counted in info). The file is
 * checked in full before anything is written to params and buffers, so a
 * failure leaves them unchanged (except for a read error after the checks).
 * info may be NULL. */
int cs_checkpoint_load(const char *path, const cs_graph *g, float *params, float *buffers,
                       cs_checkpoint_info *info, cs_error *err);

/* Flags for cs_checkpoint_load_ex, to load part of a network: a backbone into
 * a graph whose classifier differs (class-incremental learning grows it). */
enum {
    /* A graph tensor missing from the file, or stored with another shape
     * (that CS_CKPT_GROW_ROWS does not cover), keeps its values; counted in
     * info->n_missing. A wrong dtype is still an error. */
    CS_CKPT_ALLOW_MISSING = 1u << 0,
    /* A classifier's weight or bias (the inputs of a linear or cosine-linear
     * node) with more rows than the file's (dim 0 larger, the other dims
     * equal: fc.weight [K_old,F] into [K_new,F], fc.bias [K_old] into
     * [K_new]) gets the file's rows first; its other rows keep their values.
     * Other tensors must match (or CS_CKPT_ALLOW_MISSING skip them). */
    CS_CKPT_GROW_ROWS = 1u << 1,
};

/* cs_checkpoint_load with flags (0 = cs_checkpoint_load). */
int cs_checkpoint_load_ex(const char *path, const cs_graph *g, float *params, float *buffers, unsigned flags,
                          cs_checkpoint_info *info, cs_error *err);

/* The value of metadata key in info (as copied), or NULL. */
const char *cs_checkpoint_meta(const cs_checkpoint_info *info, const char *key);

#ifdef __cplusplus
}
#endif
#endif
