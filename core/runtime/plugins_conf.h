/* plugins_conf.h: which plugin files to load: reading a plugins.conf (libconfig)
 * into a registry, finding the conf in force, and looking a plugin up by name
 * with the message every caller gives when it is not there. Runtime, not SDK:
 * plugins never read a conf. */
#ifndef CILSCALE_RUNTIME_PLUGINS_CONF_H
#define CILSCALE_RUNTIME_PLUGINS_CONF_H

#include <stddef.h>

#include "cilscale/error.h"
#include "cilscale/registry.h"

/* Loads every plugin a plugins.conf lists. Fails (and loads nothing) only
 * when the file cannot be read or does not parse (the message has libconfig's
 * line number); a plugin that cannot load is recorded as a failure and the
 * others still load. */
int cs_registry_load_conf(cs_registry *r, const char *conf_path, cs_error *err);

/* The conf file in force: explicit (--plugins), else $CILSCALE_PLUGINS, else
 * the build tree's (when running from it), else the installed one. */
const char *cs_plugins_conf_path(const char *explicit_path, char *buf, size_t size);

/* The build tree's root when the running executable is the one meson built
 * there (build/core/cilscale beside build/build.ninja and build/plugins.conf),
 * else NULL. Found from /proc/self/exe, so no build path is compiled into an
 * installed file. */
const char *cs_build_tree_root(char *buf, size_t size);

/* The plugin of that kind and name in r, or NULL with err (CS_ERR_ARG) saying
 * "unknown architecture 'x' (loaded: a, b, c)" (the kind's own name for the
 * other kinds: policy, cil, backend). The one lookup the CLI and the
 * experiment runtime share. */
const cs_plugin *cs_plugin_lookup(const cs_registry *r, int kind, const char *name, cs_error *err);

#endif
