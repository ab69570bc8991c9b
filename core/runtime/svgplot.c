/* svgplot.c: the chart of svgplot.h, written through the atomic writer. */
#include <math.h>
#include <stdio.h>

#include "cilscale/policy.h"
#include "runtime/atomic.h"
#include "runtime/svgplot.h"

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_COLOURS ((int)(sizeof palette / sizeof palette[0]))
static const char *const dashes[] = {NULL, "7 4", "2 3", "9 3 2 3"};
#define N_DASHES ((int)(sizeof dashes / sizeof dashes[0]))

const char *cs_svg_colour(int k) { return palette[k % N_COLOURS]; }
const char *cs_svg_dash(int k) { return dashes[(k / N_COLOURS) % N_DASHES]; }

void cs_svg_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(c < 0x20 ? ' ' : c, f);
        }
    }
}

/* An axis [lo, hi] with a tick step of 1, 2 or 5 times a power of ten. */
static void axis(double vmin, double vmax, int target, double *lo, double *hi, double *step)
{
    /* a range that is one value, or one value up to rounding (two series of
     * the same numbers summed in another order), gets room around it: a step
     * below the values' resolution would never advance a tick loop */
    const double mag = fmax(fabs(vmin), fabs(vmax));
    if (!(vmax - vmin > 1e-9 * mag)) {
        double d = mag > 0 ? mag * 0.1 : 1;
        vmin -= d, vmax += d;
    }
    double raw = (vmax - vmin) / target, p = pow(10, floor(log10(raw))), m = raw / p;
    *step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    *lo = floor(vmin / *step + 1e-9) * *step;
    *hi = ceil(vmax / *step - 1e-9) * *step;
}

/* The ticks from lo to hi at step (lo + i step for i = 0..n), at most 1000. */
static int n_ticks(double lo, double hi, double step)
{
    double n = step > 0 ? floor((hi - lo) / step + 1e-9) : 0;
    return isfinite(n) && n > 0 ? (n < 1000 ? (int)n : 1000) : 0;
}

static int usable(const cs_plot *p, const cs_plot_point *q)
{
    return isfinite(q->x) && isfinite(q->y) && (!p->log_x || q->x > 0);
}

void cs_plot_fwrite(FILE *f, const cs_plot *p)
{
    const double width = 800, left = 75, right = width - 30, top = 50, bottom = 400;
    const double legend_top = bottom + 72, legend_row = 20;
    /* the legend: one column up to 6 series, then two (a compact figure) */
    const int legend_cols = p->n_series > 6 ? 2 : 1;
    const int legend_rows = p->n_series > 0 ? (p->n_series + legend_cols - 1) / legend_cols : 1;
    const double height = legend_top + legend_rows * legend_row + (p->note ? 24 : 10);
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < p->n_series; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            const cs_plot_point *q = &p->series[s].pts[i];
            if (!usable(p, q))
                continue;
            double x = p->log_x ? log10(q->x) : q->x, sd = isfinite(q->sd) ? q->sd : 0;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x);
            ymin = fmin(ymin, q->y - sd), ymax = fmax(ymax, q->y + sd);
        }
    for (int v = 0; v < p->n_vlines; v++)
        if (!p->log_x || p->vlines[v].x > 0) {
            double x = p->log_x ? log10(p->vlines[v].x) : p->vlines[v].x;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x);
        }
    if (!(xmax >= xmin))
        xmin = 0, xmax = 1, ymin = 0, ymax = 100;
    double x0, x1, xs, y0, y1, ys;
    if (p->log_x) { /* whole decades, ticks at 1, 2 and 5 times each */
        x0 = floor(xmin - 0.05), x1 = ceil(xmax + 0.05), xs = 1;
    } else {
        double pad = 0.04 * (xmax - xmin);
        axis(xmin - pad, xmax + pad, 8, &x0, &x1, &xs);
    }
    double pad = 0.04 * (ymax - ymin);
    if (p->fixed_y && p->y_hi > p->y_lo)
        axis(p->y_lo, p->y_hi, 5, &y0, &y1, &ys);
    else
        axis(ymin - pad, ymax + pad, 6, &y0, &y1, &ys);
    if (!p->log_x && p->n_x_ticks > 0) { /* the axis spans the ticks, with a little room */
        double lo = p->x_ticks[0], hi = p->x_ticks[0];
        for (int i = 1; i < p->n_x_ticks; i++)
            lo = fmin(lo, p->x_ticks[i]), hi = fmax(hi, p->x_ticks[i]);
        double room = hi > lo ? 0.05 * (hi - lo) : 1;
        x0 = fmin(lo, xmin) - room, x1 = fmax(hi, xmax) + room;
    }
#define PX(x) (left + (((p->log_x ? log10(x) : (x))) - x0) / (x1 - x0) * (right - left))
#define PY(y) (bottom - ((y) - y0) / (y1 - y0) * (bottom - top))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
            "fill=\"#ffffff\"/>\n",
            width, height, width, height, width, height);
    fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">",
            (left + right) / 2);
    cs_svg_text(f, p->title);
    fputs("</text>\n<g stroke=\"#dddddd\" stroke-width=\"1\">\n", f);
    for (int i = 0, n = n_ticks(y0, y1, ys); i <= n; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, PY(y0 + i * ys), right,
                PY(y0 + i * ys));
    for (int i = 0; !p->log_x && i < p->n_x_ticks; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(p->x_ticks[i]), top,
                PX(p->x_ticks[i]), bottom);
    fputs("</g>\n<g stroke=\"#000000\" stroke-width=\"1\">\n", f);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, bottom, right, bottom);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, top, left, bottom);
    fputs("</g>\n<g fill=\"#000000\">\n", f);
    for (int i = 0, n = n_ticks(y0, y1, ys); i <= n; i++) {
        const double y = y0 + i * ys;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left - 8, PY(y) + 4,
                fabs(y) < 1e-9 * ys ? 0 : y);
    }
    if (p->log_x) {
        static const int mant[] = {1, 2, 5};
        for (double dec = x0; dec < x1 + 1e-9; dec += 1)
            for (int k = 0; k < 3; k++) {
                double v = mant[k] * pow(10, dec);
                if (log10(v) > x1 + 1e-9)
                    break;
                char lab[32];
                if (v >= 1000 && v == floor(v))
                    cs_budget_short((int64_t)v, lab, sizeof lab); /* 250k, 1M */
                else
                    snprintf(lab, sizeof lab, "%g", v);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", PX(v), bottom + 20, lab);
            }
    } else if (p->n_x_ticks > 0) {
        for (int i = 0; i < p->n_x_ticks; i++)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(p->x_ticks[i]),
                    bottom + 20, p->x_ticks[i]);
    } else {
        for (int i = 0, n = n_ticks(x0, x1, xs); i <= n; i++) {
            const double x = x0 + i * xs;
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(x), bottom + 20,
                    fabs(x) < 1e-9 * xs ? 0 : x);
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">", (left + right) / 2,
            bottom + 45);
    cs_svg_text(f, p->xlabel);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
               "transform=\"rotate(-90 %.1f %.1f)\">",
            left - 50, (top + bottom) / 2, left - 50, (top + bottom) / 2);
    cs_svg_text(f, p->ylabel);
    fputs("</text>\n</g>\n", f);
    /* reference lines (budgets) */
    for (int v = 0; v < p->n_vlines; v++) {
        if (p->log_x && !(p->vlines[v].x > 0))
            continue;
        double x = PX(p->vlines[v].x);
        fprintf(f, "<g class=\"vline\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555555\" "
                   "stroke-dasharray=\"4 3\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">",
                x, top, x, bottom, x - 3, top + 12);
        cs_svg_text(f, p->vlines[v].label);
        fputs("</text></g>\n", f);
    }
    for (int s = 0; s < p->n_series; s++) {
        const cs_plot_series *se = &p->series[s];
        const char *colour = cs_svg_colour(se->style ? se->style - 1 : s),
                   *dash = se->style ? "7 4" : cs_svg_dash(s);
        fprintf(f, "<g class=\"series\" stroke=\"%s\" fill=\"%s\">\n<title>", colour, colour);
        cs_svg_text(f, se->label);
        fputs("</title>\n", f);
        if (se->band) { /* mean +- sd, shaded */
            int m = 0;
            fputs("<polygon stroke=\"none\" fill-opacity=\"0.18\" points=\"", f);
            for (int i = 0; i < se->n; i++)
                if (usable(p, &se->pts[i]))
                    fprintf(f, "%s%.1f,%.1f", m++ ? " " : "", PX(se->pts[i].x),
                            PY(se->pts[i].y + (isfinite(se->pts[i].sd) ? se->pts[i].sd : 0)));
            for (int i = se->n - 1; i >= 0; i--)
                if (usable(p, &se->pts[i]))
                    fprintf(f, " %.1f,%.1f", PX(se->pts[i].x),
                            PY(se->pts[i].y - (isfinite(se->pts[i].sd) ? se->pts[i].sd : 0)));
            fputs("\"/>\n", f);
        }
        if (se->line) {
            int m = 0;
            fputs("<polyline fill=\"none\" stroke-width=\"2\"", f);
            if (dash)
                fprintf(f, " stroke-dasharray=\"%s\"", dash);
            fputs(" points=\"", f);
            for (int i = 0; i < se->n; i++)
                if (usable(p, &se->pts[i]))
                    fprintf(f, "%s%.1f,%.1f", m++ ? " " : "", PX(se->pts[i].x), PY(se->pts[i].y));
            fputs("\"/>\n", f);
        }
        for (int i = 0; i < se->n; i++) {
            const cs_plot_point *q = &se->pts[i];
            if (!usable(p, q))
                continue;
            if (!se->band && isfinite(q->sd) && q->sd > 0)
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"1.5\"/>\n",
                        PX(q->x), PY(q->y - q->sd), PX(q->x), PY(q->y + q->sd));
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"/>\n", PX(q->x), PY(q->y), q->highlight ? 6 : 3);
            if (q->highlight)
                fprintf(f, "<circle class=\"highlight\" cx=\"%.1f\" cy=\"%.1f\" r=\"10\" fill=\"none\" "
                           "stroke=\"#000000\" stroke-width=\"2\"/>\n",
                        PX(q->x), PY(q->y));
        }
        fputs("</g>\n", f);
    }
    fputs("<g class=\"legend\">\n", f);
    for (int s = 0; s < p->n_series; s++) {
        const int style = p->series[s].style;
        const char *colour = cs_svg_colour(style ? style - 1 : s), *dash = style ? "7 4" : cs_svg_dash(s);
        const double y = legend_top + (s % legend_rows) * legend_row;
        const double x = left + (s / legend_rows) * (right - left) / legend_cols;
        if (p->series[s].line) {
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"", x,
                    y, x + 30, y, colour);
            if (dash)
                fprintf(f, " stroke-dasharray=\"%s\"", dash);
            fputs("/>\n", f);
        }
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n<text x=\"%.1f\" y=\"%.1f\">", x + 15, y,
                colour, x + 40, y + 4);
        cs_svg_text(f, p->series[s].label);
        fputs("</text>\n", f);
    }
    if (p->note) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#444444\">", left,
                legend_top + legend_rows * legend_row + 6);
        cs_svg_text(f, p->note);
        fputs("</text>\n", f);
    }
    fputs("</g>\n</svg>\n", f);
#undef PX
#undef PY
}

int cs_plot_write(const char *path, const cs_plot *p, cs_error *err)
{
    if (!path || !p || (p->n_series > 0 && !p->series) || (p->n_vlines > 0 && !p->vlines))
        return cs_error_set(err, CS_ERR_ARG, "cs_plot_write: no path or no chart");
    cs_atomic a;
    int rc = cs_atomic_open(&a, path, 0666, err);
    if (rc == CS_OK) {
        cs_plot_fwrite(a.f, p);
        rc = cs_atomic_commit(&a, err);
    }
    cs_atomic_release(&a);
    return rc;
}
