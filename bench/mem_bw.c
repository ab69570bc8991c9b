/* mem_bw.c: the machine's memory bandwidth, the ceiling of the memory-bound
 * ops (batch norm, relu, add): a STREAM-style triad a = b + s * c over arrays
 * far larger than the caches, on T threads; bytes counted as 3 x 4 per element.
 *
 *   build/bench/mem_bw [THREADS] [MiB per array]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <omp.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : omp_get_num_procs();
    const long mib = argc > 2 ? atol(argv[2]) : 256;
    if (threads < 1 || mib < 1) {
        fprintf(stderr, "usage: mem_bw [THREADS >= 1] [MiB per array >= 1]\n");
        return 2;
    }
    const long n = mib * 1024 * 1024 / 4;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n),
          *c = malloc(sizeof(float) * (size_t)n);
    if (!a || !b || !c) {
        fprintf(stderr, "mem_bw: out of memory for 3 x %ld MiB\n", mib);
        return 1;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < n; i++) {
        a[i] = 0;
        b[i] = 1;
        c[i] = 2;
    }
    double best = 1e30;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = now();
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (long i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    printf("{\"threads\": %d, \"mib_per_array\": %ld, \"triad_gb_per_s\": %.1f, \"check\": %.1f}\n", threads, mib,
           3.0 * 4 * (double)n / best / 1e9, (double)a[n / 2]);
    free(a);
    free(b);
    free(c);
    return 0;
}
