/* progress.c: the status line of long commands. */
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cilscale/clock.h"
#include "cli/progress.h"

void cli_progress_init(cli_progress *p, FILE *f)
{
    p->f = f;
    p->tty = isatty(fileno(f));
    p->dirty = 0;
    p->last = cs_now_s();
}

int cli_progress_due(cli_progress *p)
{
    double t = cs_now_s();
    if (t - p->last < (p->tty ? 0.2 : 60.0))
        return 0;
    p->last = t;
    return 1;
}

void cli_progress_update(cli_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->tty)
        fputs("\r", p->f);
    vfprintf(p->f, fmt, ap);
    fputs(p->tty ? "\033[K" : "\n", p->f);
    fflush(p->f);
    va_end(ap);
    p->dirty = p->tty;
}

void cli_progress_line(cli_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->dirty)
        fputs("\r\033[K", p->f);
    vfprintf(p->f, fmt, ap);
    fputc('\n', p->f);
    fflush(p->f);
    va_end(ap);
    p->dirty = 0;
}

void cli_progress_end(cli_progress *p)
{
    if (p->dirty)
        fputs("\r\033[K", p->f);
    p->dirty = 0;
}

const char *cli_duration(double s)
{
    static char ring[4][32];
    static int slot;
    char *b = ring[slot++ % 4];
    if (!(s >= 0) || s > 1e8)
        snprintf(b, 32, "?");
    else if (s < 60)
        snprintf(b, 32, "%.0fs", s);
    else if (s < 3600)
        snprintf(b, 32, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(b, 32, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
    return b;
}

static volatile sig_atomic_t interrupted;
static struct sigaction previous, previous_term;

/* SIGINT (Ctrl-C) and SIGTERM (kill, timeout, a batch scheduler ending a job)
 * both ask to stop at the next batch and save; a second one stops at once. */
static void on_sigint(int sig)
{
    if (interrupted) /* a second signal: stop now, without saving */
        _exit(128 + sig);
    interrupted = sig;
}

void cli_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    interrupted = 0;
    sigaction(SIGINT, &sa, &previous);
    sigaction(SIGTERM, &sa, &previous_term);
}

int cli_interrupted(void) { return interrupted; }

void cli_release_interrupt(void)
{
    sigaction(SIGINT, &previous, NULL);
    sigaction(SIGTERM, &previous_term, NULL);
}
