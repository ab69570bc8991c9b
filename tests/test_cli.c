/* test_cli.c: the cilscale command as a user runs it: exit codes (0 done, 1
 * over budget or plugin problems, 2 bad usage), the one-line messages on
 * stderr, and the scale / grid / plugins output. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ftw.h>

#include "testutil.h"

static char out[1 << 16], err[1 << 14];

/* Runs cilscale with the arguments (NULL-terminated) into out and err. */
#define RUN(...) tu_run(out, sizeof out, err, sizeof err, __VA_ARGS__, (const char *)NULL)

static void assert_contains(const char *hay, const char *needle)
{
    ck_assert_msg(strstr(hay, needle) != NULL, "expected '%s' in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
    ck_assert_msg(strstr(hay, needle) == NULL, "did not expect '%s' in:\n%s", needle, hay);
}

/* stderr is exactly one line, starting with prefix and containing each of the needles (NULL-terminated). */
static void assert_one_line(const char *text, const char *prefix, ...)
{
    size_t n = strlen(text);
    ck_assert_msg(n > 0 && text[n - 1] == '\n' && strchr(text, '\n') == text + n - 1,
                  "expected one line on stderr, got:\n%s", text);
    ck_assert_msg(strncmp(text, prefix, strlen(prefix)) == 0, "expected a line starting '%s', got: %s", prefix, text);
    va_list ap;
    va_start(ap, prefix);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        assert_contains(text, s);
    va_end(ap);
}

/* The number after "key": in a JSON text (the first one). */
static double json_number(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    ck_assert_msg(p != NULL, "no %s in:\n%s", pat, json);
    char *end;
    double v = strtod(p + strlen(pat), &end);
    ck_assert_msg(end != p + strlen(pat), "%s is not a number in:\n%s", pat, json);
    return v;
}

/* The number after the last ": " in text (the count in the over-budget message). */
static long long trailing_number(const char *text, const char *after)
{
    const char *p = strstr(text, after);
    ck_assert_msg(p != NULL, "no '%s' in: %s", after, text);
    char *end;
    long long v = strtoll(p + strlen(after), &end, 10);
    ck_assert_msg(end != p + strlen(after), "no number after '%s' in: %s", after, text);
    return v;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set (run the tests with meson test)", name);
    return v;
}

/* A conf listing the shipped resnet18 and psi plus the named test plugins (NULL-terminated). */
static const char *broken_conf(const char *name, ...)
{
    char text[8192];
    const char *build_conf = env("CILSCALE_PLUGINS"), *dir = env("CILSCALE_TEST_PLUGIN_DIR");
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", build_conf);
    char *slash = strrchr(root, '/');
    ck_assert_ptr_nonnull(slash);
    *slash = '\0';
    size_t u = (size_t)snprintf(text, sizeof text, "plugins = [\n  \"%s/plugins/arch-resnet.so\",\n"
                                                   "  \"%s/plugins/policy-psi.so\"", root, root);
    va_list ap;
    va_start(ap, name);
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *))
        u += (size_t)snprintf(text + u, sizeof text - u, ",\n  \"%s/%s\"", dir, p);
    va_end(ap);
    snprintf(text + u, sizeof text - u, "\n];\n");
    return tu_write(name, text);
}

static const char *path_of(const char *name)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", tu_tmpdir(), name);
    return p;
}

/* ---- usage ---- */

START_TEST(test_no_command)
{
    ck_assert_int_eq(RUN(NULL), 2);
    assert_contains(err, "usage: cilscale COMMAND");
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_unknown_command)
{
    ck_assert_int_eq(RUN("frobnicate"), 2);
    assert_one_line(err, "cilscale: unknown command 'frobnicate'", "commands: run, sweep, eval, report, scale, grid, train, bench, plugins, version",
                    "cilscale --help", NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_help)
{
    static const char *top[] = {"--help", "-h", "help"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(RUN(top[i]), 0);
        assert_contains(out, "usage: cilscale COMMAND");
        assert_contains(out, "scale");
        assert_contains(out, "grid");
        assert_contains(out, "plugins");
        ck_assert_str_eq(err, "");
    }
    static const char *cmds[] = {"scale", "grid", "plugins", "sweep", "eval"};
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: cilscale %s", cmds[i]);
        ck_assert_int_eq(RUN(cmds[i], "--help"), 0);
        ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "%s --help:\n%s", cmds[i], out);
        assert_contains(out, "Exit status");
        ck_assert_str_eq(err, "");
        /* --help wins over everything else on the line, even before a bad option */
        ck_assert_int_eq(RUN(cmds[i], "--help", "--bogus"), 0);
        assert_contains(out, want);
    }
}
END_TEST

START_TEST(test_version)
{
    ck_assert_int_eq(RUN("version"), 0);
    ck_assert_msg(strncmp(out, "cilscale ", 9) == 0, "%s", out);
    assert_contains(out, "(plugin ABI " TU_STR(CS_ABI_VERSION) ")");
    ck_assert_int_eq(RUN("--version"), 0);
    assert_contains(out, "(plugin ABI " TU_STR(CS_ABI_VERSION) ")");
}
END_TEST

START_TEST(test_unknown_option)
{
    static const char *cmds[] = {"scale", "grid", "plugins", "sweep"};
    for (int i = 0; i < 4; i++) {
        char prefix[64], hint[64];
        snprintf(prefix, sizeof prefix, "cilscale %s: ", cmds[i]);
        snprintf(hint, sizeof hint, "(see cilscale %s --help)", cmds[i]);
        ck_assert_int_eq(RUN(cmds[i], "--bogus"), 2);
        assert_one_line(err, prefix, "unknown option or missing value: '--bogus'", hint, NULL);
        ck_assert_int_eq(RUN(cmds[i], "-x"), 2);
        assert_one_line(err, prefix, "bad or incomplete option '-x'", hint, NULL);
        if (strcmp(cmds[i], "sweep")) { /* sweep takes an experiment file */
            ck_assert_int_eq(RUN(cmds[i], "stray"), 2);
            assert_one_line(err, prefix, "unexpected argument 'stray'", hint, NULL);
        }
    }
    /* an option that needs a value, given none */
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget"), 2);
    assert_one_line(err, "cilscale scale: ", "missing value: '--budget'", NULL);
    ck_assert_int_eq(RUN("grid", "--budget", "1M", "--arch"), 2);
    assert_one_line(err, "cilscale grid: ", "missing value: '--arch'", NULL);
    /* plugins takes only --plugins */
    ck_assert_int_eq(RUN("plugins", "--arch", "resnet18"), 2);
    assert_one_line(err, "cilscale plugins: ", "'--arch'", NULL);
}
END_TEST

START_TEST(test_missing_required)
{
    ck_assert_int_eq(RUN("scale", "--budget", "1M"), 2);
    assert_one_line(err, "cilscale scale: --arch is required", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18"), 2);
    assert_one_line(err, "cilscale scale: --budget is required with a policy", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--policy", "width"), 2);
    assert_one_line(err, "cilscale scale: --budget is required with a policy", NULL);
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18"), 2);
    assert_one_line(err, "cilscale grid: --arch and --budget are required", NULL);
    ck_assert_int_eq(RUN("grid", "--budget", "1M"), 2);
    assert_one_line(err, "cilscale grid: --arch and --budget are required", NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

static const char *bad_budgets[] = {"abc", "-5", "1.5x", "0", "1.5", "", "1e30", " 1M", "1MM", "0.5k5", "nan", "inf"};
#define N_BAD_BUDGETS ((int)(sizeof bad_budgets / sizeof bad_budgets[0]))

START_TEST(test_bad_budget)
{
    const char *b = bad_budgets[_i];
    char named[64];
    snprintf(named, sizeof named, "--budget '%s': ", b);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", b), 2);
    assert_one_line(err, "cilscale scale: ", named, "expected a positive whole number of parameters",
                    "1M, 2.5M, 1500k, 3e6 or 1000000", NULL);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", b), 2);
    assert_one_line(err, "cilscale grid: ", named, "expected a positive whole number", NULL);
    /* as --budget=VALUE too */
    char opt[64];
    snprintf(opt, sizeof opt, "--budget=%s", b);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", opt), 2);
    assert_one_line(err, "cilscale scale: ", named, NULL);
}
END_TEST

START_TEST(test_unknown_plugin)
{
    ck_assert_int_eq(RUN("scale", "--arch", "vgg16", "--budget", "1M"), 2);
    assert_one_line(err, "cilscale scale: unknown architecture 'vgg16' (loaded: resnet18, mobilenetv2, shufflenetv2)",
                    NULL);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(RUN("grid", "--arch", "vgg16", "--budget", "1M"), 2);
    assert_one_line(err, "cilscale grid: unknown architecture 'vgg16' (loaded: resnet18, mobilenetv2, shufflenetv2)",
                    NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--policy", "magic"), 2);
    assert_one_line(err, "cilscale scale: unknown policy 'magic' (loaded: psi, compound, width, depth)", NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

/* Below psi's smallest network: exit 1 naming the minimum; exactly the minimum fits. */
START_TEST(test_budget_too_small)
{
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1000", "--policy", "psi"), 1);
    assert_one_line(err, "cilscale scale: budget 1000 is below the smallest network policy 'psi' can make from resnet18",
                    NULL);
    ck_assert_str_eq(out, "");
    long long min = trailing_number(err, "resnet18: ");
    ck_assert_int_gt(min, 1000);
    assert_contains(err, " parameters\n");
    /* the minimum is psi's network at the smallest width, one block per stage */
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--width", "0.001", "--depths", "1,1,1,1", "--json"), 0);
    ck_assert_int_eq((long long)json_number(out, "params"), min);
    char b[32];
    snprintf(b, sizeof b, "%lld", min);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", b, "--json"), 0);
    ck_assert_int_eq((long long)json_number(out, "params"), min);
    snprintf(b, sizeof b, "%lld", min - 1);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", b), 1);
    assert_contains(err, "is below the smallest network");
    /* every policy words it the same way */
    ck_assert_int_eq(RUN("scale", "--arch", "mobilenetv2", "--budget", "1000", "--policy", "width"), 1);
    assert_one_line(err, "cilscale scale: budget 1000 is below the smallest network policy 'width' can make from "
                         "mobilenetv2: ", NULL);
}
END_TEST

START_TEST(test_bad_values)
{
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--policy", "psi", "--width", "0.5"), 2);
    assert_one_line(err, "cilscale scale: give --policy or --width/--depth/--depths, not both", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--policy", "psi", "--depths", "1,1,1,1"), 2);
    assert_one_line(err, "cilscale scale: give --policy or --width/--depth/--depths, not both", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "1", "--depths", "1,1,1,1"), 2);
    assert_one_line(err, "cilscale scale: give --depth or --depths, not both", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--stem", "big"), 2);
    assert_one_line(err, "cilscale scale: --stem 'big': expected imagenet or small", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--head", "arc"), 2);
    assert_one_line(err, "cilscale scale: --head 'arc': expected linear or cosine", NULL);
    static const char *classes[] = {"0", "-1", "x", "10x", "1000001", ""};
    for (int i = 0; i < 6; i++) {
        char want[80];
        snprintf(want, sizeof want, "cilscale scale: --classes '%s': expected a whole number from 1 to 1000000",
                 classes[i]);
        ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--classes", classes[i]), 2);
        assert_one_line(err, want, NULL);
    }
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--in-channels", "0"), 2);
    assert_one_line(err, "cilscale grid: --in-channels '0': expected a whole number from 1 to 4096", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--width", "0"), 2);
    assert_one_line(err, "cilscale scale: --width '0': expected a number > 0", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "-1"), 2);
    assert_one_line(err, "cilscale scale: --depth '-1': expected a number > 0", NULL);
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--policy", "psi"), 2);
    assert_one_line(err, "cilscale grid: --policy does not apply", NULL);
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--max-d", "abc"), 2);
    assert_one_line(err, "cilscale grid: --max-d 'abc': expected a number > 0", NULL);
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--max-d", "65"), 2);
    assert_one_line(err, "cilscale grid: --max-d '65': expected at most 64", NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_bad_depths)
{
    static const char *bad[] = {"1,2,3", "1,1,1,1,1", "1,,1,1", "1,1,1,1,", "a,b,c,d", "0,1,1,1", ",1,1,1,1", ""};
    for (int i = 0; i < 8; i++) {
        char want[96];
        snprintf(want, sizeof want, "cilscale scale: --depths '%s': expected 4 whole numbers >= 1 separated by commas",
                 bad[i]);
        ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depths", bad[i]), 2);
        assert_one_line(err, want, NULL);
        ck_assert_str_eq(out, "");
    }
    /* the count follows the architecture */
    ck_assert_int_eq(RUN("scale", "--arch", "mobilenetv2", "--depths", "1,1,1,1"), 2);
    assert_one_line(err, "cilscale scale: --depths '1,1,1,1': expected 7 whole numbers", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depths", "2,2,2,2", "--json"), 0);
    ck_assert_int_eq((long long)json_number(out, "params"), (long long)json_number(out, "reference_params"));
}
END_TEST

/* ---- scale ---- */

START_TEST(test_scale_psi_json)
{
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--policy", "psi", "--json"), 0);
    ck_assert_str_eq(err, "");
    ck_assert_msg(out[0] == '{' && strstr(out, "}\n") == out + strlen(out) - 2, "not one JSON object:\n%s", out);
    assert_contains(out, "\"arch\": \"resnet18\"");
    assert_contains(out, "\"policy\": \"psi\"");
    assert_contains(out, "\"budget\": 1000000");
    assert_contains(out, "\"d\": 0.5,");
    assert_contains(out, "\"depths\": [1, 1, 1, 1]");
    assert_contains(out, "\"widths\": [");
    double params = json_number(out, "params");
    ck_assert_msg(params > 0 && params <= 1000000, "params %g", params);
    ck_assert_double_eq(json_number(out, "d"), 0.5);
    double w = json_number(out, "w");
    ck_assert_msg(w > 0 && w < 1, "w %g", w);
    ck_assert_double_eq(json_number(out, "reference_params"), 11227812);
    /* psi is the default policy */
    char with_policy[sizeof out];
    memcpy(with_policy, out, sizeof out);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--json"), 0);
    ck_assert_str_eq(out, with_policy);
}
END_TEST

/* --convention and --count-as: the authors' ShuffleNetV2 widths and their
 * scripts' count; the old convention by name; bad names refused. */
START_TEST(test_scale_conventions)
{
    ck_assert_int_eq(RUN("scale", "--arch", "shufflenetv2", "--width", "1.6", "--depth", "0.1", "--count-as",
                         "authors-1000", "--json"), 0);
    ck_assert_int_eq((long long)json_number(out, "params"), 2337160); /* their models/scaler.py */
    assert_contains(out, "\"widths\": [184, 368, 744]");
    assert_contains(out, "\"classes\": 1000, \"in_channels\": 3, \"stem\": \"imagenet\", \"head\": \"linear\"");
    ck_assert_int_eq(RUN("scale", "--arch", "shufflenetv2", "--width", "0.5", "--json"), 0);
    assert_contains(out, "\"widths\": [56, 120, 232]");
    ck_assert_int_eq(RUN("scale", "--arch", "shufflenetv2", "--width", "0.5", "--convention", "cilscale-0.1", "--json"),
                     0);
    assert_contains(out, "\"widths\": [60, 116, 232]");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "0.6", "--json"), 0);
    assert_contains(out, "\"depths\": [2, 2, 2, 2]");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "0.6", "--convention", "cilscale-0.1", "--json"), 0);
    assert_contains(out, "\"depths\": [1, 1, 1, 1]");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "0.6", "--convention", "paper"), 2);
    assert_one_line(err, "cilscale scale: --convention 'paper': expected authors or cilscale-0.1", NULL);
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--count-as", "authors-10"), 2);
    assert_one_line(err, "cilscale grid: --count-as 'authors-10': expected authors-100 or authors-1000", NULL);
}
END_TEST

/* scale --config counts what run trains: the data's classes and channels, the
 * algorithm's head, the file's model keys and --set. */
START_TEST(test_scale_config)
{
    char dir[600], text[1200];
    snprintf(dir, sizeof dir, "%s/tiny", tu_tmpdir());
    mkdir(dir, 0777);
    tu_write_tiny_idx(dir, "train", 4, 1);
    tu_write_tiny_idx(dir, "t10k", 2, 2);
    snprintf(text, sizeof text,
             "data = { format = \"idx\"; path = \"%s\"; };\nmodel = { arch = \"resnet18\"; budget = \"300k\"; };\n"
             "cil = { algorithm = \"lucir\"; };\n", dir);
    const char *cfg = tu_write("scale.cfg", text);
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--json"), 0);
    long long from_file = (long long)json_number(out, "params");
    assert_contains(out, "\"classes\": 10, \"in_channels\": 1, \"stem\": \"small\", \"head\": \"cosine\"");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "300k", "--classes", "10", "--in-channels", "1",
                         "--stem", "small", "--head", "cosine", "--json"), 0);
    ck_assert_int_eq((long long)json_number(out, "params"), from_file);
    /* --set applies, and the text says what the budget counts */
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--set", "model.count=authors-100"), 0);
    assert_contains(out, "counting authors-100: linear head, 100 classes, 3 input channels, imagenet stem");
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--set", "model.depths=2,2,2,2", "--json"), 0);
    assert_contains(out, "\"policy\": \"widest\"");
    assert_contains(out, "\"depths\": [2, 2, 2, 2]");
    /* errors */
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--arch", "resnet18"), 2);
    assert_one_line(err, "cilscale scale: --config takes the network from the experiment file", NULL);
    ck_assert_int_eq(RUN("scale", "--set", "seed=1"), 2);
    assert_one_line(err, "cilscale scale: --set needs --config EXPERIMENT.cfg", NULL);
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--set", "model.depths=1,1"), 2);
    assert_one_line(err, "cilscale scale: model.depths: 2 stages given, resnet18 has 4", NULL);
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--set", "model.count=all"), 2);
    assert_one_line(err, "cilscale scale: model.count 'all': expected trained, authors-100 or authors-1000", NULL);
    ck_assert_int_eq(RUN("scale", "--config", cfg, "--set", "model.resolution=half"), 2);
    assert_one_line(err, "cilscale scale: model.resolution 'half': expected policy or keep", NULL);
}
END_TEST

/* Discoverable configuration (issue 14 item 6): the key list, the resolved
 * experiment without running, help CMD, and no option ignored or clamped in
 * silence. */
START_TEST(test_discoverable_config)
{
    ck_assert_int_eq(RUN("run", "--keys"), 0);
    assert_contains(out, "model.depths");
    assert_contains(out, "train.lr                 number (1e-09..1000)       0.1                learning rate");
    assert_contains(out, "cil.NAME");
    ck_assert_int_eq(RUN("run", "--set", "seed=9", "--set", "train.epochs=3", "--print-config"), 0);
    assert_contains(out, "seed = 9L;");
    assert_contains(out, "  epochs = 3;");
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(RUN("run", "--set", "train.epochs=0", "--print-config"), 2);
    assert_one_line(err, "cilscale run: --set train.epochs: '0': expected a whole number from 1 to 100000", NULL);
    ck_assert_int_eq(RUN("help", "sweep"), 0);
    ck_assert_int_eq(strncmp(out, "usage: cilscale sweep", 21), 0);
    ck_assert_int_eq(RUN("help", "frob"), 2);
    assert_one_line(err, "cilscale help: unknown command 'frob'", NULL);
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "100G"), 0);
    assert_one_line(err, "cilscale scale: warning: w reached the search's upper end (64)", NULL);
    ck_assert_int_eq(RUN("bench", "--arch", "resnet18", "--budget", "1M", "--in-channels", "1", "--input", "3x32x32"),
                     2);
    assert_one_line(err, "cilscale bench: --in-channels 1 and --input 3x32x32 disagree", NULL);
}
END_TEST

START_TEST(test_scale_text)
{
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M"), 0);
    ck_assert_str_eq(err, "");
    assert_contains(out, "resnet18 scaled by psi to a budget of 1,000,000 parameters");
    assert_contains(out, "layer1");
    assert_contains(out, "layer4");
    assert_contains(out, "% of the budget");
    assert_contains(out, "reference 11,227,812");
}
END_TEST

/* Equal budgets written differently give the same output. */
START_TEST(test_budget_formats)
{
    static const char *groups[][4] = {
        {"1M", "1000000", "1e6", "1000k"},
        {"1500k", "1.5M", "1500000", "1.5e6"},
        {"2.5M", "2500000", "2500k", "2.5m"},
        {"3e6", "3000000", "3M", "0.003G"},
    };
    static const double values[] = {1e6, 1.5e6, 2.5e6, 3e6};
    static char first[sizeof out];
    for (int g = 0; g < 4; g++) {
        for (int i = 0; i < 4; i++) {
            ck_assert_msg(RUN("scale", "--arch", "resnet18", "--budget", groups[g][i], "--json") == 0, "%s: %s",
                          groups[g][i], err);
            ck_assert_double_eq(json_number(out, "budget"), values[g]);
            ck_assert_msg(json_number(out, "params") <= values[g], "%s: over budget", groups[g][i]);
            if (i == 0)
                memcpy(first, out, sizeof out);
            else
                ck_assert_msg(strcmp(first, out) == 0, "%s and %s differ:\n%s\n%s", groups[g][0], groups[g][i],
                              first, out);
        }
    }
}
END_TEST

/* A manual config: counted, and exit 1 when it is over a given budget. */
START_TEST(test_scale_manual)
{
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--width", "1", "--budget", "1M"), 1);
    assert_one_line(err, "cilscale scale: 11,227,812 parameters is over the budget of 1,000,000", NULL);
    assert_contains(out, "params 11,227,812"); /* the network is still printed */
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--depth", "1", "--budget", "1M", "--json"), 1);
    assert_contains(err, "is over the budget of 1,000,000");
    ck_assert_double_eq(json_number(out, "params"), 11227812);
    assert_contains(out, "\"policy\": null");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--width", "0.25", "--depths", "1,1,1,1", "--budget", "1M",
                         "--json"),
                     0);
    ck_assert_str_eq(err, "");
    ck_assert_msg(json_number(out, "params") <= 1e6, "%s", out);
    /* no budget: just the count */
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--width", "1", "--json"), 0);
    assert_contains(out, "\"budget\": null");
    ck_assert_double_eq(json_number(out, "params"), 11227812);
}
END_TEST

/* ---- grid ---- */

START_TEST(test_grid_text)
{
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M"), 0);
    ck_assert_str_eq(err, "");
    assert_contains(out, "resnet18 under a budget of 1,000,000 parameters");
    assert_contains(out, "picked by");
    /* psi's row: one block per stage */
    const char *row = strstr(out, "\n1,1,1,1 ");
    ck_assert_msg(row != NULL, "no 1,1,1,1 row in:\n%s", out);
    const char *eol = strchr(row + 1, '\n');
    ck_assert_ptr_nonnull(eol);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(eol - row - 1), row + 1);
    ck_assert_msg(strstr(line, " psi") != NULL, "psi not marked on: %s", line);
    ck_assert_msg(strstr(line, "0.500") != NULL, "d not 0.500 on: %s", line);
    /* and only there */
    ck_assert_msg(strstr(out, " psi") > row && strstr(out, " psi") < eol && strstr(eol, " psi") == NULL,
                  "psi not marked on exactly one row:\n%s", out);
}
END_TEST

START_TEST(test_grid_json)
{
    ck_assert_int_eq(RUN("grid", "--arch", "resnet18", "--budget", "1M", "--json"), 0);
    ck_assert_str_eq(err, "");
    ck_assert_msg(out[0] == '{', "%s", out);
    assert_contains(out, "\"rows\": [");
    assert_contains(out, "\"budget\": 1000000");
    const char *row = strstr(out, "{\"depths\": [1, 1, 1, 1]");
    ck_assert_msg(row != NULL, "no [1, 1, 1, 1] row:\n%s", out);
    const char *end = strchr(row, '}');
    ck_assert_ptr_nonnull(end);
    char r[512];
    snprintf(r, sizeof r, "%.*s", (int)(end - row + 1), row);
    assert_contains(r, "\"fits\": true");
    assert_contains(r, "\"psi\"");
    ck_assert_msg(json_number(r, "params") <= 1e6, "%s", r);
    /* the row agrees with scale's pick */
    double params = json_number(r, "params");
    ck_assert_int_eq(RUN("scale", "--arch", "resnet18", "--budget", "1M", "--json"), 0);
    ck_assert_double_eq(json_number(out, "params"), params);
}
END_TEST

/* ---- plugins ---- */

START_TEST(test_plugins_list)
{
    static const char *names[] = {"resnet18", "mobilenetv2", "shufflenetv2", "psi", "compound", "width", "depth"};
    static const char *files[] = {"arch-resnet.so", "arch-mobilenetv2.so", "arch-shufflenetv2.so", "policy-psi.so",
                                  "policy-compound.so", "policy-width.so", "policy-depth.so"};
    ck_assert_int_eq(RUN("plugins"), 0);
    ck_assert_str_eq(err, "");
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "plugins.conf: %s\n", env("CILSCALE_PLUGINS"));
    assert_contains(out, want);
    for (int i = 0; i < 7; i++) {
        snprintf(want, sizeof want, " %-14s 1.0.0 ", names[i]);
        assert_contains(out, want);
        snprintf(want, sizeof want, "/plugins/%s\n", files[i]);
        assert_contains(out, want);
    }
    /* each backend that can run names its default device */
    assert_contains(out, "default device: cpu: ");
    assert_lacks(out, "problem");
}
END_TEST

/* The cpu backend sets OpenBLAS's core type from CPUID unless the user did,
 * and says which it was. */
START_TEST(test_plugins_openblas_coretype)
{
    ck_assert(unsetenv("OPENBLAS_CORETYPE") == 0);
    ck_assert_int_eq(RUN("plugins"), 0);
    assert_contains(out, "GEMM: OpenBLAS ");
    if (strstr(out, "avx512; ") || strstr(out, "avx2; ")) {
        assert_contains(out, ", core type from CPUID: avx");
        assert_lacks(out, "(Prescott kernel");
    }
    ck_assert(setenv("OPENBLAS_CORETYPE", "Sandybridge", 1) == 0);
    ck_assert_int_eq(RUN("plugins"), 0);
    unsetenv("OPENBLAS_CORETYPE");
    assert_contains(out, "(Sandybridge kernel, core type from OPENBLAS_CORETYPE)");
}
END_TEST

START_TEST(test_plugins_broken)
{
    const char *conf = broken_conf("broken.conf", "bad-abi.so", "tiny-arch.so", "backend-score0.so", NULL);
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 1);
    ck_assert_str_eq(err, "");
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "plugins.conf: %s\n", conf);
    assert_contains(out, want);
    assert_contains(out, " resnet18 ");
    assert_contains(out, " psi ");
    assert_contains(out, " tiny ");
    /* a backend that scores 0 says why, in its own words */
    assert_contains(out, "(score 0: cannot run on this machine: score0: no device here)");
    assert_contains(out, "\n1 problem:\n");
    snprintf(want, sizeof want, "  %s/bad-abi.so: built for plugin ABI " TU_STR(CS_ABI_VERSION_NEXT) ", this cilscale has ABI " TU_STR(CS_ABI_VERSION),
             env("CILSCALE_TEST_PLUGIN_DIR"));
    assert_contains(out, want);
    assert_lacks(out, " bad-abi ");

    /* scale and grid go on with what loaded, warning about the rest on stderr */
    ck_assert_int_eq(RUN("scale", "--plugins", conf, "--arch", "resnet18", "--budget", "1M"), 0);
    snprintf(want, sizeof want, "cilscale scale: warning: %s/bad-abi.so: built for plugin ABI " TU_STR(CS_ABI_VERSION_NEXT),
             env("CILSCALE_TEST_PLUGIN_DIR"));
    assert_one_line(err, want, NULL);
    assert_contains(out, "scaled by psi");
    ck_assert_int_eq(RUN("grid", "--plugins", conf, "--arch", "tiny", "--budget", "10k"), 0);
    assert_one_line(err, "cilscale grid: warning: ", "bad-abi.so", NULL);
    /* only resnet18 and psi are in this conf */
    ck_assert_int_eq(RUN("scale", "--plugins", conf, "--arch", "resnet18", "--budget", "1M", "--policy", "width"), 2);
    assert_contains(err, "unknown policy 'width' (loaded: psi)");
}
END_TEST

/* A backend's score is asked when it is used (here: listed), not whenever
 * plugins load: `scale` never probes a device. */
START_TEST(test_plugins_score_lazy)
{
    const char *conf = broken_conf("score.conf", "backend-score0.so", NULL);
    const char *mark = tu_write("score.mark", "");
    ck_assert(remove(mark) == 0);
    ck_assert(setenv("CILSCALE_TEST_SCORE_MARK", mark, 1) == 0);
    ck_assert_int_eq(RUN("scale", "--plugins", conf, "--arch", "resnet18", "--budget", "1M"), 0);
    ck_assert_msg(access(mark, F_OK) != 0, "cilscale scale asked a backend for its score");
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 0);
    ck_assert_int_eq(unsetenv("CILSCALE_TEST_SCORE_MARK"), 0);
    FILE *f = fopen(mark, "r");
    ck_assert_msg(f != NULL, "cilscale plugins did not ask the backend for its score");
    char text[64] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    ck_assert_str_eq(text, "asked\n"); /* once */
    assert_contains(out, "(score 0: cannot run on this machine: score0: no device here)");
}
END_TEST

/* Several problems: each on its own line, counted. */
START_TEST(test_plugins_many_problems)
{
    const char *conf = broken_conf("many.conf", "no-init.so", "null-desc.so", "bad-kind.so", "dup-resnet18.so",
                                   "arch-no-count.so", "policy-no-scale.so", NULL);
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 1);
    assert_contains(out, "\n6 problems:\n");
    assert_contains(out, "no-init.so: no cs_plugin_init symbol");
    assert_contains(out, "null-desc.so: cs_plugin_init returned NULL");
    assert_contains(out, "bad-kind.so: unknown plugin kind 99");
    assert_contains(out, "dup-resnet18.so: duplicate arch plugin 'resnet18'");
    assert_contains(out, "arch-no-count.so: arch plugin 'no-count' lacks count_params");
    assert_contains(out, "policy-no-scale.so: policy plugin 'no-scale' lacks scale");
}
END_TEST

START_TEST(test_plugins_conf_missing)
{
    ck_assert_int_eq(RUN("plugins", "--plugins", "/nonexistent.conf"), 1);
    assert_one_line(err, "cilscale plugins: /nonexistent.conf: cannot read plugin list", NULL);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(RUN("scale", "--plugins", "/nonexistent.conf", "--arch", "resnet18", "--budget", "1M"), 1);
    assert_one_line(err, "cilscale scale: /nonexistent.conf: cannot read plugin list", NULL);
    ck_assert_int_eq(RUN("grid", "--plugins", "/nonexistent.conf", "--arch", "resnet18", "--budget", "1M"), 1);
    assert_one_line(err, "cilscale grid: /nonexistent.conf: cannot read plugin list", NULL);
}
END_TEST

START_TEST(test_plugins_conf_syntax)
{
    const char *conf = tu_write("syntax.conf", "# one\nplugins = [\n  \"a.so\",\n  oops\n];\n");
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "cilscale plugins: %s:4: ", conf);
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 1);
    assert_one_line(err, want, NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

/* $CILSCALE_PLUGINS is honoured, and --plugins beats it. */
/* A truncated plugin (or Vulkan loader) is one line, never a SIGBUS inside
 * dlopen; the other plugins still load (issue 13 item 3). */
START_TEST(test_plugins_truncated)
{
    char whole[PATH_MAX], cut[PATH_MAX];
    snprintf(whole, sizeof whole, "%s/../../plugins/arch-resnet.so", env("CILSCALE_TEST_PLUGIN_DIR"));
    snprintf(cut, sizeof cut, "%s/cut.so", tu_tmpdir());
    FILE *in = fopen(whole, "rb"), *o2 = fopen(cut, "wb");
    ck_assert(in && o2);
    char buf[3000];
    size_t n = fread(buf, 1, sizeof buf, in);
    ck_assert_uint_eq(fwrite(buf, 1, n, o2), n);
    fclose(in);
    fclose(o2);
    char text[2 * PATH_MAX + 64];
    snprintf(text, sizeof text, "plugins = [\"%s/tiny-arch.so\", \"%s\"];\n", env("CILSCALE_TEST_PLUGIN_DIR"), cut);
    const char *conf = tu_write("cut.conf", text);
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 1);
    assert_contains(out, " tiny ");
    assert_contains(out, "cut.so: truncated (a loadable segment ends at byte");
    ck_assert(setenv("CILSCALE_VULKAN_LOADER", cut, 1) == 0);
    ck_assert_int_eq(RUN("plugins"), 0);
    assert_contains(out, "$CILSCALE_VULKAN_LOADER: ");
    assert_contains(out, "cut.so: truncated");
    ck_assert(unsetenv("CILSCALE_VULKAN_LOADER") == 0);
}
END_TEST

/* Confs compose (issue 14 item 7): include loads other confs first, "@default"
 * is the conf cilscale would load; a conf that includes itself is refused. */
START_TEST(test_plugins_include)
{
    char text[PATH_MAX + 128];
    snprintf(text, sizeof text, "include = [\"@default\"];\nplugins = [\"%s/tiny-arch.so\"];\n",
             env("CILSCALE_TEST_PLUGIN_DIR"));
    const char *conf = tu_write("inc.conf", text);
    ck_assert_int_eq(RUN("plugins", "--plugins", conf), 0);
    assert_contains(out, " tiny ");
    assert_contains(out, " mobilenetv2 ");
    assert_contains(out, " lucir ");
    tu_write("outer.conf", "include = [\"inc.conf\"];\n"); /* relative to the conf's folder; includes alone */
    ck_assert_int_eq(RUN("plugins", "--plugins", path_of("outer.conf")), 0);
    assert_contains(out, " tiny ");
    tu_write("self.conf", "include = [\"self.conf\"];\n");
    ck_assert_int_eq(RUN("plugins", "--plugins", path_of("self.conf")), 1);
    assert_contains(err, "includes nest more than 8 deep");
    tu_write("badinc.conf", "include = \"inc.conf\";\n");
    ck_assert_int_eq(RUN("plugins", "--plugins", path_of("badinc.conf")), 1);
    assert_contains(err, "expected 'include = [");
}
END_TEST

START_TEST(test_plugins_env)
{
    const char *conf = broken_conf("env.conf", "tiny-arch.so", NULL);
    char build_conf[PATH_MAX];
    snprintf(build_conf, sizeof build_conf, "%s", env("CILSCALE_PLUGINS"));
    ck_assert(setenv("CILSCALE_PLUGINS", conf, 1) == 0);
    ck_assert_int_eq(RUN("plugins"), 0);
    assert_contains(out, " tiny ");
    assert_lacks(out, " mobilenetv2 ");
    ck_assert_int_eq(RUN("plugins", "--plugins", build_conf), 0);
    assert_lacks(out, " tiny ");
    assert_contains(out, " mobilenetv2 ");
    /* unset: the executable runs from the build tree and finds its conf */
    ck_assert(unsetenv("CILSCALE_PLUGINS") == 0);
    ck_assert_int_eq(RUN("plugins"), 0);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "plugins.conf: %s\n", build_conf);
    assert_contains(out, want);
    ck_assert(setenv("CILSCALE_PLUGINS", build_conf, 1) == 0); /* for CK_FORK=no */
}
END_TEST


static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("usage");
    tcase_add_test(tc, test_no_command);
    tcase_add_test(tc, test_unknown_command);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_unknown_option);
    tcase_add_test(tc, test_missing_required);
    tcase_add_loop_test(tc, test_bad_budget, 0, N_BAD_BUDGETS);
    tcase_add_test(tc, test_unknown_plugin);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_bad_depths);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("scale");
    tcase_add_test(tc, test_budget_too_small);
    tcase_add_test(tc, test_scale_psi_json);
    tcase_add_test(tc, test_scale_text);
    tcase_add_test(tc, test_budget_formats);
    tcase_add_test(tc, test_scale_manual);
    tcase_add_test(tc, test_scale_conventions);
    tcase_add_test(tc, test_scale_config);
    tcase_add_test(tc, test_discoverable_config);
    tcase_add_test(tc, test_grid_text);
    tcase_add_test(tc, test_grid_json);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);

    tc = tcase_create("plugins");
    tcase_add_test(tc, test_plugins_list);
    tcase_add_test(tc, test_plugins_openblas_coretype);
    tcase_add_test(tc, test_plugins_broken);
    tcase_add_test(tc, test_plugins_score_lazy);
    tcase_add_test(tc, test_plugins_many_problems);
    tcase_add_test(tc, test_plugins_conf_missing);
    tcase_add_test(tc, test_plugins_conf_syntax);
    tcase_add_test(tc, test_plugins_env);
    tcase_add_test(tc, test_plugins_truncated);
    tcase_add_test(tc, test_plugins_include);
    tcase_add_checked_fixture(tc, NULL, tu_remove_tmpdir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(cli_suite()) ? 1 : 0; }
