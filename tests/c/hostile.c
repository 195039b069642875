/*
 * hostile.c: the C ABI's error paths and unusual layouts, seen from C.
 *
 * Run under AddressSanitizer + UndefinedBehaviorSanitizer (clang) and under valgrind
 * memcheck by tests/hostile/run.sh. Every buffer is malloc'ed with exactly the bytes its
 * array spans, so a read or write one element past an array is an error under valgrind
 * (which sees the library's own accesses, too) and, for the C side and the memcpy-like
 * calls the sanitizers intercept, under ASan.
 *
 *  A. Error paths: NULL pointers, bad dtype codes, ndim 0 and 9, a 0 factor, an
 *     overflowing shape, strides outside the address space, an output that overlaps
 *     itself, the input or another output, sparse where it is not defined, unknown
 *     flags, misaligned pointers; for all five operations, per-mip and packed. Each must
 *     return the right status with a message naming the argument, and leave every
 *     output byte (and the input) as it was.
 *  B. Odd layouts that are valid: a reversed, C-ordered input (negative strides), a
 *     broadcast input (stride 0), padded C-ordered and reversed outputs. Results must be
 *     byte-identical to the same call on Fortran-contiguous buffers; striding and max
 *     pooling are also checked against naive loops written here.
 *  C. The shape helpers' error paths, and calls after tb_set_num_threads changes.
 *
 * Build: cc -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude tests/c/hostile.c \
 *            -Ltarget/release -ltinybrain -Wl,-rpath,$PWD/target/release
 * Exit status 0 if every check passed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinybrain.h"

typedef int32_t (*per_mip_fn)(const void *, int32_t, size_t, const size_t *, const ptrdiff_t *,
                              const size_t *, size_t, uint32_t, void *const *,
                              const ptrdiff_t *const *);
typedef int32_t (*packed_fn)(const void *, int32_t, size_t, const size_t *, const ptrdiff_t *,
                             const size_t *, size_t, uint32_t, void *);

struct op {
    const char *name;
    per_mip_fn per_mip;
    packed_fn packed;
    int sparse_ok;
};

static const struct op OPS[5] = {
    {"tb_downsample_with_averaging", tb_downsample_with_averaging,
     tb_downsample_with_averaging_packed, 1},
    {"tb_downsample_segmentation", tb_downsample_segmentation, tb_downsample_segmentation_packed,
     1},
    {"tb_downsample_with_min_pooling", tb_downsample_with_min_pooling,
     tb_downsample_with_min_pooling_packed, 0},
    {"tb_downsample_with_max_pooling", tb_downsample_with_max_pooling,
     tb_downsample_with_max_pooling_packed, 0},
    {"tb_downsample_with_striding", tb_downsample_with_striding,
     tb_downsample_with_striding_packed, 0},
};

static int checks = 0;
static int failures = 0;

static void expect(int ok, const char *what)
{
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "FAIL %s\n", what);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static uint32_t rng_state = 88172645u;
static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ------------------------------------------------------------------------- */
/* A. Error paths                                                            */
/* ------------------------------------------------------------------------- */

#define NX 12
#define NY 10
#define NZ 3
#define N_IN (NX * NY * NZ)
#define N_MIP1 (6 * 5 * 3)
#define N_MIP2 (3 * 3 * 3)

enum mutation {
    M_NULL_INPUT,
    M_NULL_SHAPE,
    M_NULL_FACTOR,
    M_NULL_OUTPUTS,
    M_NULL_OUTPUT1,
    M_DTYPE_0,
    M_DTYPE_11,
    M_DTYPE_NEG,
    M_NDIM_0,
    M_NDIM_9,
    M_FACTOR_0,
    M_SHAPE_OVERFLOW,
    M_SHAPE_ZERO,
    M_STRIDES_HUGE,
    M_STRIDES_BELOW_ZERO,
    M_OUT_SELF_OVERLAP,
    M_OUT_STRIDES_HUGE,
    M_OUT_IS_INPUT,
    M_OUT_INSIDE_INPUT,
    M_OUTS_ALIAS,
    M_SPARSE,
    M_FLAG_2,
    M_FLAG_ALL,
    M_MISALIGNED_INPUT,
    M_MISALIGNED_OUTPUT,
    M_COUNT
};

struct expectation {
    int32_t status;
    const char *word; /* must appear in the message */
    int per_mip;      /* applies to the per-mip entry point */
    int packed;       /* applies to the _packed entry point */
};

static struct expectation expected(enum mutation m, const struct op *op)
{
    struct expectation e = {TB_OK, "", 1, 1};
    switch (m) {
    case M_NULL_INPUT: e.status = TB_ERR_NULL_POINTER; e.word = "input is NULL"; break;
    case M_NULL_SHAPE: e.status = TB_ERR_NULL_POINTER; e.word = "shape is NULL"; break;
    case M_NULL_FACTOR: e.status = TB_ERR_NULL_POINTER; e.word = "factor is NULL"; break;
    case M_NULL_OUTPUTS: e.status = TB_ERR_NULL_POINTER; e.word = "output"; break;
    case M_NULL_OUTPUT1: e.status = TB_ERR_NULL_POINTER; e.word = "outputs[1]"; e.packed = 0; break;
    case M_DTYPE_0: e.status = TB_ERR_DTYPE; e.word = "dtype code 0"; break;
    case M_DTYPE_11: e.status = TB_ERR_DTYPE; e.word = "dtype code 11"; break;
    case M_DTYPE_NEG: e.status = TB_ERR_DTYPE; e.word = "dtype code -1"; break;
    case M_NDIM_0: e.status = TB_ERR_SHAPE; e.word = "ndim is 0"; break;
    case M_NDIM_9: e.status = TB_ERR_SHAPE; e.word = "ndim is 9"; break;
    case M_FACTOR_0: e.status = TB_ERR_FACTOR; e.word = "factor[1]"; break;
    case M_SHAPE_OVERFLOW: e.status = TB_ERR_SHAPE; e.word = "shape"; break;
    case M_SHAPE_ZERO: e.status = TB_ERR_SHAPE; e.word = "shape[2]"; break;
    case M_STRIDES_HUGE: e.status = TB_ERR_STRIDES; e.word = "strides of input"; break;
    case M_STRIDES_BELOW_ZERO: e.status = TB_ERR_STRIDES; e.word = "strides of input"; break;
    case M_OUT_SELF_OVERLAP: e.status = TB_ERR_STRIDES; e.word = "outputs[0]"; e.packed = 0; break;
    case M_OUT_STRIDES_HUGE: e.status = TB_ERR_STRIDES; e.word = "outputs[1]"; e.packed = 0; break;
    case M_OUT_IS_INPUT: e.status = TB_ERR_OVERLAP; e.word = "overlaps the input"; break;
    case M_OUT_INSIDE_INPUT: e.status = TB_ERR_OVERLAP; e.word = "overlaps the input"; break;
    case M_OUTS_ALIAS: e.status = TB_ERR_OVERLAP; e.word = "outputs 0 and 1"; e.packed = 0; break;
    case M_SPARSE:
        if (op->sparse_ok) {
            e.status = TB_OK;
        } else {
            e.status = TB_ERR_UNSUPPORTED;
            e.word = "sparse";
        }
        break;
    case M_FLAG_2: e.status = TB_ERR_UNSUPPORTED; e.word = "flag"; break;
    case M_FLAG_ALL: e.status = TB_ERR_UNSUPPORTED; e.word = "flag"; break;
    case M_MISALIGNED_INPUT: e.status = TB_ERR_STRIDES; e.word = "input is not aligned"; break;
    case M_MISALIGNED_OUTPUT: e.status = TB_ERR_STRIDES; e.word = "not aligned"; break;
    case M_COUNT: break;
    }
    return e;
}

static void error_paths(void)
{
    const size_t elem = sizeof(uint16_t);
    uint16_t *input = xmalloc(N_IN * elem);
    uint16_t *input_copy = xmalloc(N_IN * elem);
    unsigned char *out0 = xmalloc(N_MIP1 * elem);
    unsigned char *out1 = xmalloc(N_MIP2 * elem);
    unsigned char *packed = xmalloc((N_MIP1 + N_MIP2) * elem);
    unsigned char sentinel[(N_MIP1 + N_MIP2) * sizeof(uint16_t)];
    size_t i, o;
    int m, is_packed;
    memset(sentinel, 0xA5, sizeof sentinel);
    for (i = 0; i < N_IN; i++) {
        input[i] = (uint16_t)(next_random() % 7u);
    }
    memcpy(input_copy, input, N_IN * elem);

    for (o = 0; o < 5; o++) {
        const struct op *op = &OPS[o];
        for (m = 0; m < M_COUNT; m++) {
            for (is_packed = 0; is_packed < 2; is_packed++) {
                struct expectation e = expected((enum mutation)m, op);
                size_t shape[9] = {NX, NY, NZ, 1, 1, 1, 1, 1, 1};
                size_t factor[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
                ptrdiff_t strides[3] = {1, NX, NX * NY};
                ptrdiff_t out0_strides[3] = {1, 6, 30};
                ptrdiff_t out1_strides[3] = {1, 3, 9};
                const ptrdiff_t *out_strides[2];
                void *outputs[2];
                const void *in = input;
                void *packed_out = packed;
                const size_t *shape_arg = shape;
                const size_t *factor_arg = factor;
                const ptrdiff_t *strides_arg = NULL;
                void *const *outputs_arg = outputs;
                int32_t dtype = TB_UINT16;
                size_t ndim = 3;
                uint32_t flags = 0;
                int32_t status;
                char what[256];
                const char *message;

                if ((is_packed && !e.packed) || (!is_packed && !e.per_mip)) {
                    continue;
                }
                outputs[0] = out0;
                outputs[1] = out1;
                out_strides[0] = NULL;
                out_strides[1] = NULL;
                memset(out0, 0xA5, N_MIP1 * elem);
                memset(out1, 0xA5, N_MIP2 * elem);
                memset(packed, 0xA5, (N_MIP1 + N_MIP2) * elem);

                switch ((enum mutation)m) {
                case M_NULL_INPUT: in = NULL; break;
                case M_NULL_SHAPE: shape_arg = NULL; break;
                case M_NULL_FACTOR: factor_arg = NULL; break;
                case M_NULL_OUTPUTS: outputs_arg = NULL; packed_out = NULL; break;
                case M_NULL_OUTPUT1: outputs[1] = NULL; break;
                case M_DTYPE_0: dtype = 0; break;
                case M_DTYPE_11: dtype = 11; break;
                case M_DTYPE_NEG: dtype = -1; break;
                case M_NDIM_0: ndim = 0; break;
                case M_NDIM_9: ndim = 9; break;
                case M_FACTOR_0: factor[1] = 0; break;
                case M_SHAPE_OVERFLOW: shape[0] = SIZE_MAX; shape[1] = 3; break;
                case M_SHAPE_ZERO: shape[2] = 0; break;
                case M_STRIDES_HUGE: strides[1] = PTRDIFF_MAX; strides_arg = strides; break;
                case M_STRIDES_BELOW_ZERO:
                    strides[2] = PTRDIFF_MIN / 4;
                    strides_arg = strides;
                    break;
                case M_OUT_SELF_OVERLAP:
                    out0_strides[1] = 1;
                    out_strides[0] = out0_strides;
                    break;
                case M_OUT_STRIDES_HUGE:
                    out1_strides[2] = PTRDIFF_MAX;
                    out_strides[1] = out1_strides;
                    break;
                case M_OUT_IS_INPUT: outputs[0] = input; packed_out = input; break;
                case M_OUT_INSIDE_INPUT:
                    outputs[1] = input + 10;
                    packed_out = input + N_IN - 4;
                    break;
                case M_OUTS_ALIAS: outputs[1] = out0 + 2 * elem; break;
                case M_SPARSE: flags = TB_SPARSE; break;
                case M_FLAG_2: flags = 2; break;
                case M_FLAG_ALL: flags = 0xFFFFFFFFu; break;
                case M_MISALIGNED_INPUT: in = (const unsigned char *)input + 1; break;
                case M_MISALIGNED_OUTPUT:
                    outputs[0] = out0 + 1;
                    packed_out = packed + 1;
                    break;
                case M_COUNT: break;
                }

                if (is_packed) {
                    status = op->packed(in, dtype, ndim, shape_arg, strides_arg, factor_arg, 2,
                                        flags, packed_out);
                } else {
                    status = op->per_mip(in, dtype, ndim, shape_arg, strides_arg, factor_arg, 2,
                                         flags, outputs_arg, out_strides);
                }
                message = tb_last_error_message();
                snprintf(what, sizeof what, "%s%s mutation %d: status %s (%s)", op->name,
                         is_packed ? "_packed" : "", m, tb_status_name(status), message);
                expect(status == e.status, what);
                if (e.status != TB_OK) {
                    expect(strncmp(message, op->name, strlen(op->name)) == 0 &&
                               strstr(message, e.word) != NULL,
                           what);
                    expect(memcmp(out0, sentinel, N_MIP1 * elem) == 0 &&
                               memcmp(out1, sentinel, N_MIP2 * elem) == 0 &&
                               memcmp(packed, sentinel, (N_MIP1 + N_MIP2) * elem) == 0,
                           what);
                }
                expect(memcmp(input, input_copy, N_IN * elem) == 0, what);
            }
        }
    }
    free(input);
    free(input_copy);
    free(out0);
    free(out1);
    free(packed);
}

/* ------------------------------------------------------------------------- */
/* B. Odd layouts                                                            */
/* ------------------------------------------------------------------------- */

/* Lowest and highest element offsets an array of shape s with strides st touches. */
static void span(const size_t *s, const ptrdiff_t *st, size_t ndim, ptrdiff_t *lo, ptrdiff_t *hi)
{
    size_t a;
    *lo = 0;
    *hi = 0;
    for (a = 0; a < ndim; a++) {
        ptrdiff_t reach = (ptrdiff_t)(s[a] - 1) * st[a];
        if (reach < 0) {
            *lo += reach;
        } else {
            *hi += reach;
        }
    }
}

static ptrdiff_t offset3(const ptrdiff_t *st, size_t x, size_t y, size_t z)
{
    return (ptrdiff_t)x * st[0] + (ptrdiff_t)y * st[1] + (ptrdiff_t)z * st[2];
}

/* A strided 3-D array in its own exactly-sized allocation. */
struct strided {
    unsigned char *block; /* malloc'ed, (hi - lo + 1) * elem bytes */
    unsigned char *origin; /* element (0, 0, 0) */
    size_t shape[3];
    ptrdiff_t strides[3];
    size_t elem;
};

static struct strided make_strided(const size_t *shape, const ptrdiff_t *strides, size_t elem)
{
    struct strided a;
    ptrdiff_t lo, hi;
    memcpy(a.shape, shape, sizeof a.shape);
    memcpy(a.strides, strides, sizeof a.strides);
    a.elem = elem;
    span(shape, strides, 3, &lo, &hi);
    a.block = xmalloc((size_t)(hi - lo + 1) * elem);
    memset(a.block, 0xA5, (size_t)(hi - lo + 1) * elem);
    a.origin = a.block + (size_t)(-lo) * elem;
    return a;
}

static unsigned char *at(const struct strided *a, size_t x, size_t y, size_t z)
{
    return a->origin + offset3(a->strides, x, y, z) * (ptrdiff_t)a->elem;
}

static void fortran3(const size_t *s, ptrdiff_t *st)
{
    st[0] = 1;
    st[1] = (ptrdiff_t)s[0];
    st[2] = (ptrdiff_t)(s[0] * s[1]);
}

static void write_value(unsigned char *p, int32_t dtype, long v)
{
    switch (dtype) {
    case TB_UINT8: { uint8_t t = (uint8_t)v; memcpy(p, &t, 1); break; }
    case TB_INT16: { int16_t t = (int16_t)v; memcpy(p, &t, 2); break; }
    case TB_FLOAT32: { float t = (float)v * 0.25f; memcpy(p, &t, 4); break; }
    case TB_UINT64: { uint64_t t = (uint64_t)v * 0x0101010101ull; memcpy(p, &t, 8); break; }
    default: break;
    }
}

/* Compares values of dtype as numbers (for the naive max check). */
static int greater(const unsigned char *a, const unsigned char *b, int32_t dtype)
{
    switch (dtype) {
    case TB_UINT8: { uint8_t x, y; memcpy(&x, a, 1); memcpy(&y, b, 1); return x > y; }
    case TB_INT16: { int16_t x, y; memcpy(&x, a, 2); memcpy(&y, b, 2); return x > y; }
    case TB_FLOAT32: { float x, y; memcpy(&x, a, 4); memcpy(&y, b, 4); return x > y; }
    case TB_UINT64: { uint64_t x, y; memcpy(&x, a, 8); memcpy(&y, b, 8); return x > y; }
    default: return 0;
    }
}

#define MIPS 3

static void odd_layouts(void)
{
    static const int32_t dtypes[4] = {TB_UINT8, TB_INT16, TB_FLOAT32, TB_UINT64};
    static const size_t factors[3][3] = {{2, 2, 1}, {2, 2, 2}, {3, 2, 1}};
    const size_t shape[3] = {7, 5, 4};
    size_t d, f, o, k, x, y, z;
    int sparse, layout;
    for (d = 0; d < 4; d++) {
        const int32_t dtype = dtypes[d];
        const size_t elem = tb_dtype_size(dtype);
        for (f = 0; f < 3; f++) {
            const size_t *factor = factors[f];
            size_t mips[MIPS][3];
            size_t total = 0, offsets[MIPS];
            ptrdiff_t fstrides[3];
            struct strided plane; /* a 7x5 plane, broadcast along z by a 0 stride */
            struct strided fortran_in;
            unsigned char *reference;
            for (k = 0; k < MIPS; k++) {
                size_t len;
                expect(tb_mip_shape(3, shape, factor, k + 1, mips[k]) == TB_OK, "tb_mip_shape");
                expect(tb_mip_len(3, shape, factor, k + 1, &len) == TB_OK, "tb_mip_len");
                offsets[k] = total;
                total += len;
            }
            {
                size_t packed_len = 0;
                expect(tb_pyramid_len(3, shape, factor, MIPS, &packed_len) == TB_OK &&
                           packed_len == total,
                       "tb_pyramid_len");
            }
            /* The volume: a plane of values repeated along z (so the broadcast layout
             * below describes the same array). */
            {
                const size_t pshape[3] = {7, 5, 1};
                ptrdiff_t pstrides[3];
                fortran3(pshape, pstrides);
                plane = make_strided(pshape, pstrides, elem);
                for (y = 0; y < 5; y++) {
                    for (x = 0; x < 7; x++) {
                        write_value(at(&plane, x, y, 0), dtype, (long)(next_random() % 5u));
                    }
                }
            }
            fortran3(shape, fstrides);
            fortran_in = make_strided(shape, fstrides, elem);
            for (z = 0; z < 4; z++) {
                for (y = 0; y < 5; y++) {
                    for (x = 0; x < 7; x++) {
                        memcpy(at(&fortran_in, x, y, z), at(&plane, x, y, 0), elem);
                    }
                }
            }
            reference = xmalloc(total * elem);

            for (o = 0; o < 5; o++) {
                const struct op *op = &OPS[o];
                for (sparse = 0; sparse <= op->sparse_ok; sparse++) {
                    const uint32_t flags = sparse ? TB_SPARSE : 0;
                    char what[200];
                    int32_t status = op->packed(fortran_in.origin, dtype, 3, shape, NULL, factor,
                                                MIPS, flags, reference);
                    snprintf(what, sizeof what, "%s dtype %d factor %zu,%zu,%zu sparse %d: %s",
                             op->name, (int)dtype, factor[0], factor[1], factor[2], sparse,
                             tb_last_error_message());
                    expect(status == TB_OK, what);

                    /* Naive checks of the reference: striding and max pooling. */
                    if (o == 4 || o == 3) {
                        for (k = 0; k < MIPS; k++) {
                            const size_t *s = mips[k];
                            const size_t *p = k ? mips[k - 1] : shape;
                            const unsigned char *prev =
                                k ? reference + offsets[k - 1] * elem : fortran_in.origin;
                            for (z = 0; z < s[2]; z++) {
                                for (y = 0; y < s[1]; y++) {
                                    for (x = 0; x < s[0]; x++) {
                                        const unsigned char *got =
                                            reference +
                                            (offsets[k] + x + s[0] * (y + s[1] * z)) * elem;
                                        const unsigned char *best =
                                            prev + (x * factor[0] +
                                                    p[0] * (y * factor[1] +
                                                            p[1] * z * factor[2])) *
                                                       elem;
                                        size_t i, j, l;
                                        if (o == 3) {
                                            for (l = z * factor[2]; l < (z + 1) * factor[2] && l < p[2]; l++)
                                                for (j = y * factor[1]; j < (y + 1) * factor[1] && j < p[1]; j++)
                                                    for (i = x * factor[0]; i < (x + 1) * factor[0] && i < p[0]; i++) {
                                                        const unsigned char *v =
                                                            prev + (i + p[0] * (j + p[1] * l)) * elem;
                                                        if (greater(v, best, dtype)) {
                                                            best = v;
                                                        }
                                                    }
                                        }
                                        expect(memcmp(got, best, elem) == 0, what);
                                    }
                                }
                            }
                        }
                    }

                    for (layout = 0; layout < 3; layout++) {
                        struct strided in;
                        struct strided outs[MIPS];
                        void *out_ptrs[MIPS];
                        const ptrdiff_t *out_strides[MIPS];
                        if (layout == 0) {
                            /* C order, reversed on every axis: all strides negative. */
                            const ptrdiff_t st[3] = {-20, -4, -1};
                            in = make_strided(shape, st, elem);
                        } else if (layout == 1) {
                            /* Broadcast: the 7x5 plane with stride 0 along z. */
                            in = plane;
                            in.shape[2] = 4;
                            in.strides[2] = 0;
                        } else {
                            /* Padded, permuted (y fastest). */
                            const ptrdiff_t st[3] = {6, 1, 50};
                            in = make_strided(shape, st, elem);
                        }
                        if (layout != 1) {
                            for (z = 0; z < 4; z++)
                                for (y = 0; y < 5; y++)
                                    for (x = 0; x < 7; x++)
                                        memcpy(at(&in, x, y, z), at(&fortran_in, x, y, z), elem);
                        }
                        for (k = 0; k < MIPS; k++) {
                            const size_t *s = mips[k];
                            ptrdiff_t st[3];
                            if ((k + layout) % 2 == 0) {
                                /* C order with padding */
                                st[2] = 1;
                                st[1] = (ptrdiff_t)s[2] + 1;
                                st[0] = st[1] * (ptrdiff_t)s[1] + 2;
                            } else {
                                /* Fortran order, reversed */
                                st[0] = -1;
                                st[1] = -(ptrdiff_t)s[0];
                                st[2] = -(ptrdiff_t)(s[0] * s[1]);
                            }
                            outs[k] = make_strided(s, st, elem);
                            out_ptrs[k] = outs[k].origin;
                            out_strides[k] = outs[k].strides;
                        }
                        status = op->per_mip(in.origin, dtype, 3, shape, in.strides, factor, MIPS,
                                             flags, out_ptrs, out_strides);
                        expect(status == TB_OK, what);
                        for (k = 0; k < MIPS; k++) {
                            const size_t *s = mips[k];
                            for (z = 0; z < s[2]; z++)
                                for (y = 0; y < s[1]; y++)
                                    for (x = 0; x < s[0]; x++) {
                                        const unsigned char *want =
                                            reference +
                                            (offsets[k] + x + s[0] * (y + s[1] * z)) * elem;
                                        expect(memcmp(at(&outs[k], x, y, z), want, elem) == 0, what);
                                    }
                            free(outs[k].block);
                        }
                        if (layout != 1) {
                            free(in.block);
                        }
                    }
                }
            }
            free(reference);
            free(plane.block);
            free(fortran_in.block);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* C. Helpers and thread counts                                              */
/* ------------------------------------------------------------------------- */

static void helpers_and_threads(void)
{
    const size_t shape[2] = {4, 4};
    const size_t factor[2] = {2, 2};
    const size_t zero_factor[2] = {2, 0};
    size_t out[2] = {77, 77};
    size_t len = 77;
    size_t n;
    uint8_t input[16];
    uint8_t mip[4];
    void *outputs[1];

    expect(tb_mip_shape(2, shape, factor, 1, NULL) == TB_ERR_NULL_POINTER, "mip_shape NULL out");
    expect(tb_mip_shape(0, shape, factor, 1, out) == TB_ERR_SHAPE, "mip_shape ndim 0");
    expect(tb_mip_shape(2, shape, zero_factor, 1, out) == TB_ERR_FACTOR, "mip_shape factor 0");
    expect(tb_mip_len(2, NULL, factor, 1, &len) == TB_ERR_NULL_POINTER, "mip_len NULL shape");
    expect(tb_pyramid_len(2, shape, factor, SIZE_MAX, &len) == TB_ERR_SHAPE, "pyramid overflow");
    expect(strstr(tb_last_error_message(), "tb_pyramid_len") != NULL, "pyramid message");
    expect(tb_chunk_alignment(2, factor, 64, out) == TB_ERR_SHAPE, "alignment overflow");
    expect(out[0] == 77 && out[1] == 77 && len == 77, "failed helpers wrote nothing");
    expect(strcmp(tb_status_name(-5), "TB_UNKNOWN_STATUS") == 0, "unknown status name");
    expect(tb_dtype_size(11) == 0 && tb_dtype_size(0) == 0, "unknown dtype size");

    for (n = 0; n < 16; n++) {
        input[n] = (uint8_t)(n * 3);
    }
    outputs[0] = mip;
    for (n = 0; n < 6; n++) {
        static const size_t counts[6] = {1, 3, 0, 2, 16, 0};
        expect(tb_set_num_threads(counts[n]) == TB_OK, "tb_set_num_threads");
        expect(tb_get_num_threads() >= 1, "tb_get_num_threads");
        memset(mip, 0xA5, sizeof mip);
        expect(tb_downsample_with_max_pooling(input, TB_UINT8, 2, shape, NULL, factor, 1, 0,
                                              outputs, NULL) == TB_OK,
               "max pooling after a thread-count change");
        /* 4x4, x fastest: block (0,0) = {0,3,12,15} -> 15, (1,0) = {6,9,18,21} -> 21, ... */
        expect(mip[0] == 15 && mip[1] == 21 && mip[2] == 39 && mip[3] == 45, "max values");
    }
}

int main(void)
{
    error_paths();
    odd_layouts();
    helpers_and_threads();
    printf("hostile.c: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
