/* testutil.h: what the Check suites share: the build tree's plugins, and running the cilscale command. */
#ifndef CILSCALE_TESTUTIL_H
#define CILSCALE_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "cilscale/arch.h"
#include "cilscale/policy.h"
#include "cilscale/registry.h"

#define TU_STR_(x) #x
#define TU_STR(x) TU_STR_(x)
/* The ABI tests/plugins/bad_abi.c claims (CS_ABI_VERSION + 1), as a literal. */
#define CS_ABI_VERSION_NEXT 7
#if CS_ABI_VERSION_NEXT != CS_ABI_VERSION + 1
#error "update CS_ABI_VERSION_NEXT to CS_ABI_VERSION + 1"
#endif

/* The registry of $CILSCALE_PLUGINS (the build tree's plugins.conf); loaded
 * once per process, fails the test when it cannot load. */
cs_registry *tu_registry(void);
const cs_arch_iface *tu_arch(const char *name);
const cs_policy_iface *tu_policy(const char *name);

/* A config with reference depths of arch, w = 1, 3 channels, classes, imagenet stem, linear head. */
cs_arch_config tu_config(const cs_arch_iface *a, int classes);

/* Runs `$CILSCALE_EXE args...` (args NULL-terminated) capturing stdout and
 * stderr (each truncated to size); returns the exit status, -1 if it did not exit. */
int tu_run(char *out, size_t out_size, char *err, size_t err_size, const char *arg0, ...);

/* A fresh temporary directory (mkdtemp) for files a test writes. */
const char *tu_tmpdir(void);
/* Removes the temporary directory and what is in it: a checked teardown, so a
 * failing test (which exits before it) leaves its files to look at. Keeps the
 * directory itself when CK_FORK=no, where all tests share it. */
void tu_remove_tmpdir(void);
/* The temporary directory's dir/name (static buffers, 32 calls before one is reused). */
const char *tu_path(const char *name);
/* Writes text to dir/name and returns the full path (as tu_path gives it). */
const char *tu_write(const char *name, const char *text);

/* Writes DIR/SPLIT-images-idx3-ubyte and DIR/SPLIT-labels-idx1-ubyte: 10
 * classes of 8x8 images, per_class each, class c a bright 3x3 square at a
 * place of its own over noise drawn from seed (a data set tiny networks
 * learn in a few steps). */
void tu_write_tiny_idx(const char *dir, const char *split, int per_class, uint64_t seed);

/* Runs suite s, prints Check's summary, returns the number of failures. */
int tu_run_suite(Suite *s);

#endif
