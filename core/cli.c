/* cli.c: helpers shared by the cilscale subcommands. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

cs_registry *cli_load_plugins(const char *cmd, const char *explicit_conf, int quiet)
{
    char path[PATH_MAX];
    cs_plugins_conf_path(explicit_conf, path, sizeof path);
    cs_registry *r = cs_registry_new();
    if (!r) {
        fprintf(stderr, "cilscale %s: out of memory\n", cmd);
        return NULL;
    }
    cs_error err;
    if (cs_registry_load_conf(r, path, &err)) {
        fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
        cs_registry_free(r);
        return NULL;
    }
    if (!quiet)
        for (size_t i = 0; i < cs_registry_n_problems(r); i++)
            fprintf(stderr, "cilscale %s: warning: %s\n", cmd, cs_registry_problem(r, i));
    return r;
}

const cs_plugin *cli_find(const char *cmd, const cs_registry *r, int kind, const char *name)
{
    const cs_plugin *p = cs_registry_find(r, kind, name);
    if (!p) {
        char names[1024];
        cs_registry_names(r, kind, names, sizeof names);
        fprintf(stderr, "cilscale %s: unknown %s '%s' (loaded: %s)\n", cmd,
                kind == CS_KIND_ARCH ? "architecture" : cs_kind_name(kind), name, names);
    }
    return p;
}

const char *cli_thousands(int64_t n, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t len = strlen(digits), o = 0;
    if (n < 0 && o + 1 < size)
        buf[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

void cli_bad_option(const char *cmd, int opt, char *const *argv, int ind)
{
    const char *word = argv[ind - 1];
    if (opt && strchr(word, '=') == NULL && word[1] != '-')
        fprintf(stderr, "cilscale %s: bad or incomplete option '-%c' (see cilscale %s --help)\n", cmd, opt, cmd);
    else
        fprintf(stderr, "cilscale %s: unknown option or missing value: '%s' (see cilscale %s --help)\n", cmd, word,
                cmd);
}

int cli_int(const char *cmd, const char *opt, const char *s, int min, int max, int *out)
{
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        fprintf(stderr, "cilscale %s: --%s '%s': expected a whole number from %d to %d\n", cmd, opt, s, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_positive(const char *cmd, const char *opt, const char *s, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v > 0) || v > 1e6) {
        fprintf(stderr, "cilscale %s: --%s '%s': expected a number > 0\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

void cli_net_defaults(cli_net_opts *o)
{
    memset(o, 0, sizeof *o);
    o->classes = 100;
    o->in_channels = 3;
    o->stem = CS_STEM_IMAGENET;
    o->head = CS_HEAD_LINEAR;
}

int cli_net_option(const char *cmd, cli_net_opts *o, int opt, const char *arg)
{
    cs_error err;
    switch (opt) {
    case 'a': o->arch = arg; return 1;
    case 'p': o->policy = arg; return 1;
    case 'P': o->plugins_conf = arg; return 1;
    case 'j': o->json = 1; return 1;
    case 'm':
        if (cs_budget_parse(arg, &o->budget, &err)) {
            fprintf(stderr, "cilscale %s: --%s\n", cmd, err.msg);
            return -1;
        }
        o->budget_text = arg;
        o->have_budget = 1;
        return 1;
    case 'k': return cli_int(cmd, "classes", arg, 1, 1000000, &o->classes) ? -1 : 1;
    case 'c': return cli_int(cmd, "in-channels", arg, 1, 4096, &o->in_channels) ? -1 : 1;
    case 's':
        if (cs_stem_parse(arg, &o->stem)) {
            fprintf(stderr, "cilscale %s: --stem '%s': expected imagenet or small\n", cmd, arg);
            return -1;
        }
        return 1;
    case 'H':
        if (cs_head_parse(arg, &o->head)) {
            fprintf(stderr, "cilscale %s: --head '%s': expected linear or cosine\n", cmd, arg);
            return -1;
        }
        return 1;
    default: return 0;
    }
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void cli_json_ints(FILE *f, const int *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? ", " : "", v[i]);
    fputc(']', f);
}
