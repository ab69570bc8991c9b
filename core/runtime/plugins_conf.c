/* plugins_conf.c: reading plugins.conf (libconfig) into a registry, the conf
 * in force (--plugins, $CILSCALE_PLUGINS, the build tree's, the installed one),
 * and the lookup by name that lists what did load when a name is unknown. */
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/plugins_conf.h"

/* dir of path ("." when it has none), into buf. */
static void dir_of(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, size, ".");
    else if (slash == path)
        snprintf(buf, size, "/");
    else
        snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

static int load_conf(cs_registry *r, const char *conf_path, int depth, cs_error *err);

/* include = ["other.conf", "@default"]: each loaded first, in order; a
 * relative path is read from this conf's folder, "@default" is the conf
 * cilscale loads when none is given (the build tree's, else the installed). */
static int load_includes(cs_registry *r, const char *conf_path, const char *dir, config_setting_t *inc, int depth,
                         cs_error *err)
{
    if (!config_setting_is_array(inc) && !config_setting_is_list(inc))
        return cs_error_set(err, CS_ERR_ARG, "%s:%d: expected 'include = [ \"other.conf\" or \"@default\", ... ];'",
                            conf_path, config_setting_source_line(inc));
    if (depth >= 8)
        return cs_error_set(err, CS_ERR_ARG, "%s:%d: includes nest more than 8 deep (does a conf include itself?)",
                            conf_path, config_setting_source_line(inc));
    for (int i = 0; i < config_setting_length(inc); i++) {
        config_setting_t *e = config_setting_get_elem(inc, (unsigned)i);
        const char *p = config_setting_get_string(e);
        if (!p)
            return cs_error_set(err, CS_ERR_ARG, "%s:%d: include[%d]: expected a path", conf_path,
                                config_setting_source_line(e), i);
        char full[PATH_MAX], root[PATH_MAX];
        if (!strcmp(p, "@default")) {
            if (cs_build_tree_root(root, sizeof root))
                snprintf(full, sizeof full, "%s/plugins.conf", root);
            else
                snprintf(full, sizeof full, "%s", CS_INSTALL_CONF);
        } else if ((size_t)(p[0] == '/' ? snprintf(full, sizeof full, "%s", p)
                                         : snprintf(full, sizeof full, "%s/%s", dir, p)) >= sizeof full) {
            return cs_error_set(err, CS_ERR_ARG, "%s:%d: include[%d]: path too long", conf_path,
                                config_setting_source_line(e), i);
        }
        int rc = load_conf(r, full, depth + 1, err);
        if (rc) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return cs_error_set(err, rc, "%s:%d: include '%s': %s", conf_path, config_setting_source_line(e), p, why);
        }
    }
    return CS_OK;
}

int cs_registry_load_conf(cs_registry *r, const char *conf_path, cs_error *err)
{
    return load_conf(r, conf_path, 0, err);
}

static int load_conf(cs_registry *r, const char *conf_path, int depth, cs_error *err)
{
    FILE *f = fopen(conf_path, "r");
    if (!f)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read plugin list: %s", conf_path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) { /* libconfig's scanner cannot say why */
        fclose(f);
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read plugin list: not a file%s", conf_path,
                            S_ISDIR(st.st_mode) ? " (a folder)" : "");
    }
    config_t cfg;
    config_init(&cfg);
    char dir[PATH_MAX];
    dir_of(conf_path, dir, sizeof dir);
    config_set_include_dir(&cfg, dir);
    if (!config_read(&cfg, f)) {
        cs_error_set(err, CS_ERR_ARG, "%s:%d: %s", conf_path, config_error_line(&cfg), config_error_text(&cfg));
        config_destroy(&cfg);
        fclose(f);
        return CS_ERR_ARG;
    }
    fclose(f);
    config_setting_t *list = config_lookup(&cfg, "plugins"), *inc = config_lookup(&cfg, "include");
    if (inc) {
        int rc = load_includes(r, conf_path, dir, inc, depth, err);
        if (rc) {
            config_destroy(&cfg);
            return rc;
        }
        if (!list) { /* includes alone are a whole conf */
            config_destroy(&cfg);
            return CS_OK;
        }
    }
    if (!list || !(config_setting_is_array(list) || config_setting_is_list(list))) {
        int line = list ? config_setting_source_line(list) : 0;
        cs_error_set(err, CS_ERR_ARG, "%s:%d: expected 'plugins = [ \"path/to/plugin.so\", ... ];'", conf_path,
                     line);
        config_destroy(&cfg);
        return CS_ERR_ARG;
    }
    config_setting_t *root = config_root_setting(&cfg);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        if (strcmp(config_setting_name(s), "plugins") != 0 && strcmp(config_setting_name(s), "include") != 0) {
            char line[1024];
            snprintf(line, sizeof line, "%s:%d: unknown key '%s' ignored (known: plugins, include)", conf_path,
                     config_setting_source_line(s), config_setting_name(s));
            cs_registry_add_problem(r, line);
        }
    }
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *p = config_setting_get_string(e);
        if (!p) {
            char line[1024];
            snprintf(line, sizeof line, "%s:%d: plugins[%d] is not a string path; skipped", conf_path,
                     config_setting_source_line(e), i);
            cs_registry_add_problem(r, line);
            continue;
        }
        char full[PATH_MAX];
        int len = p[0] == '/' ? snprintf(full, sizeof full, "%s", p) : snprintf(full, sizeof full, "%s/%s", dir, p);
        if (len < 0 || (size_t)len >= sizeof full) {
            char line[1024];
            snprintf(line, sizeof line, "%s:%d: plugins[%d]: path too long; skipped", conf_path,
                     config_setting_source_line(e), i);
            cs_registry_add_problem(r, line);
            continue;
        }
        cs_registry_load_file(r, full, NULL);
    }
    config_destroy(&cfg);
    return CS_OK;
}


static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *cs_build_tree_root(char *buf, size_t size)
{
    char exe[PATH_MAX];
    if (!realpath("/proc/self/exe", exe))
        return NULL;
    /* exe is ROOT/core/cilscale: strip two components. */
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash || slash == exe)
            return NULL;
        *slash = '\0';
    }
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/build.ninja", exe);
    if (!file_exists(p))
        return NULL;
    snprintf(p, sizeof p, "%s/plugins.conf", exe);
    if (!file_exists(p))
        return NULL;
    if (strlen(exe) >= size)
        return NULL;
    snprintf(buf, size, "%s", exe);
    return buf;
}

const char *cs_plugins_conf_path(const char *explicit_path, char *buf, size_t size)
{
    const char *env = getenv("CILSCALE_PLUGINS");
    char root[PATH_MAX];
    if (explicit_path && *explicit_path)
        snprintf(buf, size, "%s", explicit_path);
    else if (env && *env)
        snprintf(buf, size, "%s", env);
    else if (cs_build_tree_root(root, sizeof root))
        snprintf(buf, size, "%s/plugins.conf", root);
    else
        snprintf(buf, size, "%s", CS_INSTALL_CONF);
    return buf;
}

const cs_plugin *cs_plugin_lookup(const cs_registry *r, int kind, const char *name, cs_error *err)
{
    const cs_plugin *p = cs_registry_find(r, kind, name);
    if (!p) {
        char names[sizeof err->msg - 128];
        cs_registry_names(r, kind, names, sizeof names);
        cs_error_set(err, CS_ERR_ARG, "unknown %s '%s' (loaded: %s)",
                     kind == CS_KIND_ARCH ? "architecture" : cs_kind_name(kind), name, names);
    }
    return p;
}
