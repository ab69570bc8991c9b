/* finetune.c: plain fine-tuning with a growing linear classifier: the lower bound of class-incremental learning. */
#include <stdlib.h>

#include <cilscale/cil.h>
#include <cilscale/plugin.h>

static int create(void **ctx, cs_error *err)
{
    (void)err;
    *ctx = NULL;
    return CS_OK;
}

static void destroy(void *ctx) { (void)ctx; }

static const cs_cil_iface iface = {
    .head = CS_HEAD_LINEAR,
    .create = create,
    .destroy = destroy,
};

static const cs_plugin_desc desc = {
    .abi_version = CS_ABI_VERSION,
    .kind = CS_KIND_CIL,
    .name = "finetune",
    .version = "1.0.0",
    .description = "fine-tuning: cross-entropy on a growing linear classifier, nothing against forgetting",
    .iface = &iface,
};

CS_PLUGIN_EXPORT const cs_plugin_desc *cs_plugin_init(void) { return &desc; }
