/* dp_mpi.h: the CLI's side of data-parallel `run` and `train`: Open MPI as
 * the runtime's communicator (runtime/dp.h), and the rules for output when
 * several ranks run one command. */
#ifndef CILSCALE_DP_MPI_H
#define CILSCALE_DP_MPI_H

#include "runtime/dp.h"

/* Launched by mpirun or srun with more than one rank (the launcher's
 * environment says so; MPI itself need not be started), and not told
 * otherwise by CILSCALE_NO_MPI=1 (which a sweep gives its runs). */
int cli_under_mpi(void);
/* This process's rank by the launcher's environment (0 when not launched). */
int cli_launch_rank(void);
/* One rank's share of the node's cores, of node_ranks ranks on it: min(the
 * CPUs it may run on, the node's CPUs / node_ranks), at least 1, so that
 * ranks a launcher did not bind (or bound to a shared socket) do not start
 * more threads than there are cores. */
int cli_rank_cores(int node_ranks);
#ifdef CS_HAVE_MPI
/* The ranks of MPI_COMM_WORLD on this node (MPI started). */
int cli_mpi_node_ranks(void);
#endif
/* "Open MPI 4.1.4 (mpirun -np N: ...)" or "not built in (...)", for --version. */
void cli_mpi_describe(char *buf, size_t size);

/* Starts a data-parallel command: under mpirun / srun, MPI and (on ranks
 * other than 0) quiet output: their stdout and stderr go to /dev/null
 * (CILSCALE_QUIET_RANKS=0 keeps them), as rank 0 speaks for all, naming a
 * failing rank. Returns CLI_OK, or a failure already printed (a build
 * without MPI under mpirun). Outside a launcher it does nothing. */
int cli_dp_begin(const char *cmd);
/* After the options: the run's cs_dp (cs_dp_set), or NULL outside a launcher. */
int cli_dp_join(const char *cmd, int sync_bn, cs_dp **dp);
/* rc agreed over the ranks (cs_dp_agree), err filled as dp.h says; rc as
 * it is outside a launcher. */
int cli_dp_agree(int rc, cs_error *err);
/* Rank 0, or not data-parallel. */
int cli_dp_lead(void);
/* Ends MPI (every rank), frees the cs_dp; returns rc. */
int cli_dp_end(int rc);
/* One line of the exchanges' cost (nothing outside a launcher), to f. */
void cli_dp_report(const char *cmd, FILE *f);

#endif
