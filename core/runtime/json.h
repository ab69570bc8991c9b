/* json.h: the JSON cilscale writes and reads: a writer on a FILE (strings
 * escaped, numbers, objects and arrays laid out as each file wants), used
 * for results.json, checkpoint headers and the CLI's --json; and the strict
 * reader a safetensors header needs (objects, strings, integers; other
 * values are checked and skipped). */
#ifndef CILSCALE_RUNTIME_JSON_H
#define CILSCALE_RUNTIME_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- writing ---- */

/* How a string's characters are escaped. Always: '"' and '\\' as \" and \\,
 * and a control character below 0x20 as \u00xx (lowercase hex), except those
 * these flags give their short forms. Bytes from 0x80 are copied (UTF-8). */
enum {
    CS_JSON_ESC_NT = 1,  /* \n and \t */
    CS_JSON_ESC_BFR = 2, /* \b, \f and \r */
    CS_JSON_ESC_DEL = 4, /* 0x7f as \u007f too (else copied) */
};
/* As serde_json (and so the reference safetensors writer) escapes. */
#define CS_JSON_ESC_SERDE (CS_JSON_ESC_NT | CS_JSON_ESC_BFR)

/* s as a JSON string, quotes included. */
void cs_json_put_string(FILE *f, const char *s, unsigned esc);

/* What goes around the members of an object or array: first before the
 * first, sep between two, last after the last (only when there is one), and
 * colon between a key and its value. */
typedef struct cs_json_layout {
    const char *first, *sep, *last, *colon;
} cs_json_layout;
extern const cs_json_layout cs_json_compact; /* {"a":1,"b":[1,2]} */
extern const cs_json_layout cs_json_spaced;  /* {"a": 1, "b": [1, 2]} */

/* An object or array being written. */
typedef struct cs_json_level {
    const cs_json_layout *layout;
    int n;      /* members so far */
    char close; /* '}' or ']' */
} cs_json_level;

#define CS_JSON_DEPTH 16
typedef struct cs_json {
    FILE *f;
    unsigned esc; /* CS_JSON_ESC_* for every string */
    int depth;
    cs_json_level open[CS_JSON_DEPTH];
} cs_json;

void cs_json_start(cs_json *j, FILE *f, unsigned esc);
/* A value that is an object or array, its members to follow; cs_json_end closes it. */
void cs_json_object(cs_json *j, const cs_json_layout *layout);
void cs_json_array(cs_json *j, const cs_json_layout *layout);
void cs_json_end(cs_json *j);
/* In an object: the separator, the key and the colon; its value comes next. */
void cs_json_key(cs_json *j, const char *key);
/* Values (each one an array's member, or the value of the key before it). */
void cs_json_string(cs_json *j, const char *s);
void cs_json_text(cs_json *j, const char *s); /* s, or null when s is NULL or "" */
void cs_json_null(cs_json *j);
void cs_json_int(cs_json *j, long long v);
void cs_json_uint(cs_json *j, unsigned long long v);
void cs_json_double(cs_json *j, double v, int digits); /* "%.*g"; null when not finite */
/* An array of n ints laid out as layout says. */
void cs_json_ints(cs_json *j, const int *v, int n, const cs_json_layout *layout);

/* ---- reading ---- */

/* A reader over s[0..n); decoded strings go to str (n + 1 bytes, so they all
 * fit), each NUL-terminated and valid until cs_json_reader_free. The first
 * error is kept in why as "(byte K of the JSON): what". */
typedef struct cs_json_reader {
    const char *s;
    size_t n, i;
    char *str;
    size_t str_n;
    char why[160];
} cs_json_reader;

/* 0, or -1 when out of memory. */
int cs_json_reader_init(cs_json_reader *r, const char *s, size_t n);
void cs_json_reader_free(cs_json_reader *r);

/* Each returns 0, or -1 with why set. */
int cs_json_fail(cs_json_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cs_json_peek(cs_json_reader *r); /* the next byte past white space, or -1 at the end */
int cs_json_expect(cs_json_reader *r, char c);
/* A string: no control characters, no \u0000, surrogates paired; *out in r->str. */
int cs_json_read_string(cs_json_reader *r, const char **out);
/* A non-negative integer (no sign, fraction or exponent), at most INT64_MAX. */
int cs_json_read_uint(cs_json_reader *r, uint64_t *v);
/* Any value, checked and thrown away; depth is how deep it sits (the limit is 64). */
int cs_json_skip(cs_json_reader *r, int depth);
/* An object: field(r, key, ctx) for each member, which reads the value. */
int cs_json_read_object(cs_json_reader *r, int (*field)(cs_json_reader *r, const char *key, void *ctx), void *ctx);

#endif
