/* registry.c: the plugin loader (registry.h): dlopen a plugin file, check its
 * descriptor, record why one fails and keep going; find plugins by kind and name. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cilscale/arch.h"
#include "cilscale/backend.h"
#include "cilscale/cil.h"
#include "cilscale/policy.h"
#include "cilscale/registry.h"

/* What the registry keeps about plugin i beside its public record: never
 * visible to plugins, so it can change freely. */
typedef struct plugin_slot {
    void *handle;                /* dlopen handle; NULL for built-in plugins */
    cs_plugin_score_fn score_fn; /* the plugin's cs_plugin_score, or NULL */
    int score;                   /* cs_registry_score's answer (-1: not asked yet) */
} plugin_slot;

struct cs_registry {
    cs_plugin *plugins;
    plugin_slot *slots; /* parallel to plugins */
    size_t n, cap;
    char **problems;
    size_t n_problems, cap_problems;
};

cs_registry *cs_registry_new(void) { return calloc(1, sizeof(cs_registry)); }

void cs_registry_free(cs_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        if (r->slots[i].handle)
            dlclose(r->slots[i].handle);
        free(r->plugins[i].path);
    }
    for (size_t i = 0; i < r->n_problems; i++)
        free(r->problems[i]);
    free(r->plugins);
    free(r->slots);
    free(r->problems);
    free(r);
}

void cs_registry_add_problem(cs_registry *r, const char *msg)
{
    if (r->n_problems == r->cap_problems) {
        size_t cap = r->cap_problems ? 2 * r->cap_problems : 8;
        char **p = realloc(r->problems, cap * sizeof *p);
        if (!p)
            return;
        r->problems = p;
        r->cap_problems = cap;
    }
    char *copy = strdup(msg);
    if (copy)
        r->problems[r->n_problems++] = copy;
}

/* Records the failure and returns it in err as well. */
static int fail(cs_registry *r, cs_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(cs_registry *r, cs_error *err, int status, const char *fmt, ...)
{
    char line[sizeof(((cs_error *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cs_registry_add_problem(r, line);
    return cs_error_set(err, status, "%s", line);
}

/* What a plugin of each kind must provide; NULL when it is complete. */
static const char *missing_entry(const cs_plugin_desc *d)
{
    if (!d->iface)
        return "iface";
    switch (d->kind) {
    case CS_KIND_ARCH: {
        const cs_arch_iface *a = d->iface;
        if (!a->count_params)
            return "count_params";
        if (!a->stages || a->n_stages < 1 || a->n_stages > CS_MAX_STAGES)
            return "stages (1 to 16 of them)";
        for (int i = 0; i < a->n_stages; i++)
            if (!a->stages[i].name || a->stages[i].ref_depth < 1 || a->stages[i].ref_width < 1)
                return "a valid stage list (name, ref_depth >= 1, ref_width >= 1)";
        return NULL;
    }
    case CS_KIND_POLICY: {
        const cs_policy_iface *p = d->iface;
        return p->scale ? NULL : "scale";
    }
    case CS_KIND_CIL: {
        const cs_cil_iface *c = d->iface;
        return !c->create ? "create" : !c->destroy ? "destroy" : NULL;
    }
    case CS_KIND_BACKEND: {
        const cs_backend_iface *b = d->iface;
        if (!b->open || !b->close || !b->describe || !b->prepare || !b->release)
            return "open, close, describe, prepare and release";
        if (!b->write || !b->read || !b->set_input || !b->read_tensor)
            return "write, read, set_input and read_tensor";
        return !b->forward || !b->backward || !b->update ? "forward, backward and update" : NULL;
    }
    default:
        return NULL;
    }
}

static int register_desc(cs_registry *r, const cs_plugin_desc *d, const char *origin, void *handle,
                         cs_plugin_score_fn score_fn, cs_error *err)
{
    if (!d)
        return fail(r, err, CS_ERR, "%s: cs_plugin_init returned NULL", origin);
    if (d->abi_version != CS_ABI_VERSION)
        return fail(r, err, CS_ERR,
                    "%s: built for plugin ABI %d, this cilscale has ABI %d: rebuild it against "
                    "the installed headers",
                    origin, d->abi_version, CS_ABI_VERSION);
    const char *kind = cs_kind_name(d->kind);
    if (!kind)
        return fail(r, err, CS_ERR, "%s: unknown plugin kind %d (expected arch, policy, cil or backend)",
                    origin, d->kind);
    if (!d->name || !d->name[0])
        return fail(r, err, CS_ERR, "%s: %s plugin has no name", origin, kind);
    const char *missing = missing_entry(d);
    if (missing)
        return fail(r, err, CS_ERR, "%s: %s plugin '%s' lacks %s", origin, kind, d->name, missing);
    const cs_plugin *dup = cs_registry_find(r, d->kind, d->name);
    if (dup)
        return fail(r, err, CS_ERR, "%s: duplicate %s plugin '%s' (already loaded from %s); skipped", origin,
                    kind, d->name, dup->path);
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        cs_plugin *p = realloc(r->plugins, cap * sizeof *p);
        if (p)
            r->plugins = p;
        plugin_slot *sl = p ? realloc(r->slots, cap * sizeof *sl) : NULL;
        if (!sl)
            return fail(r, err, CS_ERR_NOMEM, "%s: out of memory", origin);
        r->slots = sl;
        r->cap = cap;
    }
    cs_plugin *p = &r->plugins[r->n];
    p->kind = d->kind;
    p->name = d->name;
    p->version = d->version ? d->version : "";
    p->description = d->description ? d->description : "";
    p->iface = d->iface;
    p->path = strdup(origin);
    r->slots[r->n] = (plugin_slot){.handle = handle, .score_fn = score_fn, .score = -1};
    if (!p->path)
        return fail(r, err, CS_ERR_NOMEM, "%s: out of memory", origin);
    r->n++;
    return CS_OK;
}

int cs_registry_add(cs_registry *r, const cs_plugin_desc *desc, const char *origin, cs_error *err)
{
    return register_desc(r, desc, origin ? origin : "(built in)", NULL, NULL, err);
}

int cs_registry_load_file(cs_registry *r, const char *path, cs_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(r, err, CS_ERR_IO, "%s: cannot load plugin: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(r, err, CS_ERR_IO, "%s: cannot load plugin: not a regular file", path);
    /* dlopen searches the library path for a bare name: make it a path. */
    char local[PATH_MAX];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        snprintf(local, sizeof local, "./%s", path);
        open_path = local;
    }
    cs_error why_not;
    if (cs_elf_check(open_path, &why_not))
        return fail(r, err, CS_ERR, "%s", why_not.msg);
    dlerror();
    /* RTLD_NODELETE: a backend's runtime (OpenMP, OpenBLAS, a Vulkan driver)
     * may keep threads or allocations alive past dlclose; unmapping it under
     * them would crash at exit, and LeakSanitizer could not name the owner. */
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *why = dlerror();
        return fail(r, err, CS_ERR, "%s: not a loadable shared object (%s)", path, why ? why : "dlopen failed");
    }
    cs_plugin_init_fn init;
    *(void **)&init = dlsym(h, CS_PLUGIN_INIT_SYMBOL);
    if (!init) {
        dlclose(h);
        return fail(r, err, CS_ERR, "%s: no %s symbol: not a cilscale plugin", path, CS_PLUGIN_INIT_SYMBOL);
    }
    /* The score is looked up now but only called when someone asks
     * (cs_registry_score), and only for a plugin that passed the checks. */
    cs_plugin_score_fn score_fn;
    *(void **)&score_fn = dlsym(h, CS_PLUGIN_SCORE_SYMBOL);
    int rc = register_desc(r, init(), path, h, score_fn, err);
    if (rc) {
        dlclose(h);
        return rc;
    }
    return CS_OK;
}

int cs_registry_score(const cs_registry *r, const cs_plugin *p)
{
    if (!r || !p || p < r->plugins || p >= r->plugins + r->n)
        return 0;
    plugin_slot *sl = &r->slots[p - r->plugins];
    if (sl->score < 0)
        sl->score = sl->score_fn ? sl->score_fn() : 1;
    if (sl->score < 0)
        sl->score = 0; /* a negative score reads as "cannot run" */
    return sl->score;
}

size_t cs_registry_count(const cs_registry *r) { return r->n; }
const cs_plugin *cs_registry_at(const cs_registry *r, size_t i) { return i < r->n ? &r->plugins[i] : NULL; }
size_t cs_registry_n_problems(const cs_registry *r) { return r->n_problems; }
const char *cs_registry_problem(const cs_registry *r, size_t i) { return i < r->n_problems ? r->problems[i] : NULL; }

const cs_plugin *cs_registry_find(const cs_registry *r, int kind, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->plugins[i].kind == kind && strcmp(r->plugins[i].name, name) == 0)
            return &r->plugins[i];
    return NULL;
}

void cs_registry_names(const cs_registry *r, int kind, char *buf, size_t size)
{
    size_t used = 0;
    int any = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        if (r->plugins[i].kind != kind)
            continue;
        any = 1;
        int k = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", r->plugins[i].name);
        if (k < 0 || (size_t)k >= size - used) {
            buf[used] = '\0'; /* no half names: stop after the last whole one */
            snprintf(buf + used, size - used, used + 5 < size ? (used ? ", ..." : "...") : "");
            return;
        }
        used += (size_t)k;
    }
    if (!any)
        snprintf(buf, size, "(none)");
}
