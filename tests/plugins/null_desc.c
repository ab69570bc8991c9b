/* null_desc.c: a plugin whose cs_plugin_init returns NULL: the loader must refuse it. */
#include <cilscale/plugin.h>

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return NULL; }
