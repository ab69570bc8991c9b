/* experiment.c: reading, overriding and writing experiment files, checked against one table of keys. */
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/experiment.h"
#include "cilscale/policy.h"

typedef enum { K_STR, K_INT, K_DBL, K_BOOL, K_BUDGET, K_ORDER, K_SEED, K_DEPTHS } key_type;

typedef struct key {
    const char *path; /* "group.key" or "key" */
    key_type type;
    size_t offset, size; /* size: string buffer size */
    double min, max;
    const char *help;
} key;

#define S(p, f, h) {p, K_STR, offsetof(cs_experiment, f), sizeof(((cs_experiment *)0)->f), 0, 0, h}
#define I(p, f, lo, hi, h) {p, K_INT, offsetof(cs_experiment, f), 0, lo, hi, h}
#define D(p, f, lo, hi, h) {p, K_DBL, offsetof(cs_experiment, f), 0, lo, hi, h}
#define B(p, f, h) {p, K_BOOL, offsetof(cs_experiment, f), 0, 0, 1, h}

static const key keys[] = {
    S("data.format", data_format, "idx, cifar10, cifar100, folder or list"),
    S("data.path", data_path, "the data set's folder"),
    I("data.image_size", image_size, 8, 4096, "folder and list formats: side images are resized to"),
    I("data.train_per_class", train_per_class, 0, 1 << 30, "training images per class (0 = all)"),
    I("data.test_per_class", test_per_class, 0, 1 << 30, "test images per class (0 = all)"),
    I("data.max_pixels", max_pixels, 0, 1 << 30, "folder and list formats: the most pixels one image may have (0 = 8192 x 8192)"),
    I("scenario.states", states, 1, 64, "number of states"),
    I("scenario.first", first, 0, 1 << 20, "classes in the first state (0 = equal split)"),
    {"scenario.order", K_ORDER, 0, 0, 0, 0, "\"seed\" or a list of class ids"},
    S("model.arch", arch, "architecture plugin"),
    S("model.policy", policy, "scaling policy plugin"),
    {"model.budget", K_BUDGET, 0, 0, 0, 0, "parameter budget: 1M, 2.5M, 1500k, 3e6, 1000000"},
    D("model.width", width, 1e-3, 64, "width coefficient (instead of a budget and policy)"),
    D("model.depth", depth, 1e-3, 64, "depth coefficient (instead of a budget and policy)"),
    {"model.depths", K_DEPTHS, 0, 0, 0, 0, "blocks per stage, [1, 1, 2, 2] or \"1,1,2,2\" (instead of depth)"},
    S("model.stem", stem, "imagenet, small or auto (small for images up to 64 px)"),
    S("model.convention", convention, "scaling rules: authors (the AdvisIL code's) or cilscale-0.1"),
    S("model.count", count, "what the budget counts: trained, authors-100 or authors-1000"),
    S("model.resolution", resolution, "policy (the policy's input resolution) or keep (the data's)"),
    S("cil.algorithm", cil, "CIL algorithm plugin"),
    I("train.epochs", epochs, 1, 100000, "epochs per incremental state"),
    I("train.first_epochs", first_epochs, 0, 100000, "epochs of the first state (0 = epochs)"),
    I("train.batch", batch, 1, 65536, "batch size"),
    D("train.lr", lr, 1e-9, 1e3, "learning rate of incremental states"),
    D("train.first_lr", first_lr, 0, 1e3, "learning rate of the first state (0 = lr)"),
    D("train.momentum", momentum, 0, 0.999999, "SGD momentum"),
    D("train.weight_decay", weight_decay, 0, 1, "weight decay"),
    S("train.schedule", schedule, "cosine, constant or multistep:E1,E2"),
    B("train.nesterov", nesterov, "Nesterov momentum"),
    B("train.augment", augment, "random crop and horizontal flip"),
    S("backend.name", backend, "compute backend plugin"),
    S("backend.device", device, "backend device string"),
    {"seed", K_SEED, offsetof(cs_experiment, seed), 0, 0, 0, "drives class order, init, shuffling, augmentation"},
    S("out", out, "output folder"),
};
#define N_KEYS (sizeof keys / sizeof keys[0])

void cs_experiment_defaults(cs_experiment *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->data_format, sizeof e->data_format, "idx");
    snprintf(e->data_path, sizeof e->data_path, "/usr/share/datasets/fashion-mnist");
    e->image_size = 32;
    e->states = 5;
    snprintf(e->arch, sizeof e->arch, "resnet18");
    snprintf(e->policy, sizeof e->policy, "psi");
    snprintf(e->stem, sizeof e->stem, "auto");
    e->budget = 1000000;
    e->width = e->depth = 1;
    snprintf(e->convention, sizeof e->convention, "authors");
    snprintf(e->count, sizeof e->count, "trained");
    snprintf(e->resolution, sizeof e->resolution, "policy");
    snprintf(e->cil, sizeof e->cil, "lucir");
    e->epochs = 10;
    e->batch = 128;
    e->lr = 0.1;
    e->momentum = 0.9;
    e->weight_decay = 1e-4;
    snprintf(e->schedule, sizeof e->schedule, "cosine");
    e->augment = 1;
    snprintf(e->backend, sizeof e->backend, "cpu");
    e->seed = 1;
    snprintf(e->out, sizeof e->out, "runs/run");
}

static const key *find_key(const char *path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].path, path))
            return &keys[i];
    return NULL;
}

/* "data: format, path, ..." for messages */
static void known_in(const char *group, char *buf, size_t size)
{
    size_t used = 0, glen = group ? strlen(group) : 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS && used < size; i++) {
        const char *dot = strchr(keys[i].path, '.');
        const char *name;
        if (group) {
            if (!dot || (size_t)(dot - keys[i].path) != glen || strncmp(keys[i].path, group, glen))
                continue;
            name = dot + 1;
        } else {
            name = keys[i].path;
            if (dot) { /* top level: list groups once */
                size_t gl = (size_t)(dot - keys[i].path);
                if (i > 0 && !strncmp(keys[i - 1].path, keys[i].path, gl + 1))
                    continue;
                used += (size_t)snprintf(buf + used, size - used, "%s%.*s", used ? ", " : "", (int)gl, name);
                continue;
            }
        }
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
    }
}

/* A libconfig setting name: a letter or '*', then letters, digits, '-', '_' or '*'. */
static int valid_name(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '*'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '*'))
            return 0;
    return 1;
}

/* Text run.cfg can hold: no control characters (a newline would end the string). */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int add_cil_opt(cs_experiment *e, const char *k, const char *v, const char *where, cs_error *err)
{
    if (strlen(k) >= sizeof e->cil_keys[0] || strlen(v) >= sizeof e->cil_values[0])
        return cs_error_set(err, CS_ERR_ARG, "%scil.%s: key or value too long (at most %zu and %zu characters)",
                            where, k, sizeof e->cil_keys[0] - 1, sizeof e->cil_values[0] - 1);
    /* what run.cfg writes must read back: "key" or "algorithm.key", each a libconfig name */
    const char *dot = strchr(k, '.');
    size_t head = dot ? (size_t)(dot - k) : strlen(k);
    if (!valid_name(k, head) || (dot && (strchr(dot + 1, '.') || !valid_name(dot + 1, strlen(dot + 1)))))
        return cs_error_set(err, CS_ERR_ARG, "%scil.%s: expected an option name (a letter, then letters, digits, "
                            "'-' or '_'), or ALGORITHM.NAME", where, k);
    if (!printable(v))
        return cs_error_set(err, CS_ERR_ARG, "%scil.%s: the value holds a control character", where, k);
    for (int i = 0; i < e->n_cil_opts; i++) {
        const char *o = e->cil_keys[i], *od = strchr(o, '.');
        size_t oh = od ? (size_t)(od - o) : strlen(o);
        if ((!dot && od && oh == head && !strncmp(o, k, head)) || (dot && !od && oh == head && !strncmp(o, k, head)))
            return cs_error_set(err, CS_ERR_ARG, "%scil.%s: '%.*s' is already %s; one name cannot be both an option "
                                "and a group of options", where, k, (int)head, k, od ? "a group" : "an option");
    }
    for (int i = 0; i < e->n_cil_opts; i++)
        if (!strcmp(e->cil_keys[i], k)) {
            snprintf(e->cil_values[i], sizeof e->cil_values[i], "%s", v);
            return CS_OK;
        }
    if (e->n_cil_opts == CS_EXP_MAX_CIL_OPTS)
        return cs_error_set(err, CS_ERR_ARG, "%scil.%s: more than %d cil options", where, k, CS_EXP_MAX_CIL_OPTS);
    snprintf(e->cil_keys[e->n_cil_opts], sizeof e->cil_keys[0], "%s", k);
    snprintf(e->cil_values[e->n_cil_opts], sizeof e->cil_values[0], "%s", v);
    e->n_cil_opts++;
    return CS_OK;
}

/* Parses text for key k into e; where = "FILE:LINE: " or "--set ". */

/* A list as --set gives it: "[2, 1, 1, 2]" (as in a config file) or "2,1,1,2"
 * reads as "2,1,1,2"; anything else is returned as it is, for the caller's
 * error message. */
static const char *list_text(const char *v, char *buf, size_t size)
{
    size_t n = strlen(v);
    if (n < 2 || v[0] != '[' || v[n - 1] != ']' || n >= size)
        return v;
    size_t u = 0;
    for (size_t i = 1; i + 1 < n; i++)
        if (v[i] != ' ' && v[i] != '\t')
            buf[u++] = v[i];
    buf[u] = 0;
    return buf;
}

static int set_from_text(cs_experiment *e, const key *k, const char *v, const char *where, cs_error *err)
{
    char *p = (char *)e + k->offset;
    char *end;
    errno = 0;
    switch (k->type) {
    case K_STR:
        if (!printable(v))
            return cs_error_set(err, CS_ERR_ARG, "%s%s: the value holds a control character", where, k->path);
        if (!*v && !strcmp(k->path, "out"))
            return cs_error_set(err, CS_ERR_ARG, "%sout: expected a folder, not an empty string", where);
        if (!strcmp(k->path, "out") && strlen(v) >= k->size - 64) /* room for "/state-K.safetensors" */
            return cs_error_set(err, CS_ERR_ARG, "%sout: a path of %zu bytes; at most %zu", where, strlen(v),
                                k->size - 65);
        if (strlen(v) >= k->size)
            return cs_error_set(err, CS_ERR_ARG, "%s%s: '%s' is longer than %zu characters", where, k->path, v,
                                k->size - 1);
        memcpy(p, v, strlen(v) + 1);
        return CS_OK;
    case K_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < k->min || x > k->max)
            return cs_error_set(err, CS_ERR_ARG, "%s%s: '%s': expected a whole number from %.0f to %.0f", where,
                                k->path, v, k->min, k->max);
        *(int *)p = (int)x;
        return CS_OK;
    }
    case K_DBL: {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !(x >= k->min && x <= k->max))
            return cs_error_set(err, CS_ERR_ARG, "%s%s: '%s': expected a number from %g to %g", where, k->path, v,
                                k->min, k->max);
        *(double *)p = x;
        if (!strcmp(k->path, "model.width") || !strcmp(k->path, "model.depth"))
            e->manual = 1;
        if (!strcmp(k->path, "model.depth"))
            e->n_depths = 0;
        return CS_OK;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1"))
            *(int *)p = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0"))
            *(int *)p = 0;
        else
            return cs_error_set(err, CS_ERR_ARG, "%s%s: '%s': expected true or false", where, k->path, v);
        return CS_OK;
    case K_BUDGET: {
        cs_error e2;
        if (cs_budget_parse(v, &e->budget, &e2))
            return cs_error_set(err, CS_ERR_ARG, "%smodel.%s", where, e2.msg);
        e->manual = 0;
        return CS_OK;
    }
    case K_SEED: {
        unsigned long long x = strtoull(v, &end, 10);
        /* libconfig keeps signed 64-bit integers: run.cfg reads back only up to 2^63 - 1 */
        if (end == v || *end || errno || v[0] == '-' || x > (unsigned long long)INT64_MAX)
            return cs_error_set(err, CS_ERR_ARG, "%sseed: '%s': expected a whole number from 0 to %lld", where, v,
                                (long long)INT64_MAX);
        e->seed = x;
        return CS_OK;
    }
    case K_DEPTHS: {
        int n = 0;
        char lb[512];
        const char *q = list_text(v, lb, sizeof lb);
        while (*q) {
            long x = strtol(q, &end, 10);
            if (end == q || x < 1 || x > 100000 || n == CS_EXP_MAX_STAGES || (*end && *end != ',') ||
                (*end == ',' && !end[1]))
                return cs_error_set(err, CS_ERR_ARG, "%smodel.depths: '%s': expected blocks per stage (whole "
                                    "numbers >= 1) separated by commas", where, v);
            e->depths[n++] = (int)x;
            q = *end ? end + 1 : end;
        }
        if (!n)
            return cs_error_set(err, CS_ERR_ARG, "%smodel.depths: expected at least one stage", where);
        e->n_depths = n;
        return CS_OK;
    }
    case K_ORDER: {
        if (!strcmp(v, "seed")) {
            e->n_order = 0;
            return CS_OK;
        }
        int n = 0;
        char lb[4096];
        const char *q = list_text(v, lb, sizeof lb);
        while (*q) {
            long x = strtol(q, &end, 10);
            if (end == q || x < 0 || x >= CS_EXP_MAX_ORDER || n == CS_EXP_MAX_ORDER || (*end && *end != ','))
                return cs_error_set(err, CS_ERR_ARG, "%sscenario.order: '%s': expected \"seed\" or class ids "
                                    "separated by commas", where, v);
            e->order[n++] = (int)x;
            q = *end ? end + 1 : end;
        }
        e->n_order = n;
        return CS_OK;
    }
    }
    return CS_ERR;
}

/* A libconfig scalar as text (numbers keep their precision). */
static int scalar_text(const config_setting_t *s, char *buf, size_t size)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT: snprintf(buf, size, "%d", config_setting_get_int(s)); return 0;
    case CONFIG_TYPE_INT64: snprintf(buf, size, "%lld", config_setting_get_int64(s)); return 0;
    case CONFIG_TYPE_FLOAT: snprintf(buf, size, "%.17g", config_setting_get_float(s)); return 0;
    case CONFIG_TYPE_BOOL: snprintf(buf, size, "%s", config_setting_get_bool(s) ? "true" : "false"); return 0;
    case CONFIG_TYPE_STRING: snprintf(buf, size, "%s", config_setting_get_string(s)); return 0;
    default: return -1;
    }
}

static const char *type_word(key_type t)
{
    switch (t) {
    case K_STR: return "a string";
    case K_INT: case K_SEED: return "a whole number";
    case K_DBL: return "a number";
    case K_BOOL: return "true or false";
    case K_BUDGET: return "a budget (\"1M\" or a number)";
    case K_ORDER: return "\"seed\" or a list [3, 1, ...]";
    case K_DEPTHS: return "a list of blocks per stage [1, 1, 2, 2]";
    }
    return "?";
}

static int load_setting(cs_experiment *e, const char *file, const config_setting_t *s, const char *group,
                        cs_error *err)
{
    char path[160], where[PATH_MAX + 32], known[512], text[512];
    const char *name = config_setting_name(s);
    int line = config_setting_source_line(s);
    snprintf(where, sizeof where, "%s:%d: ", file, line);
    if (group)
        snprintf(path, sizeof path, "%s.%s", group, name);
    else
        snprintf(path, sizeof path, "%s", name);
    if (group && !strcmp(group, "cil") && strcmp(name, "algorithm")) {
        /* cil = { algorithm = "lucir"; lucir = { lambda_base = 10.0; }; }: each
         * algorithm's options in a group of its own, so switching algorithms
         * (--set cil.algorithm=finetune) leaves the others' options unread */
        if (config_setting_is_group(s)) {
            for (int i = 0; i < config_setting_length(s); i++) {
                const config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
                char key[160];
                snprintf(where, sizeof where, "%s:%d: ", file, config_setting_source_line(c));
                snprintf(key, sizeof key, "%s.%s", name, config_setting_name(c));
                if (scalar_text(c, text, sizeof text))
                    return cs_error_set(err, CS_ERR_ARG, "%scil.%s: expected a single value", where, key);
                int rc = add_cil_opt(e, key, text, where, err);
                if (rc)
                    return rc;
            }
            return CS_OK;
        }
        if (scalar_text(s, text, sizeof text))
            return cs_error_set(err, CS_ERR_ARG, "%s%s: expected a single value", where, path);
        return add_cil_opt(e, name, text, where, err);
    }
    const key *k = find_key(path);
    if (!k && !group) { /* "data = 5;": a group's name used as a key */
        char probe[96];
        snprintf(probe, sizeof probe, "%s.", name);
        for (size_t i = 0; i < N_KEYS; i++)
            if (!strncmp(keys[i].path, probe, strlen(probe)))
                return cs_error_set(err, CS_ERR_ARG, "%s%s: expected a group, %s = { ... };", where, name, name);
    }
    if (!k) {
        known_in(group, known, sizeof known);
        return cs_error_set(err, CS_ERR_ARG, "%sunknown key '%s' (known%s%s: %s)", where, path, group ? " in " : "",
                            group ? group : "", known);
    }
    int t = config_setting_type(s);
    if (k->type == K_ORDER && (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)) {
        int n = config_setting_length(s);
        if (n > CS_EXP_MAX_ORDER)
            return cs_error_set(err, CS_ERR_ARG, "%s%s: more than %d classes", where, path, CS_EXP_MAX_ORDER);
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(el) != CONFIG_TYPE_INT || config_setting_get_int(el) < 0)
                return cs_error_set(err, CS_ERR_ARG, "%s%s[%d]: expected a class id >= 0", where, path, i);
            e->order[i] = config_setting_get_int(el);
        }
        e->n_order = n;
        return CS_OK;
    }
    if (k->type == K_DEPTHS && (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)) {
        int n = config_setting_length(s);
        char buf[CS_EXP_MAX_STAGES * 12] = "";
        size_t u = 0;
        if (n < 1 || n > CS_EXP_MAX_STAGES)
            return cs_error_set(err, CS_ERR_ARG, "%s%s: expected 1 to %d stages", where, path, CS_EXP_MAX_STAGES);
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(el) != CONFIG_TYPE_INT || config_setting_get_int(el) < 1)
                return cs_error_set(err, CS_ERR_ARG, "%s%s[%d]: expected a block count >= 1", where, path, i);
            u += (size_t)snprintf(buf + u, sizeof buf - u, "%s%d", i ? "," : "", config_setting_get_int(el));
        }
        return set_from_text(e, k, buf, where, err);
    }
    int ok_type = 1;
    switch (k->type) {
    case K_STR: ok_type = t == CONFIG_TYPE_STRING; break;
    case K_INT: case K_SEED: ok_type = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64; break;
    case K_DBL: ok_type = t == CONFIG_TYPE_FLOAT || t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64; break;
    case K_BOOL: ok_type = t == CONFIG_TYPE_BOOL; break;
    case K_BUDGET: ok_type = t == CONFIG_TYPE_STRING || t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 ||
                             t == CONFIG_TYPE_FLOAT; break;
    case K_ORDER: case K_DEPTHS: ok_type = t == CONFIG_TYPE_STRING; break;
    }
    if (!ok_type || scalar_text(s, text, sizeof text))
        return cs_error_set(err, CS_ERR_ARG, "%s%s: expected %s", where, path, type_word(k->type));
    return set_from_text(e, k, text, where, err);
}

int cs_experiment_load(const char *path, cs_experiment *e, cs_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read experiment: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) { /* libconfig's scanner cannot say why */
        fclose(f);
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read experiment: not a file%s", path,
                            S_ISDIR(st.st_mode) ? " (a folder)" : "");
    }
    config_t cfg;
    config_init(&cfg);
    int rc = CS_OK;
    if (!config_read(&cfg, f)) {
        rc = cs_error_set(err, CS_ERR_ARG, "%s:%d: %s", path, config_error_line(&cfg), config_error_text(&cfg));
        goto out;
    }
    config_setting_t *root = config_root_setting(&cfg);
    int have_budget = 0, have_manual = 0, have_depth = 0, have_depths = 0;
    for (int i = 0; i < config_setting_length(root) && !rc; i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        if (config_setting_is_group(s)) {
            const char *g = config_setting_name(s);
            char probe[96], known[512];
            snprintf(probe, sizeof probe, "%s.", g);
            int known_group = 0;
            for (size_t k = 0; k < N_KEYS; k++)
                known_group |= !strncmp(keys[k].path, probe, strlen(probe));
            if (!known_group) {
                known_in(NULL, known, sizeof known);
                rc = cs_error_set(err, CS_ERR_ARG, "%s:%d: unknown group '%s' (known: %s)", path,
                                  config_setting_source_line(s), g, known);
                break;
            }
            for (int j = 0; j < config_setting_length(s) && !rc; j++) {
                config_setting_t *c = config_setting_get_elem(s, (unsigned)j);
                rc = load_setting(e, path, c, g, err);
                if (!strcmp(g, "model")) {
                    have_budget |= !strcmp(config_setting_name(c), "budget");
                    have_manual |= !strcmp(config_setting_name(c), "width") || !strcmp(config_setting_name(c), "depth");
                    if (!strcmp(config_setting_name(c), "depth"))
                        have_depth = 1;
                    if (!strcmp(config_setting_name(c), "depths"))
                        have_depths = 1;
                }
            }
        } else {
            rc = load_setting(e, path, s, NULL, err);
        }
    }
    if (!rc && have_budget && have_manual)
        rc = cs_error_set(err, CS_ERR_ARG, "%s: model: give budget (with policy or depths) or width/depth, not both",
                          path);
    if (!rc && have_depth && have_depths)
        rc = cs_error_set(err, CS_ERR_ARG, "%s: model: give depth or depths, not both", path);
    if (!rc)
        e->manual = have_manual;
out:
    config_destroy(&cfg);
    fclose(f);
    return rc;
}

int cs_experiment_set(cs_experiment *e, const char *assignment, cs_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return cs_error_set(err, CS_ERR_ARG, "--set '%s': expected group.key=value", assignment);
    char path[160];
    snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
    const char *v = eq + 1;
    if (!strncmp(path, "cil.", 4) && strcmp(path, "cil.algorithm"))
        return add_cil_opt(e, path + 4, v, "--set ", err);
    const key *k = find_key(path);
    if (!k) {
        char known[512], group[64];
        const char *dot = strchr(path, '.');
        snprintf(group, sizeof group, "%.*s", dot ? (int)(dot - path) : 0, path);
        known_in(dot ? group : NULL, known, sizeof known);
        if (dot && !*known) { /* no such group: name the groups */
            known_in(NULL, known, sizeof known);
            return cs_error_set(err, CS_ERR_ARG, "--set: unknown key '%s': no group '%s' (known: %s)", path, group,
                                known);
        }
        return cs_error_set(err, CS_ERR_ARG, "--set: unknown key '%s' (known%s%s: %s)", path, dot ? " in " : "",
                            dot ? group : "", known);
    }
    return set_from_text(e, k, v, "--set ", err);
}

size_t cs_experiment_settings(const cs_experiment *e, char *buf, size_t size)
{
    size_t u = 0;
#define PUT(...) (u += (size_t)snprintf(buf + (u < size ? u : size), u < size ? size - u : 0, __VA_ARGS__))
    if (size)
        buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        const char *p = (const char *)e + k->offset;
        /* max_pixels only guards the loader: a run it lets through has the same numbers */
        if (!strcmp(k->path, "seed") || !strcmp(k->path, "out") || !strcmp(k->path, "backend.device") ||
            !strcmp(k->path, "data.max_pixels"))
            continue;
        /* by hand: width with depth or depths; under a budget: depths (the widest
         * network with them) or the policy */
        int by_depths = e->n_depths > 0;
        if (e->manual ? !strcmp(k->path, "model.policy") || k->type == K_BUDGET ||
                            (!strcmp(k->path, "model.depth") && by_depths) || (k->type == K_DEPTHS && !by_depths)
                      : !strcmp(k->path, "model.width") || !strcmp(k->path, "model.depth") ||
                            (k->type == K_DEPTHS && !by_depths) || (!strcmp(k->path, "model.policy") && by_depths))
            continue;
        PUT("%s%s=", u ? "; " : "", k->path);
        switch (k->type) {
        case K_STR: PUT("%s", p); break;
        case K_INT: PUT("%d", *(const int *)p); break;
        case K_DBL: PUT("%.15g", *(const double *)p); break;
        case K_BOOL: PUT("%s", *(const int *)p ? "true" : "false"); break;
        case K_BUDGET: PUT("%lld", (long long)e->budget); break;
        case K_SEED: break;
        case K_ORDER:
            if (!e->n_order)
                PUT("seed");
            for (int j = 0; j < e->n_order; j++)
                PUT("%s%d", j ? "," : "", e->order[j]);
            break;
        case K_DEPTHS:
            for (int j = 0; j < e->n_depths; j++)
                PUT("%s%d", j ? "," : "", e->depths[j]);
            break;
        }
        if (!strcmp(k->path, "cil.algorithm"))
            for (int j = 0; j < e->n_cil_opts; j++) { /* the algorithm's own options, as given */
                const char *dot = strchr(e->cil_keys[j], '.');
                if (!dot || ((size_t)(dot - e->cil_keys[j]) == strlen(e->cil) &&
                             !strncmp(e->cil_keys[j], e->cil, strlen(e->cil))))
                    PUT("; cil.%s=%s", e->cil_keys[j], e->cil_values[j]);
            }
    }
#undef PUT
    return u < size ? u : (size ? size - 1 : 0);
}

static const char *type_word(key_type t);

/* The value of key k in e, as text (what --set takes). */
static void key_value(const cs_experiment *e, const key *k, char *buf, size_t size)
{
    const char *p = (const char *)e + k->offset;
    switch (k->type) {
    case K_STR: snprintf(buf, size, "\"%s\"", p); return;
    case K_INT: snprintf(buf, size, "%d", *(const int *)p); return;
    case K_DBL: snprintf(buf, size, "%.15g", *(const double *)p); return;
    case K_BOOL: snprintf(buf, size, "%s", *(const int *)p ? "true" : "false"); return;
    case K_BUDGET: snprintf(buf, size, "%lld", (long long)e->budget); return;
    case K_SEED: snprintf(buf, size, "%llu", (unsigned long long)e->seed); return;
    case K_ORDER: snprintf(buf, size, "\"seed\""); return;
    case K_DEPTHS: snprintf(buf, size, "none"); return;
    }
}

void cs_experiment_print_keys(FILE *f)
{
    cs_experiment d;
    cs_experiment_defaults(&d);
    fprintf(f, "%-24s %-26s %-18s %s\n", "key", "type (range)", "default", "meaning");
    for (size_t i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        char type[64], def[64];
        if (k->type == K_INT)
            snprintf(type, sizeof type, "whole number (%.0f..%.0f)", k->min, k->max);
        else if (k->type == K_DBL)
            snprintf(type, sizeof type, "number (%g..%g)", k->min, k->max);
        else
            snprintf(type, sizeof type, "%s", type_word(k->type));
        key_value(&d, k, def, sizeof def);
        fprintf(f, "%-24s %-26s %-18s %s\n", k->path, type, def, k->help);
    }
    fprintf(f, "%-24s %-26s %-18s %s\n", "cil.NAME", "the algorithm's", "-",
            "an option of cil.algorithm (cilscale plugins lists each algorithm's)");
}

void cs_experiment_identity(const cs_experiment *e, char id[17])
{
    static char buf[8192];
    size_t n = cs_experiment_settings(e, buf, sizeof buf - 32);
    snprintf(buf + n, sizeof buf - n, "; seed=%llu", (unsigned long long)e->seed);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = buf; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(id, 17, "%016llx", (unsigned long long)h);
}

static void write_str(FILE *f, const char *name, const char *v)
{
    fprintf(f, "  %s = \"", name);
    for (; *v; v++)
        fprintf(f, (*v == '"' || *v == '\\') ? "\\%c" : "%c", *v);
    fputs("\";\n", f);
}

void cs_experiment_write(const cs_experiment *e, FILE *f)
{
    fputs("# cilscale experiment (resolved: every key, defaults included)\n", f);
    fputs("data = {\n", f);
    write_str(f, "format", e->data_format);
    write_str(f, "path", e->data_path);
    fprintf(f, "  image_size = %d;\n  train_per_class = %d;\n  test_per_class = %d;\n  max_pixels = %d;\n};\n",
            e->image_size, e->train_per_class, e->test_per_class, e->max_pixels);
    fprintf(f, "scenario = {\n  states = %d;\n  first = %d;\n", e->states, e->first);
    if (e->n_order) {
        fputs("  order = [", f);
        for (int i = 0; i < e->n_order; i++)
            fprintf(f, "%s%d", i ? ", " : "", e->order[i]);
        fputs("];\n", f);
    } else {
        fputs("  order = \"seed\";\n", f);
    }
    fputs("};\nmodel = {\n", f);
    write_str(f, "arch", e->arch);
    if (e->manual)
        fprintf(f, "  width = %.17g;\n", e->width);
    else {
        write_str(f, "policy", e->policy);
        fprintf(f, "  budget = %lldL;\n", (long long)e->budget);
    }
    if (e->n_depths) {
        fputs("  depths = [", f);
        for (int i = 0; i < e->n_depths; i++)
            fprintf(f, "%s%d", i ? ", " : "", e->depths[i]);
        fputs("];\n", f);
    } else if (e->manual)
        fprintf(f, "  depth = %.17g;\n", e->depth);
    write_str(f, "stem", e->stem);
    write_str(f, "convention", e->convention);
    write_str(f, "count", e->count);
    write_str(f, "resolution", e->resolution);
    fputs("};\ncil = {\n", f);
    write_str(f, "algorithm", e->cil);
    for (int i = 0; i < e->n_cil_opts; i++) {
        const char *dot = strchr(e->cil_keys[i], '.');
        if (!dot) {
            write_str(f, e->cil_keys[i], e->cil_values[i]);
            continue;
        }
        /* one group per algorithm, holding all of its keys */
        int plen = (int)(dot - e->cil_keys[i]), first = 1;
        for (int j = 0; j < i; j++)
            first &= !(strchr(e->cil_keys[j], '.') && !strncmp(e->cil_keys[j], e->cil_keys[i], (size_t)plen + 1));
        if (!first)
            continue;
        fprintf(f, "  %.*s = {\n", plen, e->cil_keys[i]);
        for (int j = i; j < e->n_cil_opts; j++)
            if (!strncmp(e->cil_keys[j], e->cil_keys[i], (size_t)plen + 1)) {
                fputs("  ", f);
                write_str(f, e->cil_keys[j] + plen + 1, e->cil_values[j]);
            }
        fputs("  };\n", f);
    }
    fprintf(f, "};\ntrain = {\n  epochs = %d;\n  first_epochs = %d;\n  batch = %d;\n  lr = %.17g;\n"
               "  first_lr = %.17g;\n  momentum = %.17g;\n  weight_decay = %.17g;\n",
            e->epochs, e->first_epochs, e->batch, e->lr, e->first_lr, e->momentum, e->weight_decay);
    write_str(f, "schedule", e->schedule);
    fprintf(f, "  nesterov = %s;\n  augment = %s;\n};\nbackend = {\n", e->nesterov ? "true" : "false",
            e->augment ? "true" : "false");
    write_str(f, "name", e->backend);
    write_str(f, "device", e->device);
    fprintf(f, "};\nseed = %lluL;\n", (unsigned long long)e->seed);
    fprintf(f, "out = \"");
    for (const char *v = e->out; *v; v++)
        fprintf(f, (*v == '"' || *v == '\\') ? "\\%c" : "%c", *v);
    fputs("\";\n", f);
}
