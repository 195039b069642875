/*
 * pyramid.c: image pyramids with tinybrain's C ABI, every voxel checked.
 *
 * Builds a small EM-like uint8 volume and a uint32 label volume (odd sizes on
 * purpose, deterministic pseudo-random values), then
 *   - a 3-mip average pyramid (factor 2,2,1) into one buffer per mip,
 *   - the same pyramid into one packed buffer (must be byte-identical),
 *   - a 2-mip segmentation (mode) pyramid into one packed buffer,
 * and recomputes every output voxel with the naive loops below, written from the
 * rules in SEMANTICS.md, independently of the library. Finally it makes one call
 * with a zero factor and checks that it fails without touching the output.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   gcc -std=c99 -Wall -Wextra -Wpedantic -Iinclude examples-c/pyramid.c \
 *       -Ltarget/release -ltinybrain -Wl,-rpath,"$PWD/target/release" -o pyramid
 *
 * Exit status: 0 if every voxel matches and every call behaved, 1 otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinybrain.h"

#define NDIM 3
#define AVG_MIPS 3
#define SEG_MIPS 2
#define MAX_MIPS 3

/* x, y, z; axis 0 (x) is fastest in memory (Fortran order, the library's default). */
static const size_t SHAPE[NDIM] = {37, 29, 8};
static const size_t FACTOR[NDIM] = {2, 2, 1};

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------- */

/* xorshift32: the same "random" volume on every run and every machine. */
static uint32_t rng_state = 2463534242u;
static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Linear index of (x, y, z) in a Fortran-ordered array of shape s. */
static size_t at(const size_t s[NDIM], size_t x, size_t y, size_t z)
{
    return x + s[0] * (y + s[1] * z);
}

static size_t count(const size_t s[NDIM])
{
    return s[0] * s[1] * s[2];
}

/* Replicate padding: an index past the end reads the last element. */
static size_t clamp(size_t i, size_t n)
{
    return i < n ? i : n - 1;
}

/* Shape of the next level under a 2x2x1 window: ceil(s / 2) on x and y. */
static void half_shape(const size_t in[NDIM], size_t out[NDIM])
{
    out[0] = (in[0] + 1) / 2;
    out[1] = (in[1] + 1) / 2;
    out[2] = in[2];
}

/* Reports a failed library call; returns 1 (one failure) so callers can add it up. */
static int call_failed(const char *what, int32_t status)
{
    fprintf(stderr, "FAIL %s: %s: %s\n", what, tb_status_name(status), tb_last_error_message());
    return 1;
}

/* Compares a library output with the expected values; prints the first mismatches. */
static int compare_u8(const char *what, const uint8_t *got, const uint64_t *want,
                      const size_t s[NDIM])
{
    size_t x, y, z, bad = 0;
    for (z = 0; z < s[2]; z++)
        for (y = 0; y < s[1]; y++)
            for (x = 0; x < s[0]; x++) {
                size_t i = at(s, x, y, z);
                if (got[i] != want[i] && bad++ < 5)
                    fprintf(stderr, "FAIL %s at (%zu,%zu,%zu): got %u, want %u\n", what, x, y, z,
                            (unsigned)got[i], (unsigned)want[i]);
            }
    return bad != 0;
}

static int compare_u32(const char *what, const uint32_t *got, const uint32_t *want,
                       const size_t s[NDIM])
{
    size_t x, y, z, bad = 0;
    for (z = 0; z < s[2]; z++)
        for (y = 0; y < s[1]; y++)
            for (x = 0; x < s[0]; x++) {
                size_t i = at(s, x, y, z);
                if (got[i] != want[i] && bad++ < 5)
                    fprintf(stderr, "FAIL %s at (%zu,%zu,%zu): got %lu, want %lu\n", what, x, y,
                            z, (unsigned long)got[i], (unsigned long)want[i]);
            }
    return bad != 0;
}

/* Asks the library for the shape of every mip and checks it against ceil(s / 2^k). */
static int mip_shapes(size_t num_mips, size_t shapes[MAX_MIPS + 1][NDIM])
{
    size_t k, a;
    int failures = 0;
    memcpy(shapes[0], SHAPE, sizeof SHAPE);
    for (k = 1; k <= num_mips; k++) {
        size_t want[NDIM];
        int32_t status = tb_mip_shape(NDIM, SHAPE, FACTOR, k, shapes[k]);
        if (status != TB_OK)
            return call_failed("tb_mip_shape", status);
        half_shape(shapes[k - 1], want);
        for (a = 0; a < NDIM; a++)
            if (shapes[k][a] != want[a]) {
                fprintf(stderr, "FAIL tb_mip_shape: mip %zu axis %zu is %zu, want %zu\n", k, a,
                        shapes[k][a], want[a]);
                failures++;
            }
    }
    return failures;
}

static void print_shapes(const char *what, size_t num_mips, size_t shapes[MAX_MIPS + 1][NDIM])
{
    size_t k;
    printf("%s:", what);
    for (k = 1; k <= num_mips; k++)
        printf(" %zux%zux%zu", shapes[k][0], shapes[k][1], shapes[k][2]);
    printf("\n");
}

/* ------------------------------------------------------------------------- */
/* Test data                                                                 */
/* ------------------------------------------------------------------------- */

/* Grayscale like electron microscopy: a smooth background, dark membranes, noise,
 * and a few saturated (255) voxels. */
static void make_em_volume(uint8_t *img)
{
    size_t x, y, z;
    for (z = 0; z < SHAPE[2]; z++)
        for (y = 0; y < SHAPE[1]; y++)
            for (x = 0; x < SHAPE[0]; x++) {
                uint32_t noise = next_random();
                int v = 90 + (int)(2 * x + 3 * y + 4 * z) + (int)(noise % 64);
                if ((x + 2 * y + z) % 11 == 0)
                    v = (int)(noise % 30); /* membrane */
                img[at(SHAPE, x, y, z)] = (uint8_t)(v > 255 ? 255 : v);
            }
}

/* Labels: blocky "cells" whose ids use all 32 bits, with speckles of a few small
 * labels (including 0) so that every branch of the 2x2 mode rule is taken. */
static void make_labels(uint32_t *seg)
{
    static const uint32_t speckle[4] = {0, 1, 2, 0xFFFFFFFFu};
    size_t x, y, z;
    for (z = 0; z < SHAPE[2]; z++)
        for (y = 0; y < SHAPE[1]; y++)
            for (x = 0; x < SHAPE[0]; x++) {
                uint32_t r = next_random();
                uint32_t label = 0x9E3779B9u * (uint32_t)(1 + x / 6 + 7 * (y / 5) + 50 * (z / 3));
                if (r % 3 == 0)
                    label = speckle[(r >> 8) % 4];
                seg[at(SHAPE, x, y, z)] = label;
            }
}

/* ------------------------------------------------------------------------- */
/* Naive reference implementations (SEMANTICS.md)                            */
/* ------------------------------------------------------------------------- */

/* One level of the averaging accumulator: replicate-pad `acc` (shape s) to even x and
 * y, and sum each 2x2 block in a wide integer. Returns a new array of shape ceil(s/2). */
static uint64_t *sum_2x2(const uint64_t *acc, const size_t s[NDIM], size_t out_s[NDIM])
{
    size_t x, y, z;
    uint64_t *out;
    half_shape(s, out_s);
    out = malloc(count(out_s) * sizeof *out);
    if (out == NULL)
        return NULL;
    for (z = 0; z < out_s[2]; z++)
        for (y = 0; y < out_s[1]; y++)
            for (x = 0; x < out_s[0]; x++) {
                size_t x0 = clamp(2 * x, s[0]), x1 = clamp(2 * x + 1, s[0]);
                size_t y0 = clamp(2 * y, s[1]), y1 = clamp(2 * y + 1, s[1]);
                out[at(out_s, x, y, z)] = acc[at(s, x0, y0, z)] + acc[at(s, x1, y0, z)] +
                                          acc[at(s, x0, y1, z)] + acc[at(s, x1, y1, z)];
            }
    return out;
}

/* Expected averaging pyramid for 8-bit 2x2: acc_{m+1} = S(acc_m) and mip m (0-based) is
 * acc_{m+1} >> 2*(m+1). tinybrain resets the accumulator only after mip index 3, so
 * for 3 mips no reset is needed. want[m] receives the expected mip m+1 (caller frees). */
static int expected_averages(const uint8_t *img, size_t num_mips, uint64_t *want[MAX_MIPS])
{
    size_t i, m, s[NDIM], next_s[NDIM];
    uint64_t *acc = malloc(count(SHAPE) * sizeof *acc);
    if (acc == NULL)
        return 1;
    memcpy(s, SHAPE, sizeof s);
    for (i = 0; i < count(s); i++)
        acc[i] = img[i];
    for (m = 0; m < num_mips; m++) {
        uint64_t *next = sum_2x2(acc, s, next_s);
        free(acc);
        if (next == NULL)
            return 1;
        acc = next;
        memcpy(s, next_s, sizeof s);
        want[m] = malloc(count(s) * sizeof *want[m]);
        if (want[m] == NULL) {
            free(acc);
            return 1;
        }
        for (i = 0; i < count(s); i++)
            want[m][i] = acc[i] >> (2 * (m + 1));
    }
    free(acc);
    return 0;
}

/* How often each branch of the mode rule was taken, to show the data exercises it. */
static size_t branch_count[3];

/* Mode of a 2x2 block: a=(0,0), b=(+1,0), c=(0,+1), d=(+1,+1). */
static uint32_t mode_2x2(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    if (a == b || a == c) {
        branch_count[0]++;
        return a;
    }
    if (b == c) {
        branch_count[1]++;
        return b;
    }
    branch_count[2]++;
    return d;
}

/* One level of mode pooling with replicate padding (an edge block's missing voxels
 * repeat the last row/column). Returns a new array of shape ceil(s/2). */
static uint32_t *mode_level(const uint32_t *prev, const size_t s[NDIM], size_t out_s[NDIM])
{
    size_t x, y, z;
    uint32_t *out;
    half_shape(s, out_s);
    out = malloc(count(out_s) * sizeof *out);
    if (out == NULL)
        return NULL;
    for (z = 0; z < out_s[2]; z++)
        for (y = 0; y < out_s[1]; y++)
            for (x = 0; x < out_s[0]; x++) {
                size_t x0 = clamp(2 * x, s[0]), x1 = clamp(2 * x + 1, s[0]);
                size_t y0 = clamp(2 * y, s[1]), y1 = clamp(2 * y + 1, s[1]);
                out[at(out_s, x, y, z)] =
                    mode_2x2(prev[at(s, x0, y0, z)], prev[at(s, x1, y0, z)],
                             prev[at(s, x0, y1, z)], prev[at(s, x1, y1, z)]);
            }
    return out;
}

/* ------------------------------------------------------------------------- */
/* The three demonstrations                                                  */
/* ------------------------------------------------------------------------- */

/* Average pyramid, once with one buffer per mip (`outputs`) and once packed. */
static int run_averaging(const uint8_t *img)
{
    size_t shapes[MAX_MIPS + 1][NDIM];
    uint8_t *mips[AVG_MIPS] = {NULL};
    void *outputs[AVG_MIPS]; /* the same pointers, as the ABI takes them */
    uint64_t *want[AVG_MIPS] = {NULL};
    uint8_t *packed = NULL;
    size_t k, packed_len, offset = 0;
    int32_t status;
    int failures = mip_shapes(AVG_MIPS, shapes);
    if (failures)
        return failures;
    print_shapes("averaging 2x2x1, uint8, mips", AVG_MIPS, shapes);

    /* One caller-allocated buffer per mip, each sized with tb_mip_len. */
    for (k = 1; k <= AVG_MIPS; k++) {
        size_t len;
        status = tb_mip_len(NDIM, SHAPE, FACTOR, k, &len);
        if (status != TB_OK) {
            failures += call_failed("tb_mip_len", status);
            goto done;
        }
        if (len != count(shapes[k])) {
            fprintf(stderr, "FAIL tb_mip_len(mip %zu) = %zu, want %zu\n", k, len,
                    count(shapes[k]));
            failures++;
            goto done;
        }
        mips[k - 1] = malloc(len);
        if (mips[k - 1] == NULL) {
            failures++;
            goto done;
        }
        outputs[k - 1] = mips[k - 1];
    }
    status = tb_downsample_with_averaging(img, TB_UINT8, NDIM, SHAPE, NULL /* Fortran order */,
                                          FACTOR, AVG_MIPS, 0 /* flags */,
                                          outputs, NULL /* Fortran outputs */);
    if (status != TB_OK) {
        failures += call_failed("tb_downsample_with_averaging", status);
        goto done;
    }

    if (expected_averages(img, AVG_MIPS, want) != 0) {
        fprintf(stderr, "FAIL out of memory in the reference\n");
        failures++;
        goto done;
    }
    for (k = 1; k <= AVG_MIPS; k++) {
        char what[64];
        sprintf(what, "averaging mip %zu", k);
        failures += compare_u8(what, mips[k - 1], want[k - 1], shapes[k]);
    }

    /* The same pyramid into one buffer: mip 1, then mip 2, ..., each Fortran order. */
    status = tb_pyramid_len(NDIM, SHAPE, FACTOR, AVG_MIPS, &packed_len);
    if (status != TB_OK) {
        failures += call_failed("tb_pyramid_len", status);
        goto done;
    }
    packed = malloc(packed_len);
    if (packed == NULL) {
        failures++;
        goto done;
    }
    status = tb_downsample_with_averaging_packed(img, TB_UINT8, NDIM, SHAPE, NULL, FACTOR,
                                                 AVG_MIPS, 0, packed);
    if (status != TB_OK) {
        failures += call_failed("tb_downsample_with_averaging_packed", status);
        goto done;
    }
    for (k = 1; k <= AVG_MIPS; k++) {
        if (memcmp(packed + offset, mips[k - 1], count(shapes[k])) != 0) {
            fprintf(stderr, "FAIL packed averaging mip %zu differs from the per-mip call\n", k);
            failures++;
        }
        offset += count(shapes[k]);
    }
    if (offset != packed_len) {
        fprintf(stderr, "FAIL tb_pyramid_len = %zu, want %zu\n", packed_len, offset);
        failures++;
    }
    printf("averaging: %zu voxels in %d mips checked, packed (%zu bytes) identical: %s\n",
           offset, AVG_MIPS, packed_len, failures ? "NO" : "yes");

done:
    for (k = 0; k < AVG_MIPS; k++) {
        free(mips[k]);
        free(want[k]);
    }
    free(packed);
    return failures;
}

/* Segmentation pyramid (mode of modes) into one packed buffer. */
static int run_segmentation(const uint32_t *seg)
{
    size_t shapes[MAX_MIPS + 1][NDIM], s[NDIM];
    uint32_t *packed = NULL, *want = NULL;
    const uint32_t *prev = seg;
    size_t k, packed_len, offset = 0;
    int32_t status;
    int failures = mip_shapes(SEG_MIPS, shapes);
    if (failures)
        return failures;
    print_shapes("segmentation 2x2x1, uint32, mips", SEG_MIPS, shapes);

    status = tb_pyramid_len(NDIM, SHAPE, FACTOR, SEG_MIPS, &packed_len);
    if (status != TB_OK)
        return call_failed("tb_pyramid_len", status);
    packed = malloc(packed_len * sizeof *packed);
    if (packed == NULL)
        return 1;
    status = tb_downsample_segmentation_packed(seg, TB_UINT32, NDIM, SHAPE, NULL, FACTOR,
                                               SEG_MIPS, 0 /* not sparse */, packed);
    if (status != TB_OK) {
        free(packed);
        return call_failed("tb_downsample_segmentation_packed", status);
    }

    /* Each expected mip comes from the previous expected mip, never from the library. */
    memcpy(s, SHAPE, sizeof s);
    for (k = 1; k <= SEG_MIPS; k++) {
        char what[64];
        size_t next_s[NDIM];
        uint32_t *next = mode_level(prev, s, next_s);
        if (next == NULL) {
            failures++;
            break;
        }
        sprintf(what, "segmentation mip %zu", k);
        failures += compare_u32(what, packed + offset, next, next_s);
        offset += count(next_s);
        free(want);
        want = next;
        prev = want;
        memcpy(s, next_s, sizeof s);
    }
    if (offset != packed_len) {
        fprintf(stderr, "FAIL tb_pyramid_len = %zu, want %zu\n", packed_len, offset);
        failures++;
    }
    printf("segmentation: %zu labels in %d mips checked (rule took a %zu, b %zu, d %zu times)\n",
           offset, SEG_MIPS, branch_count[0], branch_count[1], branch_count[2]);
    free(want);
    free(packed);
    return failures;
}

/* A zero factor must be refused before anything is written. */
static int run_error_path(const uint8_t *img)
{
    static const size_t bad_factor[NDIM] = {2, 0, 1};
    size_t shape1[NDIM], i, len;
    uint8_t *out;
    void *outputs[1];
    const char *message;
    int32_t status;
    int failures = 0;

    half_shape(SHAPE, shape1); /* what mip 1 would be with factor 2,2,1 */
    len = count(shape1);
    out = malloc(len);
    if (out == NULL)
        return 1;
    memset(out, 0xA5, len);
    outputs[0] = out;

    status = tb_downsample_with_averaging(img, TB_UINT8, NDIM, SHAPE, NULL, bad_factor, 1, 0,
                                          outputs, NULL);
    message = tb_last_error_message();
    printf("error path (factor 2,0,1): %s: %s\n", tb_status_name(status), message);
    if (status != TB_ERR_FACTOR) {
        fprintf(stderr, "FAIL zero factor returned %s, want TB_ERR_FACTOR\n",
                tb_status_name(status));
        failures++;
    }
    if (message == NULL || message[0] == '\0') {
        fprintf(stderr, "FAIL no error message after a failed call\n");
        failures++;
    }
    for (i = 0; i < len; i++)
        if (out[i] != 0xA5) {
            fprintf(stderr, "FAIL the failed call wrote into the output (byte %zu)\n", i);
            failures++;
            break;
        }
    free(out);
    return failures;
}

int main(void)
{
    uint8_t *img = malloc(count(SHAPE));
    uint32_t *seg = malloc(count(SHAPE) * sizeof *seg);
    int failures = 0;

    if (img == NULL || seg == NULL) {
        fprintf(stderr, "out of memory\n");
        free(img);
        free(seg);
        return EXIT_FAILURE;
    }
    printf("tinybrain %s (header %s), %zu worker threads, volume %zux%zux%zu\n", tb_version(),
           TINYBRAIN_VERSION, tb_get_num_threads(), SHAPE[0], SHAPE[1], SHAPE[2]);
    if (strcmp(tb_version(), TINYBRAIN_VERSION) != 0) {
        fprintf(stderr, "FAIL the library and the header disagree on the version\n");
        failures++;
    }
    make_em_volume(img);
    make_labels(seg);

    failures += run_averaging(img);
    failures += run_segmentation(seg);
    failures += run_error_path(img);

    free(img);
    free(seg);
    printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
