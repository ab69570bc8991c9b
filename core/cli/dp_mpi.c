/* dp_mpi.c: Open MPI as the data-parallel runtime's communicator (dp_mpi.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include <fcntl.h>
#include <sched.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/dp_mpi.h"

#ifdef CS_HAVE_MPI
#include <mpi.h>
#endif

static const char *launcher_size(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v)
        v = getenv("PMI_SIZE");
    if (!v)
        v = getenv("PMIX_SIZE");
    /* srun --mpi=pmix: a PMIx rank, the step's task count from Slurm (not
     * SLURM_NTASKS alone, which a batch script's own commands see too) */
    if (!v && (getenv("PMIX_RANK") || getenv("PMI_RANK")))
        v = getenv("SLURM_STEP_NUM_TASKS");
    return v;
}

int cli_under_mpi(void)
{
    const char *off = getenv("CILSCALE_NO_MPI");
    if (off && *off && strcmp(off, "0"))
        return 0; /* one process, whatever launched it (a sweep's runs) */
    const char *v = launcher_size();
    return v && atoi(v) > 1;
}

int cli_launch_rank(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_RANK");
    if (!v)
        v = getenv("PMI_RANK");
    if (!v)
        v = getenv("PMIX_RANK");
    if (!v && cli_under_mpi())
        v = getenv("SLURM_PROCID");
    return v ? atoi(v) : 0;
}

int cli_rank_cores(int node_ranks)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN), mine = online;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        mine = CPU_COUNT(&set);
#endif
    long t = online / (node_ranks > 0 ? node_ranks : 1);
    if (mine < t)
        t = mine;
    return t < 1 ? 1 : (int)t;
}

void cli_mpi_describe(char *buf, size_t size)
{
#if defined(CS_HAVE_MPI) && defined(OMPI_MAJOR_VERSION)
    snprintf(buf, size, "Open MPI %d.%d.%d (mpirun -np N: sweep, data-parallel run and train)", OMPI_MAJOR_VERSION,
             OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION);
#elif defined(CS_HAVE_MPI)
    snprintf(buf, size, "MPI %d.%d (mpirun -np N: sweep, data-parallel run and train)", MPI_VERSION, MPI_SUBVERSION);
#else
    snprintf(buf, size, "not built in (libopenmpi-dev; meson setup -Dmpi=enabled)");
#endif
}

static int started, rank;
static cs_dp *the;

#ifdef CS_HAVE_MPI
static int world;
static int loud_fd = -1; /* the real stderr of a quiet rank, for its abort line */

/* Ranks other than 0 say nothing (rank 0 names a failing rank). */
static void quiet(void)
{
    const char *q = getenv("CILSCALE_QUIET_RANKS");
    if (rank == 0 || (q && !strcmp(q, "0")))
        return;
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    loud_fd = dup(2);
    dup2(nul, 1);
    dup2(nul, 2);
    close(nul);
}

static MPI_Comm comm = MPI_COMM_NULL;

int cli_mpi_node_ranks(void)
{
    MPI_Comm node;
    int local = 1, me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    return local > 0 ? local : 1;
}

/* The cpu backend's threads (CILSCALE_THREADS, unless set): this rank's
 * share of the node's cores. */
static void share_cores(void)
{
    if (getenv("CILSCALE_THREADS"))
        return;
    char v[24];
    snprintf(v, sizeof v, "%d", cli_rank_cores(cli_mpi_node_ranks()));
    setenv("CILSCALE_THREADS", v, 0);
}

static int mpi_fail(int code, cs_error *err, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(code, s, &n);
    s[n] = '\0';
    return cs_error_set(err, CS_ERR, "MPI %s: %s", what, s);
}

static int m_allreduce_f64(void *ctx, double *buf, int count, cs_error *err)
{
    (void)ctx;
    int c = MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, comm);
    return c == MPI_SUCCESS ? CS_OK : mpi_fail(c, err, "allreduce");
}

static int m_allreduce_i64(void *ctx, int64_t *buf, int count, int op, cs_error *err)
{
    (void)ctx;
    MPI_Op o = op == CS_DP_MIN ? MPI_MIN : op == CS_DP_MAX ? MPI_MAX : MPI_SUM;
    int c = MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, o, comm);
    return c == MPI_SUCCESS ? CS_OK : mpi_fail(c, err, "allreduce");
}

static int m_iallreduce_f32(void *ctx, float *buf, int64_t count, void **req, cs_error *err)
{
    (void)ctx;
    *req = NULL;
    if (count > INT_MAX)
        return cs_error_set(err, CS_ERR_ARG, "MPI allreduce of %lld floats: at most %d at once", (long long)count,
                            INT_MAX);
    MPI_Request *r = malloc(sizeof *r);
    if (!r)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory");
    int c = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, comm, r);
    if (c != MPI_SUCCESS) {
        free(r);
        return mpi_fail(c, err, "iallreduce");
    }
    *req = r;
    return CS_OK;
}

static int m_test(void *ctx, void *req)
{
    (void)ctx;
    int flag = 0;
    MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    return flag;
}

static int m_wait(void *ctx, void *req, cs_error *err)
{
    (void)ctx;
    int c = MPI_Wait(req, MPI_STATUS_IGNORE);
    free(req);
    return c == MPI_SUCCESS ? CS_OK : mpi_fail(c, err, "wait");
}

static int m_bcast(void *ctx, void *buf, int64_t bytes, int root, cs_error *err)
{
    (void)ctx;
    for (int64_t off = 0; off < bytes;) { /* MPI counts are ints */
        int n = bytes - off > INT_MAX ? INT_MAX : (int)(bytes - off);
        int c = MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, comm);
        if (c != MPI_SUCCESS)
            return mpi_fail(c, err, "broadcast");
        off += n;
    }
    return CS_OK;
}

static int m_to_root(void *ctx, char *text, size_t size, int from, cs_error *err)
{
    (void)ctx;
    int c = MPI_SUCCESS;
    if (from == 0)
        return CS_OK;
    if (rank == from)
        c = MPI_Send(text, (int)strnlen(text, size - 1) + 1, MPI_CHAR, 0, 7, comm);
    else if (rank == 0) {
        c = MPI_Recv(text, (int)size, MPI_CHAR, from, 7, comm, MPI_STATUS_IGNORE);
        text[size - 1] = '\0';
    }
    return c == MPI_SUCCESS ? CS_OK : mpi_fail(c, err, "send");
}

static void m_abort(void *ctx, const char *line)
{
    (void)ctx;
    char buf[1200];
    int n = snprintf(buf, sizeof buf, "cilscale: rank %d of %d: %s\n", rank, world, line);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    fflush(stdout);
    if (write(loud_fd >= 0 ? loud_fd : 2, buf, (size_t)n) < 0) {
        /* nowhere left to say it */
    }
    MPI_Abort(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, 1);
    _exit(1);
}
#endif

int cli_dp_begin(const char *cmd)
{
    if (!cli_under_mpi())
        return CLI_OK;
#ifdef CS_HAVE_MPI
    int provided;
    /* OpenMP threads compute; only this thread calls MPI */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "cilscale %s: MPI did not start\n", cmd);
        return CLI_FAIL;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &world);
    started = 1;
    share_cores();
    quiet();
    return CLI_OK;
#else
    if (cli_launch_rank() == 0)
        fprintf(stderr, "cilscale %s: launched as %s ranks by mpirun or srun, but this cilscale was built without MPI "
                        "(install libopenmpi-dev and build again: meson setup --reconfigure -Dmpi=enabled)\n",
                cmd, launcher_size());
    return CLI_FAIL;
#endif
}

int cli_dp_join(const char *cmd, int sync_bn, cs_dp **dp)
{
    *dp = NULL;
    if (!started)
        return CLI_OK;
#ifdef CS_HAVE_MPI
    cs_dp_ops ops = {.ctx = NULL, .rank = rank, .world = world, .allreduce_f64 = m_allreduce_f64,
                     .allreduce_i64 = m_allreduce_i64, .iallreduce_f32 = m_iallreduce_f32, .test = m_test,
                     .wait = m_wait, .bcast = m_bcast, .to_root = m_to_root, .abort = m_abort};
    cs_error err;
    int64_t bucket = 0;
    const char *b = getenv("CILSCALE_BUCKET_BYTES");
    if (b && *b)
        bucket = atoll(b);
    if (cs_dp_new(&ops, sync_bn, bucket, &the, &err)) {
        fprintf(stderr, "cilscale %s: %s\n", cmd, err.msg);
        return CLI_FAIL;
    }
    cs_dp_set(the);
    *dp = the;
    return CLI_OK;
#else
    (void)cmd;
    (void)sync_bn;
    return CLI_OK;
#endif
}

int cli_dp_agree(int rc, cs_error *err) { return the ? cs_dp_agree(the, rc, err) : rc; }

int cli_dp_lead(void) { return rank == 0; }

void cli_dp_report(const char *cmd, FILE *f)
{
    if (!the)
        return;
    cs_dp_stats st;
    cs_dp_stats_get(the, &st);
    if (!st.steps)
        return;
    char d[96];
    cs_dp_describe(the, d, sizeof d);
    fprintf(f, "cilscale %s: data-parallel over %s: %lld steps, %.1f ms per step (%.1f ms of it waiting for the "
               "gradient sums%s), %.2f MB of gradients and %.3f MB of batch-norm statistics allreduced per step per "
               "rank in %.1f calls\n",
            cmd, d, (long long)st.steps, 1e3 * st.step_s / (double)st.steps, 1e3 * st.wait_s / (double)st.steps,
            st.staged_s > 0 ? ", staging through the host included" : "", 1e-6 * (double)st.grad_bytes / (double)st.steps,
            1e-6 * (double)st.bn_bytes / (double)st.steps, (double)st.buckets / (double)st.steps);
}

int cli_dp_end(int rc)
{
    cs_dp_free(the);
    the = NULL;
#ifdef CS_HAVE_MPI
    if (started) {
        fflush(stdout);
        fflush(stderr);
        MPI_Comm_free(&comm);
        MPI_Finalize();
        started = 0;
    }
#endif
    return rc;
}
