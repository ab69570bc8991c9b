/* json.c: the JSON writer (strings, numbers, objects and arrays on a FILE)
 * and the strict reader safetensors headers are parsed with. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/json.h"

#define MAX_DEPTH 64 /* how deep the reader follows nested values */

/* ------------------------------------------------------------------ writing */

const cs_json_layout cs_json_compact = {"", ",", "", ":"};
const cs_json_layout cs_json_spaced = {"", ", ", "", ": "};

void cs_json_put_string(FILE *f, const char *s, unsigned esc)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = esc & CS_JSON_ESC_NT ? "\\n" : NULL; break;
        case '\t': e = esc & CS_JSON_ESC_NT ? "\\t" : NULL; break;
        case '\b': e = esc & CS_JSON_ESC_BFR ? "\\b" : NULL; break;
        case '\f': e = esc & CS_JSON_ESC_BFR ? "\\f" : NULL; break;
        case '\r': e = esc & CS_JSON_ESC_BFR ? "\\r" : NULL; break;
        default: break;
        }
        if (e)
            fputs(e, f);
        else if (c < 0x20 || (c == 0x7f && (esc & CS_JSON_ESC_DEL)))
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void cs_json_start(cs_json *j, FILE *f, unsigned esc)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->esc = esc;
}

/* The separator before a member of the innermost object or array. */
static void member(cs_json *j)
{
    if (!j->depth)
        return;
    cs_json_level *o = &j->open[j->depth - 1];
    fputs(o->n ? o->layout->sep : o->layout->first, j->f);
    o->n++;
}

/* Before a value: in an array it is a member; in an object its key came first. */
static void value(cs_json *j)
{
    if (j->depth && j->open[j->depth - 1].close == ']')
        member(j);
}

static void open_nested(cs_json *j, const cs_json_layout *layout, char open, char close)
{
    value(j);
    fputc(open, j->f);
    if (j->depth < CS_JSON_DEPTH) {
        j->open[j->depth].layout = layout;
        j->open[j->depth].n = 0;
        j->open[j->depth].close = close;
    }
    j->depth++;
}

void cs_json_object(cs_json *j, const cs_json_layout *layout) { open_nested(j, layout, '{', '}'); }

void cs_json_array(cs_json *j, const cs_json_layout *layout) { open_nested(j, layout, '[', ']'); }

void cs_json_end(cs_json *j)
{
    if (!j->depth)
        return;
    j->depth--;
    if (j->depth >= CS_JSON_DEPTH)
        return;
    if (j->open[j->depth].n)
        fputs(j->open[j->depth].layout->last, j->f);
    fputc(j->open[j->depth].close, j->f);
}

void cs_json_key(cs_json *j, const char *key)
{
    member(j);
    cs_json_put_string(j->f, key, j->esc);
    fputs(j->depth ? j->open[j->depth - 1].layout->colon : ":", j->f);
}

void cs_json_string(cs_json *j, const char *s)
{
    value(j);
    cs_json_put_string(j->f, s, j->esc);
}

void cs_json_null(cs_json *j)
{
    value(j);
    fputs("null", j->f);
}

void cs_json_text(cs_json *j, const char *s)
{
    if (s && *s)
        cs_json_string(j, s);
    else
        cs_json_null(j);
}

void cs_json_int(cs_json *j, long long v)
{
    value(j);
    fprintf(j->f, "%lld", v);
}

void cs_json_uint(cs_json *j, unsigned long long v)
{
    value(j);
    fprintf(j->f, "%llu", v);
}

void cs_json_double(cs_json *j, double v, int digits)
{
    if (!isfinite(v)) {
        cs_json_null(j);
        return;
    }
    value(j);
    fprintf(j->f, "%.*g", digits, v);
}

void cs_json_ints(cs_json *j, const int *v, int n, const cs_json_layout *layout)
{
    cs_json_array(j, layout);
    for (int i = 0; i < n; i++)
        cs_json_int(j, v[i]);
    cs_json_end(j);
}

/* ------------------------------------------------------------------ reading */

int cs_json_reader_init(cs_json_reader *r, const char *s, size_t n)
{
    memset(r, 0, sizeof *r);
    r->s = s;
    r->n = n;
    r->str = malloc(n + 1);
    return r->str ? 0 : -1;
}

void cs_json_reader_free(cs_json_reader *r)
{
    free(r->str);
    r->str = NULL;
}

int cs_json_fail(cs_json_reader *p, const char *fmt, ...)
{
    if (!p->why[0]) {
        char m[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, sizeof m, fmt, ap);
        va_end(ap);
        snprintf(p->why, sizeof p->why, "(byte %zu of the JSON): %s", p->i, m);
    }
    return -1;
}

static void jws(cs_json_reader *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

int cs_json_peek(cs_json_reader *p)
{
    jws(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

int cs_json_expect(cs_json_reader *p, char c)
{
    if (cs_json_peek(p) != c)
        return p->i < p->n ? cs_json_fail(p, "expected '%c', found '%c'", c, p->s[p->i])
                           : cs_json_fail(p, "expected '%c', found the end", c);
    p->i++;
    return 0;
}

static int hex4(cs_json_reader *p, uint32_t *v)
{
    if (p->n - p->i < 4)
        return cs_json_fail(p, "\\u needs four hex digits");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return cs_json_fail(p, "\\u needs four hex digits");
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

int cs_json_read_string(cs_json_reader *p, const char **out)
{
    if (cs_json_expect(p, '"'))
        return -1;
    char *o = p->str + p->str_n;
    size_t k = 0;
    for (;;) {
        if (p->i >= p->n)
            return cs_json_fail(p, "a string runs to the end of the header");
        unsigned char c = (unsigned char)p->s[p->i++];
        if (c == '"')
            break;
        if (c < 0x20)
            return cs_json_fail(p, "a control character in a string");
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        if (p->i >= p->n)
            return cs_json_fail(p, "a string runs to the end of the header");
        c = (unsigned char)p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/': o[k++] = (char)c; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp))
                return -1;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return cs_json_fail(p, "a lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return cs_json_fail(p, "a lone high surrogate");
                p->i += 2;
                if (hex4(p, &lo))
                    return -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return cs_json_fail(p, "a lone high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                return cs_json_fail(p, "\\u0000 in a string");
            if (cp < 0x80) {
                o[k++] = (char)cp;
            } else if (cp < 0x800) {
                o[k++] = (char)(0xc0 | cp >> 6);
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                o[k++] = (char)(0xe0 | cp >> 12);
                o[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else {
                o[k++] = (char)(0xf0 | cp >> 18);
                o[k++] = (char)(0x80 | (cp >> 12 & 0x3f));
                o[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: return cs_json_fail(p, "unknown escape '\\%c'", c);
        }
    }
    o[k++] = '\0';
    p->str_n += k;
    *out = o;
    return 0;
}

int cs_json_read_uint(cs_json_reader *p, uint64_t *v)
{
    int c = cs_json_peek(p);
    if (c < '0' || c > '9')
        return cs_json_fail(p, "expected a non-negative integer");
    size_t start = p->i;
    *v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i++] - '0');
        if (*v > ((uint64_t)INT64_MAX - d) / 10)
            return cs_json_fail(p, "an integer too large");
        *v = *v * 10 + d;
    }
    if (p->s[start] == '0' && p->i - start > 1)
        return cs_json_fail(p, "a number with a leading zero");
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return cs_json_fail(p, "expected an integer, found a fraction or exponent");
    return 0;
}

static int jskip_number(cs_json_reader *p)
{
    size_t i = p->i;
    if (i < p->n && p->s[i] == '-')
        i++;
    if (i >= p->n || p->s[i] < '0' || p->s[i] > '9')
        return cs_json_fail(p, "expected a value");
    if (p->s[i] == '0')
        i++;
    else
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    if (i < p->n && p->s[i] == '.') {
        if (++i >= p->n || p->s[i] < '0' || p->s[i] > '9')
            return cs_json_fail(p, "a bad number");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        if (++i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9')
            return cs_json_fail(p, "a bad number");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9')
            i++;
    }
    p->i = i;
    return 0;
}

/* Any value, checked and thrown away (say, fields a tensor entry has that the caller does not use). */
int cs_json_skip(cs_json_reader *p, int depth)
{
    if (depth > MAX_DEPTH)
        return cs_json_fail(p, "nested deeper than %d", MAX_DEPTH);
    int c = cs_json_peek(p);
    const char *s;
    if (c == '"') {
        size_t mark = p->str_n;
        int rc = cs_json_read_string(p, &s);
        p->str_n = mark;
        return rc;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->i++;
        if (cs_json_peek(p) == close) {
            p->i++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                size_t mark = p->str_n;
                int rc = cs_json_read_string(p, &s);
                p->str_n = mark;
                if (rc || cs_json_expect(p, ':'))
                    return -1;
            }
            if (cs_json_skip(p, depth + 1))
                return -1;
            int d = cs_json_peek(p);
            p->i++;
            if (d == close)
                return 0;
            if (d != ',') {
                p->i--;
                return cs_json_fail(p, "expected ',' or '%c'", close);
            }
        }
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(words[k]);
        if (p->n - p->i >= l && memcmp(p->s + p->i, words[k], l) == 0) {
            p->i += l;
            return 0;
        }
    }
    return jskip_number(p);
}

int cs_json_read_object(cs_json_reader *p, int (*field)(cs_json_reader *, const char *, void *), void *ctx)
{
    if (cs_json_expect(p, '{'))
        return -1;
    if (cs_json_peek(p) == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        const char *key;
        if (cs_json_read_string(p, &key) || cs_json_expect(p, ':') || field(p, key, ctx))
            return -1;
        int d = cs_json_peek(p);
        if (d == '}') {
            p->i++;
            return 0;
        }
        if (d != ',')
            return cs_json_fail(p, "expected ',' or '}'");
        p->i++;
    }
}

