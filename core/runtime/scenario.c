/* scenario.c: class order and state splits of a class-incremental run. */
#include <stdlib.h>
#include <string.h>

#include "cilscale/rng.h"
#include "runtime/scenario.h"

int cs_scenario_make(int n_classes, int n_states, int first_count, const int *order, uint64_t seed, cs_scenario *s,
                     cs_error *err)
{
    memset(s, 0, sizeof *s);
    if (n_classes < 1)
        return cs_error_set(err, CS_ERR_ARG, "the data set has no classes");
    if (n_states < 1 || n_states > CS_SCENARIO_MAX_STATES)
        return cs_error_set(err, CS_ERR_ARG, "states %d: expected 1 to %d", n_states, CS_SCENARIO_MAX_STATES);
    if (first_count < 0 || first_count > n_classes)
        return cs_error_set(err, CS_ERR_ARG, "first state of %d classes: expected 0 to %d", first_count, n_classes);
    int rest = first_count ? n_classes - first_count : n_classes;
    int rest_states = first_count ? n_states - 1 : n_states;
    if ((first_count && n_states == 1 && first_count != n_classes) || rest_states > rest ||
        (rest_states == 0 && rest > 0))
        return cs_error_set(err, CS_ERR_ARG,
                            "%d states cannot split %d classes%s: each state needs at least one class", n_states,
                            n_classes, first_count ? " after the first state's" : "");
    s->order = malloc(sizeof(int) * (size_t)n_classes);
    if (!s->order)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    if (order) {
        char *seen = calloc((size_t)n_classes, 1);
        if (!seen) {
            cs_scenario_free(s);
            return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < n_classes; i++) {
            if (order[i] < 0 || order[i] >= n_classes || seen[order[i]]) {
                int bad = order[i];
                free(seen);
                cs_scenario_free(s);
                return cs_error_set(err, CS_ERR_ARG,
                                    "class order: entry %d is %d; expected each class 0..%d exactly once", i, bad,
                                    n_classes - 1);
            }
            seen[order[i]] = 1;
            s->order[i] = order[i];
        }
        free(seen);
    } else {
        for (int i = 0; i < n_classes; i++)
            s->order[i] = i;
        cs_rng r;
        cs_rng_seed(&r, seed, 0x5ce7a210); /* the class-order stream */
        cs_rng_shuffle(&r, s->order, n_classes);
    }
    s->n_classes = n_classes;
    s->n_states = n_states;
    int at = 0, st = 0;
    if (first_count) {
        s->first[0] = 0;
        s->count[0] = first_count;
        at = first_count;
        st = 1;
    }
    for (int i = 0; st < n_states; st++, i++) {
        /* the earlier states take the remainder, one class each */
        int c = rest / rest_states + (i < rest % rest_states);
        s->first[st] = at;
        s->count[st] = c;
        at += c;
    }
    return CS_OK;
}

void cs_scenario_free(cs_scenario *s)
{
    free(s->order);
    s->order = NULL;
}

void cs_scenario_label_map(const cs_scenario *s, int state, int new_only, int *label_map)
{
    for (int i = 0; i < s->n_classes; i++)
        label_map[i] = -1;
    int lo = new_only ? s->first[state] : 0, hi = s->first[state] + s->count[state];
    for (int l = lo; l < hi; l++)
        label_map[s->order[l]] = l;
}

int cs_scenario_indices(const cs_dataset *d, const int *label_map, int per_class_limit, int **out)
{
    int *taken = calloc((size_t)d->n_classes, sizeof(int));
    int *v = malloc(sizeof(int) * (size_t)(d->n > 0 ? d->n : 1));
    int n = 0;
    if (!taken || !v) {
        free(taken);
        free(v);
        *out = NULL;
        return 0;
    }
    for (int i = 0; i < d->n; i++) {
        int c = d->labels[i];
        if (label_map[c] < 0 || (per_class_limit && taken[c] >= per_class_limit))
            continue;
        taken[c]++;
        v[n++] = i;
    }
    free(taken);
    *out = v;
    return n;
}
