/* scenario.h: which classes arrive in which state, and which images each state sees. */
#ifndef CILSCALE_SCENARIO_H
#define CILSCALE_SCENARIO_H

#include <stdint.h>

#include "runtime/data.h"
#include "cilscale/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CS_SCENARIO_MAX_STATES 64

/* Model label i is data-set class order[i]; state s adds the model labels
 * first[s] .. first[s] + count[s] - 1. */
typedef struct cs_scenario {
    int n_classes;
    int n_states;
    int *order;                          /* n_classes entries */
    int first[CS_SCENARIO_MAX_STATES];
    int count[CS_SCENARIO_MAX_STATES];
} cs_scenario;

/* n_states states over n_classes classes: with first_count = 0, as equal as
 * possible (B = P; the first states take the remainder); otherwise
 * first_count classes first, then the rest split equally over the other
 * states. order (n_classes data-set classes, each once) may be NULL: then
 * it is a permutation drawn from seed. */
int cs_scenario_make(int n_classes, int n_states, int first_count, const int *order, uint64_t seed, cs_scenario *s,
                     cs_error *err);
void cs_scenario_free(cs_scenario *s);

/* label_map[data-set class] = model label for the classes seen up to and
 * including state s (new_only: only the classes state s adds), else -1.
 * label_map has n_classes entries. */
void cs_scenario_label_map(const cs_scenario *s, int state, int new_only, int *label_map);

/* The indices of d's images whose class is mapped by label_map, at most
 * per_class_limit of each class (0 = all), in data-set order. Returns the
 * count; *out is malloc'ed. */
int cs_scenario_indices(const cs_dataset *d, const int *label_map, int per_class_limit, int **out);

#ifdef __cplusplus
}
#endif
#endif
