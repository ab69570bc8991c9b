/* test_registry.c: the plugin loader: every way a plugin can fail to load (one
 * problem line naming the file and the cause, the others still load), conf
 * parsing, relative paths, the conf search order and built-in plugins. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cilscale/cil.h"
#include "runtime/plugins_conf.h"
#include "testutil.h"

/* ---- helpers ---- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set (run the tests with meson test)", name);
    return v;
}

/* dir/name into buf; fails the test when it does not fit. */
static const char *join(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    ck_assert_msg(n >= 0 && (size_t)n < size, "path %s/%s too long", dir, name);
    return buf;
}

/* $CILSCALE_TEST_PLUGIN_DIR/file, absolute. */
static const char *test_plugin(const char *file, char *buf, size_t size)
{
    return join(buf, size, env("CILSCALE_TEST_PLUGIN_DIR"), file);
}

/* A shipped plugin of the build tree: build/plugins/file (the test plugin dir is build/tests/plugins). */
static const char *shipped_plugin(const char *file, char *buf, size_t size)
{
    char root[PATH_MAX], up[PATH_MAX], dir[PATH_MAX];
    join(up, sizeof up, env("CILSCALE_TEST_PLUGIN_DIR"), "../..");
    ck_assert_msg(realpath(up, root) != NULL, "cannot resolve %s", up);
    join(buf, size, join(dir, sizeof dir, root, "plugins"), file);
    struct stat st;
    ck_assert_msg(stat(buf, &st) == 0, "shipped plugin %s not built", buf);
    return buf;
}

/* Writes a conf listing paths (NULL-terminated) to the temp dir and returns its path. */
static const char *write_conf(const char *name, const char *first, ...)
{
    char text[8192];
    size_t u = (size_t)snprintf(text, sizeof text, "# %s: written by test_registry\nplugins = [\n", name);
    va_list ap;
    va_start(ap, first);
    for (const char *p = first; p; p = va_arg(ap, const char *))
        u += (size_t)snprintf(text + u, sizeof text - u, "  \"%s\",\n", p);
    va_end(ap);
    if (first)
        u -= 2; /* drop the last ",\n" */
    snprintf(text + u, sizeof text - u, "\n];\n");
    return tu_write(name, text);
}

static cs_registry *load_ok(const char *conf)
{
    cs_registry *r = cs_registry_new();
    ck_assert_ptr_nonnull(r);
    cs_error err;
    cs_error_clear(&err);
    int rc = cs_registry_load_conf(r, conf, &err);
    ck_assert_msg(rc == 0, "load_conf(%s) = %d: %s", conf, rc, err.msg);
    return r;
}

static void assert_contains(const char *hay, const char *needle)
{
    ck_assert_msg(hay != NULL, "expected text containing '%s', got NULL", needle);
    ck_assert_msg(strstr(hay, needle) != NULL, "expected '%s' in: %s", needle, hay);
}

/* Exactly one problem, naming path and containing each of the causes. */
static void assert_one_problem(const cs_registry *r, const char *path, const char *cause1, const char *cause2)
{
    size_t n = cs_registry_n_problems(r);
    ck_assert_msg(n == 1, "expected 1 problem, got %zu (first: %s)", n, n ? cs_registry_problem(r, 0) : "-");
    const char *p = cs_registry_problem(r, 0);
    ck_assert_msg(strncmp(p, path, strlen(path)) == 0 && p[strlen(path)] == ':',
                  "problem does not start with '%s:': %s", path, p);
    ck_assert_msg(strchr(p, '\n') == NULL, "problem is not one line: %s", p);
    assert_contains(p, cause1);
    if (cause2)
        assert_contains(p, cause2);
}

/* ---- every way one plugin can fail ---- */

enum { SRC_TEST, SRC_FAKE, SRC_MISSING, SRC_DIR, SRC_TRUNC, SRC_EMPTY };

typedef struct bad_case {
    const char *file;    /* in the test plugin dir (SRC_TEST) or the temp dir */
    int src;
    const char *cause1, *cause2;
} bad_case;

static const bad_case bad_cases[] = {
    {"missing.so", SRC_MISSING, "cannot load plugin", "No such file or directory"},
    {"adir.so", SRC_DIR, "cannot load plugin", "not a regular file"},
    {"fake.so", SRC_FAKE, "not a shared object (no ELF magic)", NULL},
    /* a copy cut short: dlopen would map it and die of SIGBUS (issue 13) */
    {"truncated.so", SRC_TRUNC, "truncated (a loadable segment ends at byte", NULL},
    {"empty.so", SRC_EMPTY, "not a shared object (0 bytes, too short for an ELF header)", NULL},
    {"no-init.so", SRC_TEST, "no cs_plugin_init symbol", "not a cilscale plugin"},
    {"null-desc.so", SRC_TEST, "cs_plugin_init returned NULL", NULL},
    {"bad-abi.so", SRC_TEST, "built for plugin ABI " TU_STR(CS_ABI_VERSION_NEXT), "this cilscale has ABI " TU_STR(CS_ABI_VERSION)},
    {"bad-kind.so", SRC_TEST, "unknown plugin kind 99", "expected arch, policy, cil or backend"},
    {"dup-resnet18.so", SRC_TEST, "duplicate arch plugin 'resnet18'", "already loaded from"},
    {"arch-no-count.so", SRC_TEST, "arch plugin 'no-count' lacks count_params", NULL},
    {"policy-no-scale.so", SRC_TEST, "policy plugin 'no-scale' lacks scale", NULL},
};
#define N_BAD_CASES ((int)(sizeof bad_cases / sizeof bad_cases[0]))

/* Makes the broken file for case c and returns its absolute path. */
static const char *bad_path(const bad_case *c, char *buf, size_t size)
{
    switch (c->src) {
    case SRC_TEST: return test_plugin(c->file, buf, size);
    case SRC_FAKE: snprintf(buf, size, "%s", tu_write(c->file, "this is text, not an ELF object\n")); return buf;
    case SRC_EMPTY: snprintf(buf, size, "%s", tu_write(c->file, "")); return buf;
    case SRC_TRUNC: {
        char whole[PATH_MAX];
        shipped_plugin("arch-resnet.so", whole, sizeof whole);
        join(buf, size, tu_tmpdir(), c->file);
        FILE *in = fopen(whole, "rb"), *out = fopen(buf, "wb");
        ck_assert(in && out);
        fseek(in, 0, SEEK_END);
        long n = ftell(in) / 2;
        fseek(in, 0, SEEK_SET);
        for (long i = 0; i < n; i++)
            fputc(fgetc(in), out);
        fclose(in);
        fclose(out);
        return buf;
    }
    case SRC_DIR:
        join(buf, size, tu_tmpdir(), c->file);
        ck_assert(mkdir(buf, 0755) == 0);
        return buf;
    default: return join(buf, size, tu_tmpdir(), c->file);
    }
}

/* In a conf between the real resnet18 and a good plugin: one problem naming
 * the file and the cause; the plugins before and after it still load. */
START_TEST(test_bad_plugin_in_conf)
{
    const bad_case *c = &bad_cases[_i];
    char bad[PATH_MAX], resnet[PATH_MAX], tiny[PATH_MAX];
    bad_path(c, bad, sizeof bad);
    shipped_plugin("arch-resnet.so", resnet, sizeof resnet);
    test_plugin("tiny-arch.so", tiny, sizeof tiny);
    /* The missing file is named relative to the conf: the problem names the resolved path. */
    const char *conf = write_conf("mixed.conf", resnet, c->src == SRC_MISSING ? c->file : bad, tiny, NULL);
    cs_registry *r = load_ok(conf);
    assert_one_problem(r, bad, c->cause1, c->cause2);
    ck_assert_uint_eq(cs_registry_count(r), 2);
    const cs_plugin *p = cs_registry_find(r, CS_KIND_ARCH, "resnet18");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->path, resnet); /* the first one wins over the duplicate */
    ck_assert_str_eq(p->version, "1.0.0");
    ck_assert_ptr_nonnull(cs_registry_find(r, CS_KIND_ARCH, "tiny"));
    if (strstr(c->cause1, "duplicate"))
        assert_contains(cs_registry_problem(r, 0), resnet);
    /* The one that survived is usable after the failed one was unloaded. */
    const cs_arch_iface *a = p->iface;
    cs_arch_config cfg = tu_config(a, 100);
    int64_t n = 0;
    ck_assert_int_eq(cs_arch_count(a, &cfg, &n, NULL), 0);
    ck_assert_int_eq(n, 11227812);
    cs_registry_free(r);
}
END_TEST

/* cs_registry_load_file: fails, records one problem and returns the same line in err. */
START_TEST(test_bad_plugin_load_file)
{
    const bad_case *c = &bad_cases[_i];
    char bad[PATH_MAX];
    bad_path(c, bad, sizeof bad);
    cs_registry *r = cs_registry_new();
    if (strstr(c->cause1, "duplicate")) {
        char resnet[PATH_MAX];
        ck_assert_int_eq(cs_registry_load_file(r, shipped_plugin("arch-resnet.so", resnet, sizeof resnet), NULL), 0);
    }
    size_t before = cs_registry_count(r);
    cs_error err;
    cs_error_clear(&err);
    int rc = cs_registry_load_file(r, bad, &err);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_eq(err.status, rc);
    assert_one_problem(r, bad, c->cause1, c->cause2);
    ck_assert_str_eq(err.msg, cs_registry_problem(r, 0));
    ck_assert_uint_eq(cs_registry_count(r), before);
    cs_registry_free(r);
}
END_TEST

/* Every broken plugin in one conf with the seven shipped ones: each gives its
 * own problem, in conf order, and all seven shipped plugins load. */
START_TEST(test_all_bad_with_shipped)
{
    static const char *shipped[] = {"arch-resnet.so", "arch-mobilenetv2.so", "arch-shufflenetv2.so",
                                    "policy-psi.so", "policy-compound.so", "policy-width.so",
                                    "policy-depth.so"};
    char text[16384], path[PATH_MAX], bad[N_BAD_CASES][PATH_MAX];
    size_t u = (size_t)snprintf(text, sizeof text, "plugins = (\n");
    for (int i = 0; i < N_BAD_CASES; i++) {
        bad_path(&bad_cases[i], bad[i], sizeof bad[i]);
        /* interleave shipped and broken ones; resnet first so the duplicate is one */
        if (i < 7)
            u += (size_t)snprintf(text + u, sizeof text - u, "  \"%s\",\n",
                                  shipped_plugin(shipped[i], path, sizeof path));
        u += (size_t)snprintf(text + u, sizeof text - u, "  \"%s\"%s\n", bad[i], i + 1 < N_BAD_CASES ? "," : "");
    }
    snprintf(text + u, sizeof text - u, ");\n");
    cs_registry *r = load_ok(tu_write("all.conf", text));
    ck_assert_uint_eq(cs_registry_count(r), 7);
    ck_assert_uint_eq(cs_registry_n_problems(r), N_BAD_CASES);
    for (int i = 0; i < N_BAD_CASES; i++) {
        const char *p = cs_registry_problem(r, (size_t)i);
        ck_assert_msg(strncmp(p, bad[i], strlen(bad[i])) == 0, "problem %d does not name %s: %s", i, bad[i], p);
        assert_contains(p, bad_cases[i].cause1);
    }
    char names[256];
    cs_registry_names(r, CS_KIND_ARCH, names, sizeof names);
    ck_assert_str_eq(names, "resnet18, mobilenetv2, shufflenetv2");
    cs_registry_names(r, CS_KIND_POLICY, names, sizeof names);
    ck_assert_str_eq(names, "psi, compound, width, depth");
    cs_registry_names(r, CS_KIND_CIL, names, sizeof names);
    ck_assert_str_eq(names, "(none)");
    cs_registry_free(r);
}
END_TEST

/* The same file listed twice: the second is a duplicate, and unloading it
 * leaves the first (same dlopen handle, reference counted) working. */
START_TEST(test_same_file_twice)
{
    char resnet[PATH_MAX];
    shipped_plugin("arch-resnet.so", resnet, sizeof resnet);
    cs_registry *r = load_ok(write_conf("twice.conf", resnet, resnet, NULL));
    assert_one_problem(r, resnet, "duplicate arch plugin 'resnet18'", "already loaded from");
    ck_assert_uint_eq(cs_registry_count(r), 1);
    const cs_arch_iface *a = cs_registry_find(r, CS_KIND_ARCH, "resnet18")->iface;
    cs_arch_config cfg = tu_config(a, 10);
    int64_t n = 0;
    ck_assert_int_eq(cs_arch_count(a, &cfg, &n, NULL), 0);
    ck_assert_int_gt(n, 0);
    cs_registry_free(r);
}
END_TEST

/* A loaded plugin's fields: score from cs_plugin_score where exported, else 1; path and handle. */
START_TEST(test_plugin_fields)
{
    char tiny[PATH_MAX], backend[PATH_MAX];
    test_plugin("tiny-arch.so", tiny, sizeof tiny);
    test_plugin("backend-score0.so", backend, sizeof backend);
    cs_registry *r = load_ok(write_conf("fields.conf", tiny, backend, NULL));
    ck_assert_uint_eq(cs_registry_n_problems(r), 0);
    ck_assert_uint_eq(cs_registry_count(r), 2);
    const cs_plugin *t = cs_registry_at(r, 0), *b = cs_registry_at(r, 1);
    ck_assert_ptr_null(cs_registry_at(r, 2));
    ck_assert_ptr_null(cs_registry_problem(r, 0));
    ck_assert_int_eq(t->kind, CS_KIND_ARCH);
    ck_assert_str_eq(t->name, "tiny");
    ck_assert_str_eq(t->version, "0.1.0");
    ck_assert_str_eq(t->description, "test: a tiny valid architecture");
    ck_assert_str_eq(t->path, tiny);
    ck_assert_int_eq(cs_registry_score(r, t), 1);
    const cs_plugin stranger = *t; /* a record the registry did not hand out */
    ck_assert_int_eq(cs_registry_score(r, &stranger), 0);
    ck_assert_int_eq(b->kind, CS_KIND_BACKEND);
    ck_assert_str_eq(b->name, "score0");
    ck_assert_int_eq(cs_registry_score(r, b), 0);
    ck_assert_ptr_eq(cs_registry_find(r, CS_KIND_BACKEND, "score0"), b);
    ck_assert_ptr_null(cs_registry_find(r, CS_KIND_POLICY, "tiny")); /* found by kind and name */
    cs_registry_free(r);
}
END_TEST

/* ---- the conf file itself ---- */

START_TEST(test_conf_missing)
{
    char path[PATH_MAX];
    join(path, sizeof path, tu_tmpdir(), "no-such.conf");
    cs_registry *r = cs_registry_new();
    cs_error err;
    ck_assert_int_eq(cs_registry_load_conf(r, path, &err), CS_ERR_IO);
    ck_assert_int_eq(err.status, CS_ERR_IO);
    assert_contains(err.msg, path);
    assert_contains(err.msg, "cannot read plugin list");
    ck_assert_uint_eq(cs_registry_count(r), 0);
    cs_registry_free(r);
}
END_TEST

START_TEST(test_conf_syntax_error)
{
    char resnet[PATH_MAX], text[PATH_MAX + 256];
    snprintf(text, sizeof text,
             "# line 1\n"
             "plugins = [ \"%s\" ];\n"
             "\n"
             "oops = ;\n" /* line 4 */
             "more = 1;\n",
             shipped_plugin("arch-resnet.so", resnet, sizeof resnet));
    const char *conf = tu_write("syntax.conf", text);
    char want[PATH_MAX + 8];
    snprintf(want, sizeof want, "%s:4:", conf);
    cs_registry *r = cs_registry_new();
    cs_error err;
    int rc = cs_registry_load_conf(r, conf, &err);
    ck_assert_int_eq(rc, CS_ERR_ARG);
    ck_assert_int_eq(err.status, CS_ERR_ARG);
    assert_contains(err.msg, want);
    ck_assert_uint_eq(cs_registry_count(r), 0); /* loads nothing */
    cs_registry_free(r);
}
END_TEST

/* No 'plugins' list, or one that is not a list: an error naming the conf. */
START_TEST(test_conf_no_plugins_list)
{
    static const char *texts[] = {"other = 1;\n", "# x\nplugins = \"a.so\";\n", "plugins = { a = 1; };\n"};
    static const char *lines[] = {":0:", ":2:", ":1:"};
    for (int i = 0; i < 3; i++) {
        const char *conf = tu_write("nolist.conf", texts[i]);
        cs_registry *r = cs_registry_new();
        cs_error err;
        ck_assert_int_eq(cs_registry_load_conf(r, conf, &err), CS_ERR_ARG);
        assert_contains(err.msg, conf);
        assert_contains(err.msg, lines[i]);
        assert_contains(err.msg, "expected 'plugins = [");
        ck_assert_uint_eq(cs_registry_count(r), 0);
        cs_registry_free(r);
    }
}
END_TEST

START_TEST(test_conf_unknown_key)
{
    char resnet[PATH_MAX], text[PATH_MAX + 256];
    snprintf(text, sizeof text,
             "# line 1\n"
             "plugins = [ \"%s\" ];\n"
             "colour = \"blue\";\n", /* line 3 */
             shipped_plugin("arch-resnet.so", resnet, sizeof resnet));
    const char *conf = tu_write("unknown.conf", text);
    cs_registry *r = load_ok(conf);
    char want[PATH_MAX + 8];
    snprintf(want, sizeof want, "%s:3:", conf);
    assert_one_problem(r, conf, "unknown key 'colour'", want);
    ck_assert_ptr_nonnull(cs_registry_find(r, CS_KIND_ARCH, "resnet18"));
    cs_registry_free(r);
}
END_TEST

/* An entry that is not a string is skipped with a problem naming the conf, its line and index. */
START_TEST(test_conf_entry_not_string)
{
    char tiny[PATH_MAX], text[PATH_MAX + 256];
    snprintf(text, sizeof text, "plugins = (\n  42,\n  \"%s\"\n);\n", test_plugin("tiny-arch.so", tiny, sizeof tiny));
    const char *conf = tu_write("notstring.conf", text);
    cs_registry *r = load_ok(conf);
    char want[PATH_MAX + 8];
    snprintf(want, sizeof want, "%s:2:", conf);
    assert_one_problem(r, conf, want, "plugins[0] is not a string path");
    ck_assert_ptr_nonnull(cs_registry_find(r, CS_KIND_ARCH, "tiny"));
    cs_registry_free(r);
}
END_TEST

START_TEST(test_conf_empty_list)
{
    cs_registry *r = load_ok(tu_write("empty.conf", "plugins = [];\n"));
    ck_assert_uint_eq(cs_registry_count(r), 0);
    ck_assert_uint_eq(cs_registry_n_problems(r), 0);
    cs_registry_free(r);
}
END_TEST

/* ---- relative paths ---- */

/* tmp/sub/tiny-arch.so -> the built test plugin. */
static void link_tiny(void)
{
    char tiny[PATH_MAX], dir[PATH_MAX], link[PATH_MAX];
    test_plugin("tiny-arch.so", tiny, sizeof tiny);
    join(dir, sizeof dir, tu_tmpdir(), "sub");
    ck_assert(mkdir(dir, 0755) == 0);
    join(link, sizeof link, dir, "tiny-arch.so");
    ck_assert(symlink(tiny, link) == 0);
}

/* A relative path is read from the conf's folder, not the working directory. */
START_TEST(test_relative_to_conf_dir)
{
    link_tiny();
    char confdir[PATH_MAX], conf[PATH_MAX], want[PATH_MAX];
    join(confdir, sizeof confdir, tu_tmpdir(), "conf.d");
    ck_assert(mkdir(confdir, 0755) == 0);
    join(conf, sizeof conf, confdir, "p.conf");
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fputs("plugins = [ \"../sub/tiny-arch.so\", \"missing.so\" ];\n", f);
    fclose(f);
    ck_assert(chdir("/") == 0);
    cs_registry *r = load_ok(conf);
    join(want, sizeof want, confdir, "missing.so");
    assert_one_problem(r, want, "No such file or directory", NULL);
    const cs_plugin *p = cs_registry_find(r, CS_KIND_ARCH, "tiny");
    ck_assert_ptr_nonnull(p);
    join(want, sizeof want, confdir, "../sub/tiny-arch.so");
    ck_assert_str_eq(p->path, want);
    cs_registry_free(r);

    /* and from the conf's own folder, one level down */
    r = load_ok(write_conf("down.conf", "sub/tiny-arch.so", NULL));
    ck_assert_uint_eq(cs_registry_n_problems(r), 0);
    ck_assert_ptr_nonnull(cs_registry_find(r, CS_KIND_ARCH, "tiny"));
    cs_registry_free(r);
}
END_TEST

/* A conf named by a bare relative path: its folder is ".". */
START_TEST(test_relative_conf_path)
{
    link_tiny();
    write_conf("here.conf", "sub/tiny-arch.so", NULL);
    ck_assert(chdir(tu_tmpdir()) == 0);
    cs_registry *r = load_ok("here.conf");
    ck_assert_uint_eq(cs_registry_n_problems(r), 0);
    const cs_plugin *p = cs_registry_find(r, CS_KIND_ARCH, "tiny");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->path, "./sub/tiny-arch.so");
    cs_registry_free(r);
}
END_TEST

/* load_file with a bare file name opens the file in the working directory,
 * not a library of that name on the search path. */
START_TEST(test_load_file_bare_name)
{
    /* a name in no library directory (meson's LD_LIBRARY_PATH holds the test plugin dir) */
    char tiny[PATH_MAX], link[PATH_MAX];
    test_plugin("tiny-arch.so", tiny, sizeof tiny);
    ck_assert(symlink(tiny, join(link, sizeof link, tu_tmpdir(), "bare-tiny.so")) == 0);
    ck_assert(chdir(tu_tmpdir()) == 0);
    cs_registry *r = cs_registry_new();
    cs_error err;
    int rc = cs_registry_load_file(r, "bare-tiny.so", &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_str_eq(cs_registry_at(r, 0)->path, "bare-tiny.so");
    ck_assert_str_eq(cs_registry_at(r, 0)->name, "tiny");
    /* a bare name that is only on the library path is not found */
    ck_assert_int_lt(cs_registry_load_file(r, "libc.so.6", &err), 0);
    assert_contains(err.msg, "libc.so.6: cannot load plugin");
    cs_registry_free(r);
}
END_TEST

/* ---- which conf is in force ---- */

START_TEST(test_conf_path_order)
{
    const char *saved = env("CILSCALE_PLUGINS");
    char build_conf[PATH_MAX], buf[PATH_MAX];
    snprintf(build_conf, sizeof build_conf, "%s", saved);

    ck_assert(setenv("CILSCALE_PLUGINS", "/env/plugins.conf", 1) == 0);
    ck_assert_str_eq(cs_plugins_conf_path("/explicit.conf", buf, sizeof buf), "/explicit.conf");
    ck_assert_str_eq(buf, "/explicit.conf");
    ck_assert_str_eq(cs_plugins_conf_path(NULL, buf, sizeof buf), "/env/plugins.conf");
    ck_assert_str_eq(cs_plugins_conf_path("", buf, sizeof buf), "/env/plugins.conf");

    /* no explicit, no environment: the test runs from the build tree, so its conf */
    ck_assert(unsetenv("CILSCALE_PLUGINS") == 0);
    ck_assert_str_eq(cs_plugins_conf_path("/explicit.conf", buf, sizeof buf), "/explicit.conf");
    ck_assert_str_eq(cs_plugins_conf_path(NULL, buf, sizeof buf), build_conf);
    ck_assert(setenv("CILSCALE_PLUGINS", "", 1) == 0); /* empty counts as unset */
    ck_assert_str_eq(cs_plugins_conf_path(NULL, buf, sizeof buf), build_conf);
    struct stat st;
    ck_assert_msg(stat(buf, &st) == 0, "build tree conf %s missing", buf);
    ck_assert(setenv("CILSCALE_PLUGINS", build_conf, 1) == 0); /* for CK_FORK=no */
}
END_TEST

/* ---- plugins compiled into the caller ---- */

static const cs_stage one_stage[] = {{"s", 1, 8}};
static const cs_stage bad_stage[] = {{"s", 0, 8}};
static const cs_stage unnamed_stage[] = {{NULL, 1, 8}};
static int64_t count_one(const cs_arch_config *cfg) { return cfg->n_classes; }
static const cs_arch_iface good_arch = {.n_stages = 1, .stages = one_stage, .count_params = count_one};
static const cs_plugin_desc builtin = {
    .abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "builtin", .iface = &good_arch};

static int cil_create(void **ctx, cs_error *err)
{
    (void)err;
    *ctx = NULL;
    return CS_OK;
}
static void cil_destroy(void *ctx) { (void)ctx; }

START_TEST(test_add_builtin)
{
    cs_registry *r = cs_registry_new();
    cs_error err;
    ck_assert_int_eq(cs_registry_add(r, &builtin, NULL, &err), 0);
    const cs_plugin *p = cs_registry_find(r, CS_KIND_ARCH, "builtin");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_eq(p->iface, &good_arch);
    ck_assert_str_eq(p->path, "(built in)");
    ck_assert_str_eq(p->version, ""); /* NULL version and description read as "" */
    ck_assert_str_eq(p->description, "");
    ck_assert_int_eq(cs_registry_score(r, p), 1);

    /* a duplicate (same kind and name) is refused and names where the first came from */
    ck_assert_int_lt(cs_registry_add(r, &builtin, "second", &err), 0);
    assert_one_problem(r, "second", "duplicate arch plugin 'builtin'", "already loaded from (built in)");
    ck_assert_str_eq(err.msg, cs_registry_problem(r, 0));
    ck_assert_uint_eq(cs_registry_count(r), 1);

    /* the same name in another kind is not a duplicate */
    static const cs_cil_iface cil_iface = {.create = cil_create, .destroy = cil_destroy};
    cs_plugin_desc cil = {.abi_version = CS_ABI_VERSION, .kind = CS_KIND_CIL, .name = "builtin", .iface = &cil_iface};
    ck_assert_int_eq(cs_registry_add(r, &cil, "mine", &err), 0);
    ck_assert_uint_eq(cs_registry_count(r), 2);
    ck_assert_str_eq(cs_registry_find(r, CS_KIND_CIL, "builtin")->path, "mine");
    cs_registry_free(r);
}
END_TEST

/* A built-in named like a loaded file plugin is a duplicate of it. */
START_TEST(test_add_duplicate_of_file)
{
    char resnet[PATH_MAX];
    cs_registry *r = load_ok(write_conf("one.conf", shipped_plugin("arch-resnet.so", resnet, sizeof resnet), NULL));
    cs_plugin_desc d = builtin;
    d.name = "resnet18";
    cs_error err;
    ck_assert_int_lt(cs_registry_add(r, &d, NULL, &err), 0);
    assert_one_problem(r, "(built in)", "duplicate arch plugin 'resnet18'", resnet);
    ck_assert_str_eq(cs_registry_find(r, CS_KIND_ARCH, "resnet18")->path, resnet);
    cs_registry_free(r);
}
END_TEST

/* Every descriptor check, through cs_registry_add. */
typedef struct bad_desc {
    cs_plugin_desc d;
    cs_arch_iface a; /* used as d.iface when d.kind is arch and d.iface is NULL and use_a */
    int use_a;
    const char *cause;
} bad_desc;

START_TEST(test_add_bad_descriptors)
{
    static const cs_policy_iface no_scale = {0};
    bad_desc cases[] = {
        {{.abi_version = 0, .kind = CS_KIND_ARCH, .name = "x", .iface = &good_arch}, {0}, 0,
         "built for plugin ABI 0, this cilscale has ABI " TU_STR(CS_ABI_VERSION)},
        {{.abi_version = CS_ABI_VERSION, .kind = 0, .name = "x", .iface = &good_arch}, {0}, 0,
         "unknown plugin kind 0"},
        {{.abi_version = CS_ABI_VERSION, .kind = 5, .name = "x", .iface = &good_arch}, {0}, 0,
         "unknown plugin kind 5"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = NULL, .iface = &good_arch}, {0}, 0,
         "arch plugin has no name"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_POLICY, .name = "", .iface = &no_scale}, {0}, 0,
         "policy plugin has no name"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x", .iface = NULL}, {0}, 0,
         "arch plugin 'x' lacks iface"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_BACKEND, .name = "x", .iface = NULL}, {0}, 0,
         "backend plugin 'x' lacks iface"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_POLICY, .name = "x", .iface = &no_scale}, {0}, 0,
         "policy plugin 'x' lacks scale"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = 1, .stages = one_stage}, 1, "arch plugin 'x' lacks count_params"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = 0, .stages = one_stage, .count_params = count_one}, 1, "lacks stages (1 to 16 of them)"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = CS_MAX_STAGES + 1, .stages = one_stage, .count_params = count_one}, 1,
         "lacks stages (1 to 16 of them)"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = 1, .stages = NULL, .count_params = count_one}, 1, "lacks stages (1 to 16 of them)"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = 1, .stages = bad_stage, .count_params = count_one}, 1, "lacks a valid stage list"},
        {{.abi_version = CS_ABI_VERSION, .kind = CS_KIND_ARCH, .name = "x"},
         {.n_stages = 1, .stages = unnamed_stage, .count_params = count_one}, 1, "lacks a valid stage list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bad_desc *c = &cases[i];
        if (c->use_a)
            c->d.iface = &c->a;
        cs_registry *r = cs_registry_new();
        cs_error err;
        ck_assert_msg(cs_registry_add(r, &c->d, "case", &err) < 0, "case %zu accepted", i);
        assert_one_problem(r, "case", c->cause, NULL);
        ck_assert_str_eq(err.msg, cs_registry_problem(r, 0));
        ck_assert_uint_eq(cs_registry_count(r), 0);
        cs_registry_free(r);
    }
    /* a NULL descriptor, as a NULL-returning cs_plugin_init gives */
    cs_registry *r = cs_registry_new();
    ck_assert_int_lt(cs_registry_add(r, NULL, NULL, NULL), 0); /* err may be NULL */
    assert_one_problem(r, "(built in)", "cs_plugin_init returned NULL", NULL);
    cs_registry_free(r);
}
END_TEST

START_TEST(test_registry_misc)
{
    cs_registry_free(NULL); /* a no-op */
    cs_registry *r = cs_registry_new();
    ck_assert_uint_eq(cs_registry_count(r), 0);
    ck_assert_uint_eq(cs_registry_n_problems(r), 0);
    ck_assert_ptr_null(cs_registry_at(r, 0));
    ck_assert_ptr_null(cs_registry_problem(r, 0));
    ck_assert_ptr_null(cs_registry_find(r, CS_KIND_ARCH, "resnet18"));
    char names[16];
    cs_registry_names(r, CS_KIND_ARCH, names, sizeof names);
    ck_assert_str_eq(names, "(none)");
    /* many plugins: the arrays grow past their first capacity */
    char name[40][16];
    cs_plugin_desc d[40];
    for (int i = 0; i < 40; i++) {
        snprintf(name[i], sizeof name[i], "b%d", i);
        d[i] = builtin;
        d[i].name = name[i];
        ck_assert_int_eq(cs_registry_add(r, &d[i], NULL, NULL), 0);
        ck_assert_int_lt(cs_registry_add(r, &d[i], NULL, NULL), 0);
    }
    ck_assert_uint_eq(cs_registry_count(r), 40);
    ck_assert_uint_eq(cs_registry_n_problems(r), 40);
    ck_assert_str_eq(cs_registry_at(r, 39)->name, "b39");
    assert_contains(cs_registry_problem(r, 39), "duplicate arch plugin 'b39'");
    cs_registry_free(r);
}
END_TEST

START_TEST(test_kind_names)
{
    ck_assert_str_eq(cs_kind_name(CS_KIND_ARCH), "arch");
    ck_assert_str_eq(cs_kind_name(CS_KIND_POLICY), "policy");
    ck_assert_str_eq(cs_kind_name(CS_KIND_CIL), "cil");
    ck_assert_str_eq(cs_kind_name(CS_KIND_BACKEND), "backend");
    ck_assert_ptr_null(cs_kind_name(0));
    ck_assert_ptr_null(cs_kind_name(99));
}
END_TEST


static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("load");
    tcase_add_loop_test(tc, test_bad_plugin_in_conf, 0, N_BAD_CASES);
    tcase_add_loop_test(tc, test_bad_plugin_load_file, 0, N_BAD_CASES);
    tcase_add_test(tc, test_all_bad_with_shipped);
    tcase_add_test(tc, test_same_file_twice);
    tcase_add_test(tc, test_plugin_fields);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("conf");
    tcase_add_test(tc, test_conf_missing);
    tcase_add_test(tc, test_conf_syntax_error);
    tcase_add_test(tc, test_conf_no_plugins_list);
    tcase_add_test(tc, test_conf_unknown_key);
    tcase_add_test(tc, test_conf_entry_not_string);
    tcase_add_test(tc, test_conf_empty_list);
    tcase_add_test(tc, test_relative_to_conf_dir);
    tcase_add_test(tc, test_relative_conf_path);
    tcase_add_test(tc, test_load_file_bare_name);
    tcase_add_test(tc, test_conf_path_order);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("builtin");
    tcase_add_test(tc, test_add_builtin);
    tcase_add_test(tc, test_add_duplicate_of_file);
    tcase_add_test(tc, test_add_bad_descriptors);
    tcase_add_test(tc, test_registry_misc);
    tcase_add_test(tc, test_kind_names);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(registry_suite()) ? 1 : 0; }
