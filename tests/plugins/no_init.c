/* no_init.c: a shared object that exports no cs_plugin_init symbol (only a look-alike): not a plugin. */
#include <cilscale/plugin.h>

CS_PLUGIN_EXPORT int cs_plugin_initialize(void) { return 0; }
