/* rng.h: the one random generator behind class order, initialisation, shuffling and augmentation. */
#ifndef CILSCALE_RNG_H
#define CILSCALE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* xoshiro256** (Blackman & Vigna): fast, small state, and the same stream on
 * every platform, so a seed reproduces a run anywhere. */
typedef struct cs_rng {
    uint64_t s[4];
} cs_rng;

/* Seeds from (seed, stream): distinct streams are independent, so each use
 * (init, shuffle, augment, ...) takes its own and cannot shift the others. */
void cs_rng_seed(cs_rng *r, uint64_t seed, uint64_t stream);
uint64_t cs_rng_u64(cs_rng *r);
double cs_rng_uniform(cs_rng *r);         /* [0, 1) */
uint32_t cs_rng_below(cs_rng *r, uint32_t n); /* [0, n), unbiased */
double cs_rng_normal(cs_rng *r);          /* standard normal */
void cs_rng_shuffle(cs_rng *r, int *v, int n); /* Fisher-Yates */

#ifdef __cplusplus
}
#endif
#endif
