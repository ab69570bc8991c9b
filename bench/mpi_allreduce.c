/* mpi_allreduce.c: what one MPI_Allreduce (sum, in place) costs here, for
 * the sizes a data-parallel step sends: a few doubles (the per-step
 * agreement, a synchronised batch norm's per-channel sums) and the gradient
 * buckets (256k and 1M floats: 1 and 4 MiB). Median of 7 timings of a loop.
 *
 *   mpirun -np 2 build/bench/mpi_allreduce */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const int sizes[] = {2, 129, 1 << 18, 1 << 20};
    if (rank == 0)
        printf("| elements | type | bytes | us per allreduce (median of 7) | GB/s of payload |\n|---:|---|---:|---:|---:|\n");
    for (int k = 0; k < 4; k++) {
        const int n = sizes[k], dbl = n < 1000, it = dbl ? 20000 : 100;
        void *buf = calloc((size_t)n, dbl ? 8 : 4);
        double t[7];
        for (int w = 0; w < 10; w++)
            MPI_Allreduce(MPI_IN_PLACE, buf, n, dbl ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (int r = 0; r < 7; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            const double t0 = MPI_Wtime();
            for (int i = 0; i < it; i++)
                MPI_Allreduce(MPI_IN_PLACE, buf, n, dbl ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t[r] = (MPI_Wtime() - t0) / it;
        }
        qsort(t, 7, sizeof t[0], cmp);
        const double bytes = (double)n * (dbl ? 8 : 4);
        if (rank == 0)
            printf("| %d | %s | %.0f | %.2f | %.2f |\n", n, dbl ? "double" : "float", bytes, t[3] * 1e6,
                   bytes / t[3] / 1e9);
        free(buf);
    }
    if (rank == 0)
        printf("(%d ranks)\n", world);
    MPI_Finalize();
    return 0;
}
