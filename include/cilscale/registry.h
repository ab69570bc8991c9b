/* registry.h: loading plugin files, and finding them by kind and name. Which files
 * to load is the caller's business (the runtime reads plugins.conf: runtime/plugins_conf.h). */
#ifndef CILSCALE_REGISTRY_H
#define CILSCALE_REGISTRY_H

#include <stddef.h>

#include "error.h"
#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_plugin {
    int kind;
    const char *name;
    const char *version;
    const char *description;
    const void *iface;        /* cast to the kind's interface struct */
    char *path;               /* the file it came from */
} cs_plugin;

typedef struct cs_registry cs_registry;

/* Checks that path is a complete ELF shared object for this machine (magic,
 * class, byte order, type, machine, and every loadable segment and header
 * within the file) before it is dlopen'ed: dlopen maps a truncated file and
 * the process dies of SIGBUS touching a page past its end. One line naming
 * the file and what is wrong. cs_registry_load_file calls it; a plugin that
 * dlopens a file it was given a path to (a loader) should too. */
int cs_elf_check(const char *path, cs_error *err);

cs_registry *cs_registry_new(void);
void cs_registry_free(cs_registry *r); /* unloads every plugin */

/* Loads one plugin file. On failure returns < 0, records the failure (one
 * line naming the file and the cause) and fills err with the same line. */
int cs_registry_load_file(cs_registry *r, const char *path, cs_error *err);

/* Registers a plugin compiled into the caller (tests, embedding). */
int cs_registry_add(cs_registry *r, const cs_plugin_desc *desc, const char *origin, cs_error *err);

/* The plugin's cs_plugin_score() where it exports one (0: cannot run on this
 * machine), else 1. Asked on first use, not at load, and remembered: probing
 * a device (a Vulkan instance, say) costs time that commands which never use
 * the backend should not pay. */
int cs_registry_score(const cs_registry *r, const cs_plugin *p);

size_t cs_registry_count(const cs_registry *r);
const cs_plugin *cs_registry_at(const cs_registry *r, size_t i);
const cs_plugin *cs_registry_find(const cs_registry *r, int kind, const char *name);

/* Plugins that failed to load and warnings about the conf (unknown keys):
 * one line each, naming the file. A plugin list reader (the runtime's
 * plugins.conf) records its own warnings with cs_registry_add_problem. */
void cs_registry_add_problem(cs_registry *r, const char *line);
size_t cs_registry_n_problems(const cs_registry *r);
const char *cs_registry_problem(const cs_registry *r, size_t i);

/* The names of the loaded plugins of a kind, comma separated ("(none)" if none). */
void cs_registry_names(const cs_registry *r, int kind, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
