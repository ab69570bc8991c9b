/* svgplot.h: a small self-contained SVG chart: series of points (lines, markers,
 * error bars, a shaded band), optional log x axis, vertical reference lines and a
 * legend. `cilscale report` draws its seed-band and Figure 1 plots with it. */
#ifndef CILSCALE_SVGPLOT_H
#define CILSCALE_SVGPLOT_H

#include <stdio.h>

#include "cilscale/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_plot_point {
    double x, y;
    double sd;       /* error bar / band half-height; NaN: none */
    int highlight;   /* drawn larger, ringed (psi's point) */
} cs_plot_point;

typedef struct cs_plot_series {
    const char *label;
    const cs_plot_point *pts;
    int n;
    int line;        /* join the points (in the order given) */
    int band;        /* shade y +- sd along the line instead of error bars */
    int style;       /* 0: the series' own colour and dash; k > 0: the colour of series k - 1, dashed */
} cs_plot_series;

typedef struct cs_plot_vline {
    double x;
    const char *label;
} cs_plot_vline;

typedef struct cs_plot {
    const char *title, *xlabel, *ylabel;
    int log_x;       /* x on a log10 axis (x > 0) */
    const cs_plot_series *series;
    int n_series;
    const cs_plot_vline *vlines;
    int n_vlines;
    const char *note; /* a line of small text under the legend (may be NULL) */
    int fixed_y;      /* y from y_lo to y_hi whatever the data (accuracies: 0 to 100) */
    double y_lo, y_hi;
    const double *x_ticks; /* ticks (and grid lines) at these x only, when n_x_ticks > 0 */
    int n_x_ticks;
} cs_plot;

/* What every plot shares: the k-th series' colour (eight, then again) and
 * dash pattern (NULL: solid; the next pattern after each eight), and text
 * escaped for SVG (control characters become spaces). */
const char *cs_svg_colour(int k);
const char *cs_svg_dash(int k);
void cs_svg_text(FILE *f, const char *s);

/* Writes the chart to f (the caller's file, written atomically by the caller). */
void cs_plot_fwrite(FILE *f, const cs_plot *p);

/* Writes the chart to PATH.tmp and renames it into place. Points with a
 * non-finite x or y are left out. */
int cs_plot_write(const char *path, const cs_plot *p, cs_error *err);

#ifdef __cplusplus
}
#endif
#endif
