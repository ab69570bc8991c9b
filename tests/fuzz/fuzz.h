/* fuzz.h: what the fuzz harnesses share. Each harness defines
 * LLVMFuzzerTestOneInput for one reader of untrusted bytes; built with clang
 * and -fsanitize=fuzzer (meson -Dfuzz=enabled) it is a libFuzzer target, and
 * linked with replay.c (always) it runs every file of a corpus once, which is
 * how CI replays the seeds and every past finding (tests/fuzz/corpus/NAME/). */
#ifndef CILSCALE_FUZZ_H
#define CILSCALE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A private folder for the process (made once) and DIR/name written with
 * data; returns the folder. */
const char *fuzz_dir(void);
const char *fuzz_write(const char *name, const uint8_t *data, size_t size);

#endif
