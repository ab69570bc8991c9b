/* clock.h: the one clock cilscale times things with (training, progress, profiles). */
#ifndef CILSCALE_CLOCK_H
#define CILSCALE_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): for durations only. */
double cs_now_s(void);

#ifdef __cplusplus
}
#endif
#endif
