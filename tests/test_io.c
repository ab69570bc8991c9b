/* test_io.c: the runtime's file writing and JSON: the atomic writer (the
 * target replaced only on success, links at the temporary path never
 * followed, no temporary file left after a failure, one-line messages) and
 * the JSON writer's escaping and layout, with exact expected text, and the
 * reader's string decoding. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/atomic.h"
#include "runtime/json.h"
#include "testutil.h"

static const char *tmp_of(const char *path)
{
    static char t[4][600];
    static int slot;
    char *p = t[slot++ % 4];
    snprintf(p, 600, "%s.tmp", path);
    return p;
}

/* The whole file, NUL-terminated, in a static buffer. */
static const char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void assert_one_line_naming(const char *msg, const char *path)
{
    ck_assert_msg(strstr(msg, path) != NULL, "'%s' does not name %s", msg, path);
    ck_assert_msg(strchr(msg, '\n') == NULL, "'%s' is more than one line", msg);
}

/* ---- the atomic writer ---- */

START_TEST(atomic_replaces_on_success)
{
    const char *p = tu_path("f.txt");
    cs_error err;
    ck_assert_int_eq(cs_atomic_write(p, "old\n", 4, 0644, &err), CS_OK);
    ck_assert_str_eq(slurp(p), "old\n");
    ck_assert_int_eq(cs_atomic_write(p, "new text\n", 9, 0644, &err), CS_OK);
    ck_assert_str_eq(slurp(p), "new text\n");
    ck_assert(!exists(tmp_of(p)));
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    mode_t mask = umask(0);
    umask(mask);
    ck_assert_int_eq(st.st_mode & 0777, 0644 & ~mask);

    /* written through a->f, then dropped without a commit: the old file stays */
    cs_atomic a;
    ck_assert_int_eq(cs_atomic_open(&a, p, 0644, &err), CS_OK);
    fputs("half", a.f);
    ck_assert(exists(tmp_of(p)));
    cs_atomic_release(&a);
    ck_assert(!exists(tmp_of(p)));
    ck_assert_str_eq(slurp(p), "new text\n");

    /* a leftover temporary file from a crash does not get in the way */
    FILE *f = fopen(tmp_of(p), "w");
    ck_assert(f != NULL);
    fputs("junk", f);
    fclose(f);
    ck_assert_int_eq(cs_atomic_write(p, "third\n", 6, 0644, &err), CS_OK);
    ck_assert_str_eq(slurp(p), "third\n");
    ck_assert(!exists(tmp_of(p)));
}
END_TEST

/* A link planted at the temporary path: neither it nor what it points at is written through. */
START_TEST(atomic_does_not_follow_links)
{
    const char *p = tu_path("target.txt"), *victim = tu_path("victim.txt");
    cs_error err;
    ck_assert_int_eq(cs_atomic_write(victim, "victim\n", 7, 0644, &err), CS_OK);
    ck_assert_int_eq(symlink(victim, tmp_of(p)), 0);
    ck_assert_int_eq(cs_atomic_write(p, "mine\n", 5, 0644, &err), CS_OK);
    ck_assert_str_eq(slurp(victim), "victim\n");
    ck_assert_str_eq(slurp(p), "mine\n");
    struct stat st;
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert(!exists(tmp_of(p)));

    /* a dangling link: nothing is created where it points */
    const char *nowhere = tu_path("nowhere.txt");
    ck_assert_int_eq(symlink(nowhere, tmp_of(p)), 0);
    ck_assert_int_eq(cs_atomic_write(p, "again\n", 6, 0644, &err), CS_OK);
    ck_assert(!exists(nowhere));
    ck_assert_str_eq(slurp(p), "again\n");
    ck_assert(!exists(tmp_of(p)));
}
END_TEST

START_TEST(atomic_failures)
{
    cs_error err;
    /* a folder that does not exist */
    const char *p = tu_path("no/such/dir/x.txt");
    ck_assert_int_eq(cs_atomic_write(p, "x", 1, 0644, &err), CS_ERR_IO);
    assert_one_line_naming(err.msg, p);
    ck_assert_msg(strstr(err.msg, "cannot create") && strstr(err.msg, strerror(ENOENT)), "%s", err.msg);
    ck_assert(!exists(tmp_of(p)));

    /* the target is a folder: the rename fails, the folder stays, the temporary file goes */
    const char *dir = tu_path("adir");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(cs_atomic_write(dir, "x", 1, 0644, &err), CS_ERR_IO);
    assert_one_line_naming(err.msg, dir);
    ck_assert_msg(strstr(err.msg, "cannot rename"), "%s", err.msg);
    ck_assert(!exists(tmp_of(dir)));
    struct stat st;
    ck_assert(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));

    /* a folder where the temporary file would go: not removed, an error */
    const char *q = tu_path("blocked.txt");
    ck_assert_int_eq(cs_atomic_write(q, "old\n", 4, 0644, &err), CS_OK);
    ck_assert_int_eq(mkdir(tmp_of(q), 0755), 0);
    ck_assert_int_eq(cs_atomic_write(q, "new\n", 4, 0644, &err), CS_ERR_IO);
    assert_one_line_naming(err.msg, tmp_of(q));
    ck_assert_str_eq(slurp(q), "old\n");
    ck_assert(stat(tmp_of(q), &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_int_eq(rmdir(tmp_of(q)), 0);

    ck_assert_int_eq(cs_atomic_write("", "x", 1, 0644, &err), CS_ERR_ARG);
}
END_TEST

/* A write that fails half-way (the file size limit) leaves the old file as it was. */
START_TEST(atomic_failed_write_keeps_old)
{
    const char *p = tu_path("keep.txt");
    cs_error err;
    ck_assert_int_eq(cs_atomic_write(p, "old\n", 4, 0644, &err), CS_OK);
    static char big[1 << 16];
    memset(big, 'x', sizeof big);

    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = cs_atomic_write(p, big, sizeof big, 0644, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    ck_assert_int_eq(rc, CS_ERR_IO);
    assert_one_line_naming(err.msg, p);
    ck_assert_msg(strstr(err.msg, "cannot write") && strstr(err.msg, strerror(EFBIG)), "%s", err.msg);
    ck_assert(!exists(tmp_of(p)));
    ck_assert_str_eq(slurp(p), "old\n");
}
END_TEST

/* ---- the JSON writer ---- */

/* What fn wrote, in a static buffer. */
static char json_out[4096];
static FILE *json_open(void) { return fmemopen(json_out, sizeof json_out, "w"); }
static void json_close(FILE *f)
{
    ck_assert(!ferror(f));
    fclose(f);
}

static const char *escaped(const char *s, unsigned esc)
{
    FILE *f = json_open();
    cs_json_put_string(f, s, esc);
    json_close(f);
    return json_out;
}

START_TEST(json_escaping)
{
    /* quote and backslash always; controls as \u00xx unless given their short forms */
    ck_assert_str_eq(escaped("", 0), "\"\"");
    ck_assert_str_eq(escaped("a\"b\\c/d", 0), "\"a\\\"b\\\\c/d\"");
    const char *ctl = "\n\t\r\b\f\x01\x1f\x7f";
    ck_assert_str_eq(escaped(ctl, 0), "\"\\u000a\\u0009\\u000d\\u0008\\u000c\\u0001\\u001f\x7f\"");
    ck_assert_str_eq(escaped(ctl, CS_JSON_ESC_NT | CS_JSON_ESC_DEL),
                     "\"\\n\\t\\u000d\\u0008\\u000c\\u0001\\u001f\\u007f\"");
    ck_assert_str_eq(escaped(ctl, CS_JSON_ESC_SERDE), "\"\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\"");
    /* UTF-8 passes through */
    ck_assert_str_eq(escaped("caf\xc3\xa9 \xe2\x82\xac", CS_JSON_ESC_SERDE), "\"caf\xc3\xa9 \xe2\x82\xac\"");
}
END_TEST

START_TEST(json_layout)
{
    FILE *f = json_open();
    cs_json j;
    cs_json_start(&j, f, CS_JSON_ESC_NT);
    static const cs_json_layout lines = {"\n  ", ",\n  ", "\n", ": "};
    cs_json_object(&j, &lines);
    cs_json_key(&j, "s");
    cs_json_string(&j, "x\ny");
    cs_json_key(&j, "t");
    cs_json_text(&j, "");
    cs_json_key(&j, "n");
    cs_json_double(&j, 0.123456789, 6);
    cs_json_key(&j, "nan");
    cs_json_double(&j, NAN, 6);
    cs_json_key(&j, "big");
    cs_json_int(&j, -9000000000LL);
    cs_json_key(&j, "u");
    cs_json_uint(&j, 18446744073709551615ull);
    cs_json_key(&j, "ints");
    int v[] = {1, 2, 3};
    cs_json_ints(&j, v, 3, &cs_json_spaced);
    cs_json_key(&j, "empty");
    cs_json_ints(&j, v, 0, &lines);
    cs_json_key(&j, "c");
    cs_json_object(&j, &cs_json_compact);
    cs_json_key(&j, "a");
    cs_json_array(&j, &cs_json_compact);
    cs_json_int(&j, 1);
    cs_json_null(&j);
    cs_json_end(&j);
    cs_json_end(&j);
    cs_json_end(&j);
    json_close(f);
    ck_assert_str_eq(json_out, "{\n"
                               "  \"s\": \"x\\ny\",\n"
                               "  \"t\": null,\n"
                               "  \"n\": 0.123457,\n"
                               "  \"nan\": null,\n"
                               "  \"big\": -9000000000,\n"
                               "  \"u\": 18446744073709551615,\n"
                               "  \"ints\": [1, 2, 3],\n"
                               "  \"empty\": [],\n"
                               "  \"c\": {\"a\":[1,null]}\n"
                               "}");
}
END_TEST

/* ---- the JSON reader ---- */

static int read_one(const char *text, const char **out, cs_json_reader *r)
{
    ck_assert_int_eq(cs_json_reader_init(r, text, strlen(text)), 0);
    return cs_json_read_string(r, out);
}

START_TEST(json_reader_strings)
{
    cs_json_reader r;
    const char *s;
    ck_assert_int_eq(read_one("\"a\\\"b\\\\c\\/d\\n\\t\\r\\b\\f\"", &s, &r), 0);
    ck_assert_str_eq(s, "a\"b\\c/d\n\t\r\b\f");
    cs_json_reader_free(&r);
    ck_assert_int_eq(read_one("\"\\u00e9\\u20ac\\ud83d\\ude00\"", &s, &r), 0);
    ck_assert_str_eq(s, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cs_json_reader_free(&r);
    ck_assert_int_eq(read_one("\"\\ud83d\"", &s, &r), -1);
    ck_assert_str_eq(r.why, "(byte 7 of the JSON): a lone high surrogate");
    cs_json_reader_free(&r);
    ck_assert_int_eq(read_one("\"a\nb\"", &s, &r), -1);
    ck_assert_str_eq(r.why, "(byte 3 of the JSON): a control character in a string");
    cs_json_reader_free(&r);
    ck_assert_int_eq(read_one("\"\\u0000\"", &s, &r), -1);
    cs_json_reader_free(&r);
}
END_TEST

/* Two cases: the atomic writer's tests (each in a fresh folder, removed after) and the JSON ones. */
/* A message is one line: untrusted control characters are shown as \xNN, and
 * a cut is marked, never silent (issue 13 items 8 and 9). */
START_TEST(test_error_messages_escaped_and_marked)
{
    cs_error e;
    cs_error_set(&e, CS_ERR_ARG, "tensor '%s': bad", "a\x1b[31mb\nc\x7f");
    ck_assert_str_eq(e.msg, "tensor 'a\\x1b[31mb\\x0ac\\x7f': bad");
    ck_assert_int_eq(e.status, CS_ERR_ARG);
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    cs_error_set(&e, CS_ERR_IO, "%s", big);
    size_t n = strlen(e.msg);
    ck_assert_uint_lt(n, sizeof e.msg);
    ck_assert_str_eq(e.msg + n - 5, "[...]");
    /* longer paths than PATH_MAX fit whole: two 4095-byte paths in one message */
    ck_assert_uint_ge(sizeof e.msg, 2 * 4096);
}
END_TEST

static Suite *io_suite(void)
{
    const TTest *atomic[] = {atomic_replaces_on_success, atomic_does_not_follow_links, atomic_failures,
                             atomic_failed_write_keeps_old};
    const TTest *json[] = {json_escaping, json_layout, json_reader_strings, test_error_messages_escaped_and_marked};
    Suite *s = suite_create("io");
    TCase *tc_atomic = tcase_create("atomic"), *tc_json = tcase_create("json");
    for (size_t i = 0; i < sizeof atomic / sizeof atomic[0]; i++)
        tcase_add_test(tc_atomic, atomic[i]);
    for (size_t i = 0; i < sizeof json / sizeof json[0]; i++)
        tcase_add_test(tc_json, json[i]);
    tcase_add_checked_fixture(tc_atomic, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc_atomic);
    suite_add_tcase(s, tc_json);
    return s;
}

int main(void) { return tu_run_suite(io_suite()) ? 1 : 0; }
