/* progress.h: one updating status line on a terminal, plain log lines elsewhere. */
#ifndef CILSCALE_PROGRESS_H
#define CILSCALE_PROGRESS_H

#include <stdio.h>

typedef struct cli_progress {
    FILE *f;
    int tty;        /* rewrite one line in place */
    int dirty;      /* a status line is showing */
    double last;    /* when it was last drawn (or, off a terminal, logged) */
} cli_progress;

void cli_progress_init(cli_progress *p, FILE *f);
/* True when an update is worth drawing now: on a terminal every 0.2 s,
 * elsewhere every 60 s (so long epochs still show life in a log). */
int cli_progress_due(cli_progress *p);
void cli_progress_update(cli_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A permanent line (replacing the status line on a terminal). */
void cli_progress_line(cli_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_progress_end(cli_progress *p);
/* Ctrl-C (SIGINT) or SIGTERM for long commands: the first asks to stop at the
 * next batch boundary (cli_interrupted returns the signal's number), a second
 * exits at once (128 + the signal: 130 for SIGINT, 143 for SIGTERM). */
void cli_catch_interrupt(void);
int cli_interrupted(void);
void cli_release_interrupt(void);

/* "45s", "4m10s", "2h03m": from a small ring of static buffers. */
const char *cli_duration(double seconds);

#endif
