/* How fast this machine serves scattered 64-byte lines to one thread and to several:
 * each thread follows 12 independent pointer chains around one random cycle through
 * every cache line of a buffer (Sattolo's shuffle, so no chain falls into a short
 * loop). benches/HISTORY.md quotes it where a kernel's 2-thread scaling is at stake.
 *
 *     gcc -O2 -pthread benches/scattered_lines.c -o /tmp/scattered_lines
 *     /tmp/scattered_lines 1 256 && /tmp/scattered_lines 2 256   # threads, MiB
 *
 * Not a test: it prints lines per second and asserts nothing. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

enum { CHAINS = 12, MAX_THREADS = 64 };
static const long STEPS = 1000000;
static uint64_t *buffer; /* line i's first word holds the word index of its successor */
static uint64_t lines;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *chase(void *arg) {
    uint64_t at[CHAINS];
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    for (int c = 0; c < CHAINS; c++) at[c] = ((seed * 7919 + c * 104729) * 2654435761u % lines) * 8;
    for (long s = 0; s < STEPS; s++)
        for (int c = 0; c < CHAINS; c++) at[c] = buffer[at[c]];
    uint64_t sum = 0;
    for (int c = 0; c < CHAINS; c++) sum += at[c];
    return (void *)(uintptr_t)sum; /* keeps the loads */
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS MIB\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]);
    uint64_t bytes = (uint64_t)atol(argv[2]) << 20;
    if (threads < 1 || threads > MAX_THREADS || bytes == 0) {
        fprintf(stderr, "threads 1-%d, at least 1 MiB\n", MAX_THREADS);
        return 2;
    }
    lines = bytes / 64;
    buffer = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint32_t *order = malloc(lines * sizeof *order);
    if (buffer == MAP_FAILED || !order) {
        perror("allocating");
        return 1;
    }
    madvise(buffer, bytes, MADV_HUGEPAGE); /* as numpy's large arrays */
    for (uint64_t i = 0; i < lines; i++) order[i] = (uint32_t)i;
    uint64_t x = 88172645463325252u; /* xorshift64 */
    for (uint64_t i = lines - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t j = x % i, t = order[i];
        order[i] = order[j], order[j] = (uint32_t)t;
    }
    for (uint64_t i = 0; i < lines; i++) buffer[(uint64_t)order[i] * 8] = (uint64_t)order[(i + 1) % lines] * 8;
    free(order);
    pthread_t workers[MAX_THREADS];
    double start = seconds();
    for (int i = 0; i < threads; i++) pthread_create(&workers[i], NULL, chase, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    double elapsed = seconds() - start;
    printf("%d thread(s), %lu MiB: %.1f M lines/s\n", threads, (unsigned long)(bytes >> 20),
           threads * STEPS * CHAINS / elapsed / 1e6);
    return 0;
}
