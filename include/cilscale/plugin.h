/* plugin.h: the ABI every cilscale plugin exports, and the four plugin kinds. */
#ifndef CILSCALE_PLUGIN_H
#define CILSCALE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct a plugin sees changes layout or meaning. The loader
 * refuses a plugin built against another version rather than guessing. */
#define CS_ABI_VERSION 6

#if defined(_WIN32)
#define CS_PLUGIN_EXPORT __declspec(dllexport)
#else
#define CS_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

typedef enum cs_kind {
    CS_KIND_ARCH = 1,    /* cs_arch_iface    (arch.h)    */
    CS_KIND_POLICY = 2,  /* cs_policy_iface  (policy.h)  */
    CS_KIND_CIL = 3,     /* cs_cil_iface     (cil.h)     */
    CS_KIND_BACKEND = 4, /* cs_backend_iface (backend.h) */
} cs_kind;

/* What cs_plugin_init returns. Static storage, owned by the plugin. */
typedef struct cs_plugin_desc {
    int abi_version;         /* CS_ABI_VERSION the plugin was built with */
    int kind;                /* a cs_kind */
    const char *name;        /* unique within its kind: "resnet18", "psi" */
    const char *version;     /* the plugin's own version, free text: "1.0.0" */
    const char *description; /* one line for `cilscale plugins` */
    const void *iface;       /* the kind's interface struct */
} cs_plugin_desc;

/* The one symbol every plugin exports:
 *   CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void);
 * Optionally also (backends): int cs_plugin_score(void), 0 = cannot run here. */
#define CS_PLUGIN_INIT_SYMBOL "cs_plugin_init"
#define CS_PLUGIN_SCORE_SYMBOL "cs_plugin_score"
typedef const cs_plugin_desc *(*cs_plugin_init_fn)(void);
typedef int (*cs_plugin_score_fn)(void);

const char *cs_kind_name(int kind); /* "arch", "policy", "cil", "backend", or NULL */

#ifdef __cplusplus
}
#endif
#endif
