/*
 * pyramid_png.c: the demo. Makes an EM-like grayscale stack and its label volume, builds
 * an image pyramid (averaging) and a segmentation pyramid (mode) with tinybrain, and
 * writes the middle slice of every mip as a PNG, plus a contact sheet of all of them.
 *
 *   pyramid_png [OUTDIR]        (default: demo-out)
 *
 * Writes OUTDIR/image_mip<k>.png, OUTDIR/labels_mip<k>.png (k = 0 is the input) and
 * OUTDIR/contact_sheet.png, and prints the shapes and the time per mip: one call that
 * makes mip k from mip k-1, and one call that makes all the mips at once (what the PNGs
 * show), each the best of 3. The PNG writer below needs no zlib: it stores
 * the pixels in uncompressed deflate blocks, which every PNG reader accepts.
 *
 * Build (scripts/demo.sh does this):
 *   gcc -std=c99 -O2 -Iinclude examples-c/demo/pyramid_png.c -Ltarget/release -ltinybrain \
 *       -Wl,-rpath,"$PWD/target/release" -lm -o pyramid_png
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tinybrain.h"

#define NDIM 3
#define MIPS 5
static const size_t SHAPE[NDIM] = {512, 512, 24}; /* x, y, z: Fortran order, x fastest */
static const size_t FACTOR[NDIM] = {2, 2, 1};     /* EM is anisotropic: keep every slice */

/* ------------------------------------------------------------------------- */
/* A minimal PNG writer: 8-bit gray or RGB, stored (uncompressed) deflate.   */
/* ------------------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    uint32_t n, c;
    int k;
    for (n = 0; n < 256; n++) {
        for (c = n, k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* One chunk: length, type, data, CRC of type + data. */
static void write_chunk(FILE *f, const char *type, const uint8_t *data, size_t n)
{
    uint8_t head[8], tail[4];
    uint32_t crc;
    put_u32(head, (uint32_t)n);
    memcpy(head + 4, type, 4);
    crc = crc_update(0xFFFFFFFFu, head + 4, 4);
    crc = crc_update(crc, data, n) ^ 0xFFFFFFFFu;
    put_u32(tail, crc);
    fwrite(head, 1, 8, f);
    fwrite(data, 1, n, f);
    fwrite(tail, 1, 4, f);
}

/* Writes a width x height image of `channels` (1 = gray, 3 = RGB) bytes per pixel,
 * rows top to bottom. Returns 0 on success. */
static int write_png(const char *path, size_t width, size_t height, int channels, const uint8_t *pixels)
{
    static const uint8_t signature[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    const size_t row = 1 + width * (size_t)channels; /* filter byte 0, then the pixels */
    const size_t raw_len = row * height;
    const size_t blocks = (raw_len + 65534) / 65535;
    uint8_t ihdr[13], *z, *out;
    uint32_t a = 1, b = 0; /* adler32 */
    size_t y, i, pos = 0;
    FILE *f;

    z = malloc(2 + raw_len + 5 * blocks + 4);
    if (z == NULL)
        return 1;
    z[pos++] = 0x78, z[pos++] = 0x01; /* zlib header: deflate, 32K window, no dictionary */
    for (i = 0; i < blocks; i++) {    /* stored blocks of at most 65535 bytes */
        size_t len = raw_len - i * 65535 < 65535 ? raw_len - i * 65535 : 65535;
        z[pos++] = (uint8_t)(i + 1 == blocks); /* BFINAL on the last, BTYPE 00 */
        z[pos++] = (uint8_t)len, z[pos++] = (uint8_t)(len >> 8);
        z[pos++] = (uint8_t)~len, z[pos++] = (uint8_t)(~len >> 8);
        pos += len; /* filled in below */
    }
    /* The stored data: walk the raw stream and the block layout together. */
    out = z + 2;
    for (i = 0, y = 0; y < height; y++) {
        size_t c;
        for (c = 0; c < row; c++, i++) {
            uint8_t v = c == 0 ? 0 : pixels[y * (row - 1) + (c - 1)];
            if (i % 65535 == 0)
                out += 5; /* skip this block's header */
            *out++ = v;
            a = (a + v) % 65521;
            b = (b + a) % 65521;
        }
    }
    put_u32(z + pos, (b << 16) | a);
    pos += 4;

    put_u32(ihdr, (uint32_t)width);
    put_u32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;                      /* bit depth */
    ihdr[9] = channels == 3 ? 2 : 0;  /* color type: RGB or gray */
    ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive filtering, no interlace */

    f = fopen(path, "wb");
    if (f == NULL) {
        free(z);
        return 1;
    }
    fwrite(signature, 1, 8, f);
    write_chunk(f, "IHDR", ihdr, 13);
    write_chunk(f, "IDAT", z, pos);
    write_chunk(f, "IEND", NULL, 0);
    free(z);
    return fclose(f) != 0;
}

/* ------------------------------------------------------------------------- */
/* The volume: Voronoi "cells" with dark membranes, and their labels          */
/* ------------------------------------------------------------------------- */

#define CELL_XY 56 /* seed grid spacing in x and y (pixels) */
#define CELL_Z 10  /* and in z (slices): cells span several slices */
#define Z_SCALE 5.0 /* anisotropy: a slice is 5 pixels thick */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double unit(uint64_t h) { return (double)(h >> 11) / 9007199254740992.0; }

/* The jittered seed of grid cell (i, j, k), in voxel coordinates. */
static void seed_of(long i, long j, long k, double s[3])
{
    uint64_t h = splitmix64((uint64_t)(i * 73856093L) ^ (uint64_t)(j * 19349663L) ^ (uint64_t)(k * 83492791L));
    s[0] = (i + 0.15 + 0.7 * unit(h)) * CELL_XY;
    s[1] = (j + 0.15 + 0.7 * unit(splitmix64(h))) * CELL_XY;
    s[2] = (k + 0.15 + 0.7 * unit(splitmix64(h + 1))) * CELL_Z;
}

static int make_volume(uint8_t *img, uint64_t *labels)
{
    /* Seeds of grid cells -1..n on each axis, looked up rather than rehashed per voxel. */
    const long nx = (long)SHAPE[0] / CELL_XY + 3, ny = (long)SHAPE[1] / CELL_XY + 3, nz = (long)SHAPE[2] / CELL_Z + 3;
    double(*seeds)[3] = malloc((size_t)(nx * ny * nz) * sizeof *seeds);
    size_t x, y, z;
    long i, j, k;
    uint64_t noise = 88172645463325252ull;
    if (seeds == NULL)
        return 1;
    for (k = -1; k < nz - 1; k++)
        for (j = -1; j < ny - 1; j++)
            for (i = -1; i < nx - 1; i++)
                seed_of(i, j, k, seeds[(i + 1) + nx * ((j + 1) + ny * (k + 1))]);
    for (z = 0; z < SHAPE[2]; z++)
        for (y = 0; y < SHAPE[1]; y++)
            for (x = 0; x < SHAPE[0]; x++) {
                long ci = (long)x / CELL_XY, cj = (long)y / CELL_XY, ck = (long)z / CELL_Z;
                double d1 = 1e30, d2 = 1e30, v, t;
                uint64_t id = 0;
                size_t at = x + SHAPE[0] * (y + SHAPE[1] * z);
                for (k = ck - 1; k <= ck + 1; k++)
                    for (j = cj - 1; j <= cj + 1; j++)
                        for (i = ci - 1; i <= ci + 1; i++) {
                            const double *s = seeds[(i + 1) + nx * ((j + 1) + ny * (k + 1))];
                            double dx = s[0] - (double)x, dy = s[1] - (double)y, dz = (s[2] - (double)z) * Z_SCALE;
                            double d = dx * dx + dy * dy + dz * dz; /* squared until the end */
                            if (d < d1) {
                                d2 = d1, d1 = d;
                                id = (uint64_t)(i + 1000 * j + 1000000 * k);
                            } else if (d < d2) {
                                d2 = d;
                            }
                        }
                id = splitmix64(id) >> 8; /* a big uint64 label, as in connectomics */
                d1 = sqrt(d1), d2 = sqrt(d2);
                /* Cytoplasm: a gray per cell with a faint texture, and a few small dark
                 * vesicles (discs on a jittered 16-pixel grid). */
                v = 125 + 45 * unit(splitmix64(id)) + 8 * sin(x * 0.21 + y * 0.13) * cos(y * 0.17 - z * 0.5);
                {
                    long vi = (long)x / 16, vj = (long)y / 16;
                    uint64_t vh = splitmix64((uint64_t)(vi * 7919L) ^ (uint64_t)(vj * 104729L) ^ (uint64_t)(z / 3));
                    double cx = vi * 16 + 4 + 8 * unit(vh), cy = vj * 16 + 4 + 8 * unit(splitmix64(vh));
                    double r = sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy));
                    if (vh % 5 == 0 && r < 3.5)
                        v -= 55 * (1 - r / 3.5);
                }
                /* Membrane (dark) where the two nearest seeds are almost equally far. */
                t = (d2 - d1) / 5.0;
                t = t > 1 ? 1 : t * t * (3 - 2 * t);
                v = 45 + (v - 45) * t;
                noise ^= noise << 13, noise ^= noise >> 7, noise ^= noise << 17; /* xorshift64 */
                v += ((int)(noise & 31) + (int)((noise >> 8) & 31) - 31) * 0.6; /* grain */
                img[at] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                labels[at] = d2 - d1 < 1.5 ? 0 : id; /* 0: the membrane, as in many segmentations */
            }
    free(seeds);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Pictures                                                                  */
/* ------------------------------------------------------------------------- */

/* A stable, bright color for a label; 0 is black. */
static void label_color(uint64_t label, uint8_t rgb[3])
{
    uint64_t h = splitmix64(label);
    int c;
    for (c = 0; c < 3; c++)
        rgb[c] = label == 0 ? 0 : (uint8_t)(70 + (h >> (8 * c)) % 186);
}

/* The middle z slice of an image mip (gray) or label mip (RGB) as pixels, rows = y. */
static uint8_t *slice_gray(const uint8_t *mip, const size_t s[NDIM])
{
    uint8_t *px = malloc(s[0] * s[1]);
    if (px != NULL) /* Fortran order: a z slice is contiguous, x along the rows */
        memcpy(px, mip + s[0] * s[1] * (s[2] / 2), s[0] * s[1]);
    return px;
}

static uint8_t *slice_rgb(const uint64_t *mip, const size_t s[NDIM])
{
    size_t i, n = s[0] * s[1];
    uint8_t *px = malloc(3 * n);
    if (px != NULL)
        for (i = 0; i < n; i++)
            label_color(mip[s[0] * s[1] * (s[2] / 2) + i], px + 3 * i);
    return px;
}

/* Copies a w x h picture (1 or 3 channels) into the RGB sheet at (x0, y0). */
static void paste(uint8_t *sheet, size_t sheet_w, const uint8_t *px, int channels, size_t w, size_t h,
                  size_t x0, size_t y0)
{
    size_t x, y;
    int c;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            for (c = 0; c < 3; c++)
                sheet[3 * ((y0 + y) * sheet_w + x0 + x) + c] = px[channels * (y * w + x) + (channels == 3 ? c : 0)];
}

/* ------------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int ok(int32_t status, const char *what)
{
    if (status == TB_OK)
        return 1;
    fprintf(stderr, "%s: %s: %s\n", what, tb_status_name(status), tb_last_error_message());
    return 0;
}

typedef int32_t (*packed_fn)(const void *, int32_t, size_t, const size_t *, const ptrdiff_t *, const size_t *,
                             size_t, uint32_t, void *);

/* Best of 3 of one call making mips 1..num_mips of `in` (shape s) into `out`; < 0 on error. */
static double time_call(packed_fn fn, const void *in, int32_t dtype, const size_t s[NDIM], size_t num_mips,
                        void *out)
{
    double best = 1e30;
    int r;
    for (r = 0; r < 3; r++) {
        double t0 = now_ms(), t;
        if (!ok(fn(in, dtype, NDIM, s, NULL, FACTOR, num_mips, 0, out), "tinybrain call"))
            return -1;
        t = now_ms() - t0;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *outdir = argc > 1 ? argv[1] : "demo-out";
    size_t shapes[MIPS + 1][NDIM], offsets[MIPS + 1], total, n = SHAPE[0] * SHAPE[1] * SHAPE[2];
    size_t sheet_w = 0, sheet_h = 2 * SHAPE[1] + 3 * 8, x0, k;
    uint8_t *img = malloc(n), *img_pyr = NULL, *sheet = NULL, *scratch = NULL;
    uint64_t *labels = malloc(n * sizeof *labels), *lab_pyr = NULL;
    double t_img, t_lab, t0, t_make;
    char path[4096];
    int failed = 0;

    crc_init();
    if (img == NULL || labels == NULL)
        return fprintf(stderr, "out of memory\n"), 1;
    t0 = now_ms();
    if (make_volume(img, labels) != 0)
        return fprintf(stderr, "out of memory\n"), 1;
    t_make = now_ms() - t0;

    /* All mips in one packed buffer each: mip 1 first, every mip Fortran-ordered. */
    memcpy(shapes[0], SHAPE, sizeof SHAPE);
    for (k = 1; k <= MIPS; k++)
        if (!ok(tb_mip_shape(NDIM, SHAPE, FACTOR, k, shapes[k]), "tb_mip_shape"))
            return 1;
    if (!ok(tb_pyramid_len(NDIM, SHAPE, FACTOR, MIPS, &total), "tb_pyramid_len"))
        return 1;
    img_pyr = malloc(total);
    lab_pyr = malloc(total * sizeof *lab_pyr);
    scratch = malloc(n * sizeof(uint64_t));
    if (img_pyr == NULL || lab_pyr == NULL || scratch == NULL)
        return fprintf(stderr, "out of memory\n"), 1;
    t_img = time_call(tb_downsample_with_averaging_packed, img, TB_UINT8, SHAPE, MIPS, img_pyr);
    t_lab = time_call(tb_downsample_segmentation_packed, labels, TB_UINT64, SHAPE, MIPS, lab_pyr);
    if (t_img < 0 || t_lab < 0)
        return 1;

    printf("tinybrain %s, %zu threads; volume %zux%zux%zu made in %.0f ms: EM-like uint8 and uint64 labels\n",
           tb_version(), tb_get_num_threads(), SHAPE[0], SHAPE[1], SHAPE[2], t_make);
    printf("factor %zux%zux%zu, %d mips; time per mip: one call making mip k from mip k-1 (best of 3)\n\n",
           FACTOR[0], FACTOR[1], FACTOR[2], MIPS);
    printf("%-4s %-12s %16s %16s\n", "mip", "shape", "image (average)", "labels (mode)");

    /* Where each mip starts in the packed buffers, and the contact sheet's width: image
     * mips on top, label mips below, side by side at their own sizes. */
    offsets[0] = 0;
    for (k = 1; k <= MIPS; k++)
        offsets[k] = offsets[k - 1] + shapes[k][0] * shapes[k][1] * shapes[k][2];
    for (k = 0; k <= MIPS; k++)
        sheet_w += 8 + shapes[k][0];
    sheet_w += 8;
    sheet = malloc(3 * sheet_w * sheet_h);
    if (sheet == NULL)
        return fprintf(stderr, "out of memory\n"), 1;
    memset(sheet, 40, 3 * sheet_w * sheet_h);

    for (k = 0, x0 = 8; k <= MIPS; k++) {
        const uint8_t *im = k == 0 ? img : img_pyr + offsets[k - 1];
        const uint64_t *lb = k == 0 ? labels : lab_pyr + offsets[k - 1];
        uint8_t *gray, *rgb;
        char shape_text[64];
        sprintf(shape_text, "%zux%zux%zu", shapes[k][0], shapes[k][1], shapes[k][2]);
        if (k == 0) {
            printf("%-4zu %-12s %16s %16s\n", k, shape_text, "(input)", "(input)");
        } else {
            const uint8_t *prev_im = k == 1 ? img : img_pyr + offsets[k - 2];
            const uint64_t *prev_lb = k == 1 ? labels : lab_pyr + offsets[k - 2];
            double ti = time_call(tb_downsample_with_averaging_packed, prev_im, TB_UINT8, shapes[k - 1], 1, scratch);
            double tl = time_call(tb_downsample_segmentation_packed, prev_lb, TB_UINT64, shapes[k - 1], 1, scratch);
            if (ti < 0 || tl < 0)
                return 1;
            printf("%-4zu %-12s %13.2f ms %13.2f ms\n", k, shape_text, ti, tl);
        }
        gray = slice_gray(im, shapes[k]);
        rgb = slice_rgb(lb, shapes[k]);
        if (gray == NULL || rgb == NULL)
            return fprintf(stderr, "out of memory\n"), 1;
        sprintf(path, "%.4000s/image_mip%zu.png", outdir, k);
        failed |= write_png(path, shapes[k][0], shapes[k][1], 1, gray);
        sprintf(path, "%.4000s/labels_mip%zu.png", outdir, k);
        failed |= write_png(path, shapes[k][0], shapes[k][1], 3, rgb);
        paste(sheet, sheet_w, gray, 1, shapes[k][0], shapes[k][1], x0, 8);
        paste(sheet, sheet_w, rgb, 3, shapes[k][0], shapes[k][1], x0, 16 + SHAPE[1]);
        x0 += shapes[k][0] + 8;
        free(gray);
        free(rgb);
    }
    printf("%-4s %-12s %13.2f ms %13.2f ms\n", "all", "(one call)", t_img, t_lab);

    sprintf(path, "%.4000s/contact_sheet.png", outdir);
    failed |= write_png(path, sheet_w, sheet_h, 3, sheet);
    if (failed)
        fprintf(stderr, "could not write the PNGs into %s\n", outdir);
    else
        printf("\nwrote %s/image_mip{0..%d}.png, labels_mip{0..%d}.png and contact_sheet.png (middle slice, z = %zu)\n",
               outdir, MIPS, MIPS, SHAPE[2] / 2);

    free(img);
    free(labels);
    free(img_pyr);
    free(lab_pyr);
    free(scratch);
    free(sheet);
    return failed;
}
