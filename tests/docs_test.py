#!/usr/bin/env python3
"""docs_test.py: the command blocks of the README and the user guide that are
marked for testing run, and what the markers claim holds.

    docs_test.py CILSCALE_EXE SOURCE_ROOT FILE.md...

A fenced block runs when the lines right before it hold markers:

    <!-- doctest -->                 run it (exit status 0 expected)
    <!-- doctest small -->           run it with small settings (below)
    <!-- doctest exit: N -->         expect exit status N from its last command
    <!-- doctest prints: TEXT -->    the output must contain TEXT (may repeat)
    <!-- doctest creates: PATH -->   the file must exist afterwards (may repeat)
    <!-- doctest before: CMD -->     run CMD first (its output is not checked)
    <!-- doctest mpi -->             it runs `mpirun`: skipped (said, not counted)
                                     where cilscale has no MPI or there is no mpirun

A block's commands are its lines that start with "$ " (a console block), or
else every line (a shell block); each runs with bash in a scratch folder that
has the source tree's configs/ and a build/core/cilscale that is the build's
binary, which is also first on PATH as `cilscale`; `mpirun` there is the real
one given --oversubscribe (and --allow-run-as-root as root, as in CI), with
LeakSanitizer off for its ranks (Open MPI's own allocations, as in
tests/mpi_sweep.sh).

Small settings (the suite must stay short): `run` (not --resume) gets
--set data.train_per_class=20 --set data.test_per_class=10 --set
train.epochs=1, `train` gets --limit-train 200 --limit-test 100 --epochs 1,
`bench` gets --steps 1 --warmup 0 --batch 4, and `sweep` gets --list (it
resolves and prints every run, without training them).

Ends with "N passed, N failed"; a marked block with no command is a failure.
"""
import os, shutil, subprocess, sys, tempfile

exe, src, files = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil import check, finish  # noqa: E402


MPIRUN = r'''#!/usr/bin/env bash
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
exec %(mpirun)s %(root)s --oversubscribe "$@"
'''

WRAPPER = r'''#!/usr/bin/env bash
real=%(exe)s
if [ "${CS_DOC_SMALL:-0}" = 1 ]; then
  case "$1" in
    run) case " $* " in *" --resume "*) ;; *) exec "$real" "$@" --set data.train_per_class=20 \
           --set data.test_per_class=10 --set train.epochs=1 ;; esac ;;
    train) exec "$real" "$@" --limit-train 200 --limit-test 100 --epochs 1 ;;
    bench) exec "$real" "$@" --steps 1 --warmup 0 --batch 4 ;;
    sweep) exec "$real" "$@" --list ;;
  esac
fi
exec "$real" "$@"
'''


def blocks(path):
    """(line number, markers dict, commands) of each marked block."""
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k, marks = i - 1, []
            while k >= 0 and lines[k].strip().startswith("<!-- doctest"):
                marks.insert(0, lines[k].strip()[4:-3].strip())
                k -= 1
            if marks:
                m = {"small": False, "mpi": False, "exit": 0, "prints": [], "creates": [], "before": []}
                for t in marks:
                    rest = t[len("doctest"):].strip()
                    if rest == "small":
                        m["small"] = True
                    elif rest == "mpi":
                        m["mpi"] = True
                    elif rest.startswith("exit:"):
                        m["exit"] = int(rest[5:])
                    elif rest.startswith("prints:"):
                        m["prints"].append(rest[7:].strip())
                    elif rest.startswith("creates:"):
                        m["creates"].append(rest[8:].strip())
                    elif rest.startswith("before:"):
                        m["before"].append(rest[7:].strip())
                    elif rest:
                        raise SystemExit("%s:%d: unknown doctest marker %r" % (path, k + 1, t))
                body = lines[i + 1:j]
                cmds = [l[2:] for l in body if l.startswith("$ ")]
                if not cmds:
                    cmds = [l for l in body if l.strip() and not l.lstrip().startswith("#")]
                yield i + 1, m, cmds
            i = j + 1
        else:
            i += 1


real_mpirun = shutil.which("mpirun")
version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
have_mpi = real_mpirun is not None and "MPI: not built in" not in version

for md in files:
    name = os.path.relpath(md, src)
    work = tempfile.mkdtemp(prefix="cs-doc-")
    os.makedirs(os.path.join(work, "build", "core"))
    os.makedirs(os.path.join(work, "bin"))
    shutil.copytree(os.path.join(src, "configs"), os.path.join(work, "configs"))
    for p in (os.path.join(work, "build", "core", "cilscale"), os.path.join(work, "bin", "cilscale")):
        with open(p, "w") as f:
            f.write(WRAPPER % {"exe": exe})
        os.chmod(p, 0o755)
    if real_mpirun:
        with open(os.path.join(work, "bin", "mpirun"), "w") as f:
            f.write(MPIRUN % {"mpirun": real_mpirun, "root": "--allow-run-as-root" if os.geteuid() == 0 else ""})
        os.chmod(os.path.join(work, "bin", "mpirun"), 0o755)
    env = dict(os.environ, PATH=os.path.join(work, "bin") + ":" + os.environ.get("PATH", ""))
    n = 0
    for line, m, cmds in blocks(md):
        n += 1
        where = "%s:%d" % (name, line)
        if not cmds:
            check(False, "%s: a marked block with no command" % where)
            continue
        if m["mpi"] and not have_mpi:
            print("skip: %s: needs mpirun and a cilscale built with MPI" % where)
            continue
        env["CS_DOC_SMALL"] = "1" if m["small"] else "0"
        for b in m["before"]:
            subprocess.run(["bash", "-c", b], cwd=work, env=env, capture_output=True, text=True)
        out, rc = "", 0
        for c in cmds:
            r = subprocess.run(["bash", "-c", c], cwd=work, env=env, capture_output=True, text=True)
            out += r.stdout + r.stderr
            rc = r.returncode
            if rc != 0 and c is not cmds[-1]:
                break
        check(rc == m["exit"], "%s: `%s` exits %d (expected %d)%s" %
              (where, cmds[-1][:70], rc, m["exit"], "" if rc == m["exit"] else ": " + out[-400:]))
        for t in m["prints"]:
            check(t in out, "%s: prints %r" % (where, t))
        for p in m["creates"]:
            check(os.path.exists(os.path.join(work, p)), "%s: creates %s" % (where, p))
    check(n > 0, "%s: %d blocks marked for testing" % (name, n))
    shutil.rmtree(work, ignore_errors=True)

finish()
