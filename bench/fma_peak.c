/* fma_peak.c: the machine's single-precision FMA peak, the ceiling every
 * kernel's GFLOP/s is a fraction of.
 *
 *   build/bench/fma_peak [THREADS] [SECONDS] [avx512|avx2]
 *
 * Each thread runs 12 independent vector FMA chains (enough to cover the FMA
 * latency on every x86 core seen: 4 cycles x 2 ports = 8 in flight) for the
 * given time; the result is 2 flops x lanes x FMAs / seconds, summed over
 * threads, for the widest extension the CPU has (or the one named). */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#define CHAINS 12
#define INNER 1000

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* FMAs done by one call (per lane): CHAINS * INNER * reps. */
__attribute__((target("avx512f"))) static float run512(long reps, float seed)
{
    __m512 a[CHAINS], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++)
        a[i] = _mm512_set1_ps(seed + (float)i);
    for (long r = 0; r < reps; r++)
        for (int k = 0; k < INNER; k++)
            for (int i = 0; i < CHAINS; i++)
                a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < CHAINS; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float run256(long reps, float seed)
{
    __m256 a[CHAINS], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++)
        a[i] = _mm256_set1_ps(seed + (float)i);
    for (long r = 0; r < reps; r++)
        for (int k = 0; k < INNER; k++)
            for (int i = 0; i < CHAINS; i++)
                a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < CHAINS; i++)
        s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : omp_get_num_procs();
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    __builtin_cpu_init();
    const char *isa = argc > 3 ? argv[3] : __builtin_cpu_supports("avx512f") ? "avx512" : "avx2";
    if (threads < 1 || seconds <= 0 || (strcmp(isa, "avx512") && strcmp(isa, "avx2"))) {
        fprintf(stderr, "usage: fma_peak [THREADS >= 1] [SECONDS > 0] [avx512|avx2]\n");
        return 2;
    }
    if ((!strcmp(isa, "avx512") && !__builtin_cpu_supports("avx512f")) ||
        (!strcmp(isa, "avx2") && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))) {
        fprintf(stderr, "fma_peak: this CPU has no %s\n", isa);
        return 1;
    }
    const int lanes = !strcmp(isa, "avx512") ? 16 : 8;
    /* calibrate: reps that take about 50 ms on one thread */
    long reps = 1;
    for (;;) {
        double t0 = now();
        volatile float sink = lanes == 16 ? run512(reps, 1) : run256(reps, 1);
        (void)sink;
        if (now() - t0 > 0.05)
            break;
        reps *= 2;
    }
    double total_fma = 0, t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total_fma)
    {
        double start = now();
        long done = 0;
        float acc = 0;
        while (now() - start < seconds) {
            acc += lanes == 16 ? run512(reps, (float)omp_get_thread_num()) : run256(reps, (float)omp_get_thread_num());
            done += reps;
        }
        if (acc == 12345.f)
            printf(" ");
        total_fma = (double)done * CHAINS * INNER * lanes;
    }
    double dt = now() - t0;
    printf("{\"isa\": \"%s\", \"threads\": %d, \"seconds\": %.2f, \"gflops\": %.1f}\n", isa, threads, dt,
           2 * total_fma / dt / 1e9);
    return 0;
}
