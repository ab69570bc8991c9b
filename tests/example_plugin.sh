#!/usr/bin/env bash
# example_plugin.sh: the out-of-tree plugin workflow, end to end, as a user
# meets it. Configures a fresh build of cilscale from the source root,
# installs it into a scratch prefix, builds examples/policy-halfdepth against
# the installed headers through pkg-config, and runs the INSTALLED cilscale.
# Nothing from an existing build tree is used.
#
# usage: tests/example_plugin.sh [BUILD_DIR] [SOURCE_ROOT]
#   BUILD_DIR    only where the scratch folder goes (default $MESON_BUILD_ROOT,
#                else $TMPDIR or /tmp); it is removed unless a check failed
#   SOURCE_ROOT  the cilscale source tree (default $MESON_SOURCE_ROOT, else
#                this script's folder's parent)
# Prints one line per check and ends with 'N passed, N failed'; exits 1 if any
# check failed.
set -euo pipefail

build_dir=${1:-${MESON_BUILD_ROOT:-}}
src=${2:-${MESON_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
src=$(cd "$src" && pwd)
example_src=$src/examples/policy-halfdepth
if [[ -n $build_dir && -d $build_dir ]]; then
    parent=$(cd "$build_dir" && pwd)
else
    parent=${TMPDIR:-/tmp}
fi
scratch=$(mktemp -d "$parent/example-plugin.XXXXXX")

# The installed command must stand on its own: no plugin list and no library
# path from the caller's environment (meson test sets CILSCALE_PLUGINS).
unset CILSCALE_PLUGINS LD_LIBRARY_PATH

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

finish() {
    local rc=$?
    if ((rc != 0 && failed == 0)); then
        fail "the script stopped unexpectedly (exit $rc)"
    fi
    if ((rc == 0 && failed == 0)); then
        rm -rf "$scratch"
    else
        echo "scratch kept for inspection: $scratch"
    fi
    echo "$passed passed, $failed failed"
    if ((failed > 0 && rc == 0)); then
        exit 1
    fi
}
trap finish EXIT

# in_root CMD...: CMD run from /, so that nothing resolves against the caller's folder.
in_root() { (cd / && "$@"); }

# run CMD...: runs CMD, never aborting; sets rc, out and err.
run() {
    rc=0
    "$@" >"$scratch/stdout" 2>"$scratch/stderr" || rc=$?
    out=$(cat "$scratch/stdout")
    err=$(cat "$scratch/stderr")
}

# step NAME LOG CMD...: a build step that the later checks depend on. On
# failure, show its log and stop.
step() {
    local name=$1 log=$2
    shift 2
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name (log: $log)"
        tail -n 25 "$log" | sed 's/^/    /'
        exit 1
    fi
}

# json_field NAME: the value of a number or array field in the one-line JSON in $out.
json_field() { sed -n "s/.*\"$1\": \(\[[^]]*\]\|[^,}]*\).*/\1/p" <<<"$out"; }

# ---- 1. a fresh cilscale, installed into a scratch prefix ----
prefix=$scratch/prefix
step "configure cilscale (prefix $prefix)" "$scratch/setup.log" \
    meson setup "$scratch/build" "$src" --prefix="$prefix" -Dtests=false
step "build cilscale" "$scratch/build.log" ninja -C "$scratch/build"
step "install cilscale" "$scratch/install.log" meson install -C "$scratch/build"

bin=$prefix/bin/cilscale
pc=$(find "$prefix" -name cilscale.pc -print -quit)
if [[ -n $pc ]]; then
    pass "cilscale.pc installed ($pc)"
else
    fail "cilscale.pc is not installed under $prefix"
    exit 1
fi
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH

plugindir=$(pkg-config --variable=plugindir cilscale || true)
if [[ -n $plugindir && -f $plugindir/arch-resnet.so ]]; then
    pass "pkg-config plugindir holds the shipped plugins ($plugindir)"
else
    fail "pkg-config --variable=plugindir cilscale gave '$plugindir', which lacks arch-resnet.so"
    exit 1
fi

# ---- 2. the installed command finds its library and its plugins.conf ----
run "$bin" version
if ((rc == 0)) && [[ $out == "cilscale "* ]]; then
    pass "installed cilscale runs without LD_LIBRARY_PATH ($out)"
else
    fail "installed cilscale does not run without LD_LIBRARY_PATH (exit $rc): $err"
    echo "    the executable needs install_rpath (the installed libdir) in core/meson.build"
fi

shipped=(resnet18 mobilenetv2 shufflenetv2 psi compound width depth)
run in_root "$bin" plugins
want="plugins.conf: $prefix/share/cilscale/plugins.conf"
first=$(head -n 1 <<<"$out")
missing=()
for name in "${shipped[@]}"; do
    grep -Eq "^(arch|policy) +$name " <<<"$out" || missing+=("$name")
done
if ((rc == 0)) && [[ $first == "$want" ]] && ((${#missing[@]} == 0)); then
    pass "no --plugins, no \$CILSCALE_PLUGINS: the installed plugins.conf, all ${#shipped[@]} shipped plugins"
else
    fail "cilscale plugins without --plugins/\$CILSCALE_PLUGINS (exit $rc): first line '$first', expected '$want'; missing: ${missing[*]:-none}; $err"
fi

# ---- 3. the example, built out of tree against the installed cilscale ----
example_prefix=$scratch/example-prefix
step "configure the example through pkg-config (-Dwerror=true)" "$scratch/example-setup.log" \
    meson setup "$scratch/example-build" "$example_src" --prefix="$example_prefix" -Dwerror=true
step "build the example" "$scratch/example-build.log" ninja -C "$scratch/example-build"
step "install the example" "$scratch/example-install.log" meson install -C "$scratch/example-build"

so=$(find "$example_prefix" -name policy-halfdepth.so -print -quit)
if [[ -n $so ]]; then
    pass "policy-halfdepth.so installed ($so)"
else
    fail "policy-halfdepth.so is not installed under $example_prefix"
    exit 1
fi

if command -v nm >/dev/null; then
    exported=$(nm -D --defined-only "$so" | awk '$2 == "T" || $2 == "D" || $2 == "B" { print $3 }' |
        grep -Ev '^(_edata|_end|__bss_start|_init|_fini)$' | tr '\n' ' ')
    if [[ $exported == "cs_plugin_init " ]]; then
        pass "the example exports cs_plugin_init and nothing else"
    else
        fail "the example exports: $exported(expected cs_plugin_init alone)"
    fi
fi

# A conf of our own: the shipped plugins by absolute path, the example by a
# path relative to the conf's folder (which is not the working directory).
conf_dir=$scratch/conf
mkdir -p "$conf_dir"
conf=$conf_dir/plugins.conf
{
    echo "plugins = ["
    for f in "$plugindir"/*.so; do
        echo "  \"$f\","
    done
    echo "  \"$(realpath --relative-to="$conf_dir" "$so")\""
    echo "];"
} >"$conf"

run in_root "$bin" plugins --plugins "$conf"
if ((rc == 0)) && grep -Eq "^policy +halfdepth +1\.0\.0 " <<<"$out"; then
    pass "cilscale plugins --plugins lists halfdepth, no load problems"
else
    fail "cilscale plugins --plugins $conf (exit $rc) does not list halfdepth cleanly: $out $err"
fi

run in_root env CILSCALE_PLUGINS="$conf" "$bin" plugins
if ((rc == 0)) && grep -Eq "^policy +halfdepth " <<<"$out"; then
    pass "\$CILSCALE_PLUGINS selects the conf too"
else
    fail "CILSCALE_PLUGINS=$conf cilscale plugins (exit $rc) does not list halfdepth: $err"
fi

# The example's own conf, as shipped: include = ["@default"] (the installed
# conf, whatever the prefix) plus build/policy-halfdepth.so from its folder.
ex_conf_dir=$scratch/example-conf
mkdir -p "$ex_conf_dir/build"
cp "$src/examples/policy-halfdepth/plugins.conf" "$ex_conf_dir/"
cp "$so" "$ex_conf_dir/build/"
run in_root "$bin" plugins --plugins "$ex_conf_dir/plugins.conf"
if ((rc == 0)) && grep -Eq "^policy +halfdepth +1\.0\.0 " <<<"$out" && grep -Eq "^backend +cpu " <<<"$out" &&
    grep -Eq "^cil +lucir " <<<"$out"; then
    pass "the example's plugins.conf: the installed plugins (include @default) and halfdepth, for any prefix"
else
    fail "cilscale plugins --plugins examples/policy-halfdepth/plugins.conf (exit $rc): $out $err"
fi

# ---- 4. the policy, on every shipped architecture ----
for arch in resnet18 mobilenetv2 shufflenetv2; do
    run in_root "$bin" scale --arch "$arch" --budget 1M --policy halfdepth --json --plugins "$conf"
    params=$(json_field params)
    w=$(json_field w)
    d=$(json_field d)
    depths=$(json_field depths)
    if ((rc == 0)) && [[ -n $params ]] && ((params <= 1000000)) && [[ $d == 0.5 ]]; then
        pass "$arch: halfdepth at 1M: w = $w, depths $depths, $params params"
    else
        fail "$arch: cilscale scale --policy halfdepth --budget 1M (exit $rc): ${out:-$err}"
        continue
    fi
    # The same network counted directly: --width W --depth 0.5 must agree.
    run in_root "$bin" scale --arch "$arch" --width "$w" --depth 0.5 --budget 1M --json --plugins "$conf"
    if ((rc == 0)) && [[ $(json_field params) == "$params" && $(json_field depths) == "$depths" ]]; then
        pass "$arch: --width $w --depth 0.5 counts the same $params params"
    else
        fail "$arch: --width $w --depth 0.5 gave (exit $rc): ${out:-$err}; the policy said $params params, depths $depths"
    fi
done

run in_root "$bin" scale --arch resnet18 --budget 1000 --policy halfdepth --plugins "$conf"
if ((rc == 1)) && grep -q "policy 'halfdepth'" <<<"$err"; then
    pass "over-budget request: exit 1, message names the policy"
else
    fail "cilscale scale --budget 1000 --policy halfdepth: exit $rc (expected 1): $err"
fi
