// Winograd F(2×2, 3×3) transforms for 3×3, stride-1, padding-1 convolutions (Lavin & Gray 2016,
// "Fast Algorithms for Convolutional Neural Networks"). Each 2×2 output tile is
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
// over the 4×4 input tiles d_c (stride 2, starting one pixel up-left, zero outside the image),
// with
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The sum over channels for each of the 16 positions ξ is a matrix product done by BLAS:
// M[ξ] [O, T] = U[ξ] [O, C] · V[ξ] [C, T], T = tiles. These kernels do the three transforms;
// the tile loops run along a tile row so that the V and M accesses are contiguous (images of at
// most 16 tiles: over all tiles of a plane at once).
// The weight gradient is the adjoint of the same formula: with the output gradient ḡ of a tile,
// M̄ = A ḡ Aᵀ, ∂U[ξ] [O, C] = Σ_t M̄[ξ] [O, T] · V[ξ] [C, T]ᵀ and ∂g = Gᵀ ∂U G.

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include "haze_plane_offsets.h"
#include "haze_winograd_avx512.h"
#include <stdlib.h>

long haze_winograd_block(long rows, long tiles) { return ((rows * tiles + 1023) & ~1023L) + 16; }

MULTIVERSION void haze_winograd_weights(const float *w, float *u, long o, long c, long first_row, long row_count) {
    const long plane = o * c;
    for (long r = first_row; r < first_row + row_count; r++) {
        float *restrict dst = u + r * c;
        const float *restrict k = w + r * c * 9;
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
        for (long s = 0; s < c; s++) {
            // g: the 3×3 kernel from input channel s to output channel r.
            const float *g = k + s * 9;
            const float g00 = g[0], g01 = g[1], g02 = g[2], g10 = g[3], g11 = g[4], g12 = g[5], g20 = g[6], g21 = g[7], g22 = g[8];
            // G g, column by column: rows (g0, ½(g0 + g1 + g2), ½(g0 − g1 + g2), g2).
            const float t00 = g00, t01 = g01, t02 = g02;
            const float t10 = 0.5f * (g00 + g10 + g20), t11 = 0.5f * (g01 + g11 + g21), t12 = 0.5f * (g02 + g12 + g22);
            const float t20 = 0.5f * (g00 - g10 + g20), t21 = 0.5f * (g01 - g11 + g21), t22 = 0.5f * (g02 - g12 + g22);
            const float t30 = g20, t31 = g21, t32 = g22;
            // (G g) Gᵀ, row i: (t0, ½(t0 + t1 + t2), ½(t0 − t1 + t2), t2) at positions ξ = 4i + j.
#define HAZE_ROW(i, a0, a1, a2)                                                 \
            dst[(4 * i + 0) * plane + s] = a0;                                  \
            dst[(4 * i + 1) * plane + s] = 0.5f * (a0 + a1 + a2);               \
            dst[(4 * i + 2) * plane + s] = 0.5f * (a0 - a1 + a2);               \
            dst[(4 * i + 3) * plane + s] = a2;
            HAZE_ROW(0, t00, t01, t02)
            HAZE_ROW(1, t10, t11, t12)
            HAZE_ROW(2, t20, t21, t22)
            HAZE_ROW(3, t30, t31, t32)
#undef HAZE_ROW
        }
    }
}

// Tile loops run over a whole tile row with a vector-friendly trip count: `vector_tiles(n)` rounds
// n up to a multiple of 8. The extra tiles compute garbage that lands in the places of the tile
// rows that follow in the same position block ξ (rows are written in increasing address order,
// so those rows overwrite it); where the block ends too soon, the loop runs the exact count.
static inline long vector_tiles(long n) { return (n + 7) & ~7L; }

// The trip count for a tile row starting `offset` floats into a position block of `stride`:
// rounded up only while the spill stays inside the block.
static inline long row_tiles(long offset, long tiles_w, long stride) {
    return offset + vector_tiles(tiles_w) <= stride ? vector_tiles(tiles_w) : tiles_w;
}

// Copies the h rows of w floats of an image plane into rows `pitch` apart. A loop rather than one
// memcpy call per row: for the short rows of small images the call costs more than the copy.
// (It and the functions that inline it are marked no_builtin("memcpy") so that it stays a loop.)
#define NO_MEMCPY __attribute__((no_builtin("memcpy")))
static inline NO_MEMCPY void copy_rows(float *restrict dst, long pitch, const float *restrict plane, long h, long w) {
    for (long y = 0; y < h; y++)
#pragma clang loop vectorize(enable) vectorize_predicate(enable)
        for (long q = 0; q < w; q++) dst[y * pitch + q] = plane[y * w + q];
}

// u0…u15: the 16 position rows of a tile row, `stride` apart from `dst` (disjoint).
#define POSITION_ROWS(dst, stride)                                                                          \
    float *restrict u0 = (dst), *restrict u1 = u0 + (stride), *restrict u2 = u1 + (stride);               \
    float *restrict u3 = u2 + (stride), *restrict u4 = u3 + (stride), *restrict u5 = u4 + (stride);       \
    float *restrict u6 = u5 + (stride), *restrict u7 = u6 + (stride), *restrict u8 = u7 + (stride);       \
    float *restrict u9 = u8 + (stride), *restrict u10 = u9 + (stride), *restrict u11 = u10 + (stride);    \
    float *restrict u12 = u11 + (stride), *restrict u13 = u12 + (stride), *restrict u14 = u13 + (stride); \
    float *restrict u15 = u14 + (stride);

// The per-tile formulas, shared by the row-wise loops and the small-image paths.
// INPUT_TRANSFORM: the 4×4 tile d[4i + j] → u_ξ[t] = (Bᵀ d B)[ξ], ξ = 4i + j.
#define INPUT_TRANSFORM(d, t)                                                                               \
    {                                                                                                       \
        float b_[4][4]; /* Bᵀ d */                                                                          \
        for (int j = 0; j < 4; j++) {                                                                       \
            b_[0][j] = d[j] - d[8 + j];                                                                     \
            b_[1][j] = d[4 + j] + d[8 + j];                                                                 \
            b_[2][j] = d[8 + j] - d[4 + j];                                                                 \
            b_[3][j] = d[4 + j] - d[12 + j];                                                                \
        }                                                                                                   \
        u0[t] = b_[0][0] - b_[0][2];  u1[t] = b_[0][1] + b_[0][2];  u2[t] = b_[0][2] - b_[0][1];  u3[t] = b_[0][1] - b_[0][3];   \
        u4[t] = b_[1][0] - b_[1][2];  u5[t] = b_[1][1] + b_[1][2];  u6[t] = b_[1][2] - b_[1][1];  u7[t] = b_[1][1] - b_[1][3];   \
        u8[t] = b_[2][0] - b_[2][2];  u9[t] = b_[2][1] + b_[2][2];  u10[t] = b_[2][2] - b_[2][1]; u11[t] = b_[2][1] - b_[2][3];  \
        u12[t] = b_[3][0] - b_[3][2]; u13[t] = b_[3][1] + b_[3][2]; u14[t] = b_[3][2] - b_[3][1]; u15[t] = b_[3][1] - b_[3][3];  \
    }

// OUTPUT_TRANSFORM: the 16 products src[ξ·stride + t] → r = Aᵀ M A as (y00, y01, y10, y11), plus shift.
#define OUTPUT_TRANSFORM(src, stride, t, r, shift)                                                          \
    {                                                                                                       \
        float s_[4][2]; /* M A, row by row */                                                               \
        for (int i = 0; i < 4; i++) {                                                                       \
            const float m0 = src[(4 * i + 0) * stride + t], m1 = src[(4 * i + 1) * stride + t];             \
            const float m2 = src[(4 * i + 2) * stride + t], m3 = src[(4 * i + 3) * stride + t];             \
            s_[i][0] = m0 + m1 + m2;                                                                        \
            s_[i][1] = m1 - m2 - m3;                                                                        \
        }                                                                                                   \
        r[0] = s_[0][0] + s_[1][0] + s_[2][0] + shift;                                                      \
        r[1] = s_[0][1] + s_[1][1] + s_[2][1] + shift;                                                      \
        r[2] = s_[1][0] - s_[2][0] - s_[3][0] + shift;                                                      \
        r[3] = s_[1][1] - s_[2][1] - s_[3][1] + shift;                                                      \
    }

// OUTPUT_GRADIENT_TRANSFORM: the 2×2 gradient ḡ of a tile → u_ξ[t] = (A ḡ Aᵀ)[ξ].
// A ḡ has rows (ḡ0, ḡ0 + ḡ1, ḡ0 − ḡ1, −ḡ1); (A ḡ) Aᵀ maps each row (x0, x1) to (x0, x0 + x1, x0 − x1, −x1).
#define OUTPUT_GRADIENT_TRANSFORM(g00, g01, g10, g11, t)                                                    \
    {                                                                                                       \
        const float a00 = (g00), a01 = (g01), a10 = (g00) + (g10), a11 = (g01) + (g11);                     \
        const float a20 = (g00) - (g10), a21 = (g01) - (g11), a30 = -(g10), a31 = -(g11);                   \
        u0[t] = a00;  u1[t] = a00 + a01;  u2[t] = a00 - a01;  u3[t] = -a01;                                 \
        u4[t] = a10;  u5[t] = a10 + a11;  u6[t] = a10 - a11;  u7[t] = -a11;                                 \
        u8[t] = a20;  u9[t] = a20 + a21;  u10[t] = a20 - a21; u11[t] = -a21;                                \
        u12[t] = a30; u13[t] = a30 + a31; u14[t] = a30 - a31; u15[t] = -a31;                                \
    }

// Images of at most 16 tiles (7×7, 8×8 and smaller): all tiles of a plane at once, one vector lane
// per tile, reading the pixels of each tile through a table of plane offsets (haze_plane_offsets.h:
// at[k · 16 + t] for pixel k of tile t, −1 outside the image; the constant row length keeps the
// loops vectorised). No padded copy and no half-empty vectors, which dominate the row-wise loops
// below on such planes. With AVX-512 the pixels are permuted out of registers instead
// (haze_winograd_avx512.h, which also covers planes up to 32 wide); these portable loops and the
// row-wise ones below serve the other CPUs and wider planes.
enum { SMALL_TILES = 16 };
static inline int is_small(long tiles_h, long tiles_w) { return tiles_h * tiles_w <= SMALL_TILES; }

// Pixel k of tile t, zero in the padding.
#define PIXEL(plane, at, k, t) ((at)[k][t] >= 0 ? (plane)[(at)[k][t]] : 0.0f)

static inline __attribute__((always_inline)) void input_small(const float *x, float *v, long first_image, long images,
                                                              long c, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(c, tiles);
    int at[16][SMALL_TILES];  // the 4×4 input tiles, stride 2, starting one pixel up-left
    plane_offsets((int *)at, SMALL_TILES, h, w, 4, 4, 2, 1, 1, tiles_h, tiles_w);
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            const float *restrict plane = x + ((first_image + b) * c + ci) * h * w;
            float *dst = v + ci * tiles + b * per_image;
            POSITION_ROWS(dst, stride)
#pragma clang loop vectorize(assume_safety) vectorize_width(16) interleave_count(1) vectorize_predicate(enable)
            for (long t = 0; t < per_image; t++) {
                float d[16];
                for (int k = 0; k < 16; k++) d[k] = PIXEL(plane, at, k, t);
                INPUT_TRANSFORM(d, t)
            }
        }
}

// Adds terms.shifts[at] and then the residual's plane `at` to the n values of y's plane `at`
// (haze_output_terms, after the bias), each where it is given.
static inline __attribute__((always_inline)) void add_terms_to_plane(float *restrict plane, haze_output_terms terms, long at, long n) {
    if (terms.shifts)
        for (long i = 0; i < n; i++) plane[i] += terms.shifts[at];
    if (terms.residual)
        for (long i = 0; i < n; i++) plane[i] += terms.residual[at * n + i];
}

static inline __attribute__((always_inline)) void output_small(const float *m, float *y, haze_output_terms terms, long first_image,
                                                               long images, long o, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles);
    int at[4][SMALL_TILES];  // the 2×2 output tiles
    plane_offsets((int *)at, SMALL_TILES, h, w, 2, 2, 2, 0, 0, tiles_h, tiles_w);
    for (long b = 0; b < images; b++)
        for (long oc = 0; oc < o; oc++) {
            const long image_channel = (first_image + b) * o + oc;
            float *restrict plane = y + image_channel * h * w;
            const float *restrict src = m + oc * tiles + b * per_image;
            const float shift = terms.bias ? terms.bias[oc] : 0;
#pragma clang loop vectorize(assume_safety) vectorize_width(16) interleave_count(1) vectorize_predicate(enable)
            for (long t = 0; t < per_image; t++) {
                float r[4];
                OUTPUT_TRANSFORM(src, stride, t, r, shift)
                for (int k = 0; k < 4; k++)
                    if (at[k][t] >= 0) plane[at[k][t]] = r[k];
            }
            add_terms_to_plane(plane, terms, image_channel, h * w);
        }
}

static inline __attribute__((always_inline)) void output_gradient_small(const float *g, float *gt, long first_image,
                                                                        long images, long o, long h, long w,
                                                                        long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles);
    int at[4][SMALL_TILES];  // the 2×2 output tiles
    plane_offsets((int *)at, SMALL_TILES, h, w, 2, 2, 2, 0, 0, tiles_h, tiles_w);
    for (long oc = 0; oc < o; oc++)
        for (long b = 0; b < images; b++) {
            const float *restrict plane = g + ((first_image + b) * o + oc) * h * w;
            float *dst = gt + oc * tiles + b * per_image;
            POSITION_ROWS(dst, stride)
#pragma clang loop vectorize(assume_safety) vectorize_width(16) interleave_count(1) vectorize_predicate(enable)
            for (long t = 0; t < per_image; t++) {
                const float g00 = PIXEL(plane, at, 0, t), g01 = PIXEL(plane, at, 1, t);
                const float g10 = PIXEL(plane, at, 2, t), g11 = PIXEL(plane, at, 3, t);
                OUTPUT_GRADIENT_TRANSFORM(g00, g01, g10, g11, t)
            }
        }
}

// The planes of images [first_image, first_image + images) of x through `activation` (the
// arithmetic of haze_group_norm_forward with silu, so the same bits), in a buffer to free.
static inline __attribute__((always_inline)) float *activated_planes(const float *x, haze_input_activation activation,
                                                                     long first_image, long images, long c, long spatial) {
    float *planes = malloc((size_t)(images * c * spatial) * sizeof(float));
    for (long q = 0; q < images * c; q++) {
        const long at = first_image * c + q;
        const float scale = activation.scale[at], shift = activation.shift[at];
        const float *restrict s = x + at * spatial;
        float *restrict d = planes + q * spatial;
        for (long i = 0; i < spatial; i++) {
            const float pre = s[i] * scale + shift;
            d[i] = pre / (1.0f + exp_approx(-pre));
        }
    }
    return planes;
}

MULTIVERSION NO_MEMCPY void haze_winograd_input(const float *x, haze_input_activation activation, float *v, long first_image,
                                                long images, long c, long h, long w, long tiles_h, long tiles_w) {
#ifdef HAZE_AVX512
    if (has_avx512()) {
        if (is_small(tiles_h, tiles_w)) return input_small_avx512(x, activation, v, first_image, images, c, h, w, tiles_h, tiles_w);
        if (rows_avx512(w)) return input_rows_avx512(x, activation, v, first_image, images, c, h, w, tiles_h, tiles_w);
        return input_wide_avx512(x, activation, v, first_image, images, c, h, w, tiles_h, tiles_w);
    }
#endif
    if (activation.scale) {  // the portable loops read an activated copy of the item's planes
        float *planes = activated_planes(x, activation, first_image, images, c, h * w);
        haze_winograd_input(planes, (haze_input_activation){0}, v, 0, images, c, h, w, tiles_h, tiles_w);
        free(planes);
        return;
    }
    if (is_small(tiles_h, tiles_w)) return input_small(x, v, first_image, images, c, h, w, tiles_h, tiles_w);
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(c, tiles);  // stride: between ξ
    // One image plane with its zero border, padded[r][q] = x[r − 1][q − 1]: rows 0 and h+1… and the
    // columns 0 and w+1… stay zero (rows are wide enough for the rounded-up tile loop).
    const long ph = 2 * tiles_h + 2, pitch = 2 * vector_tiles(tiles_w) + 2;
    float *padded = calloc((size_t)(ph * pitch), sizeof(float));
    for (long ci = 0; ci < c; ci++) {
        for (long b = 0; b < images; b++) {
            const float *plane = x + ((first_image + b) * c + ci) * h * w;
            copy_rows(padded + pitch + 1, pitch, plane, h, w);
            float *dst = v + ci * tiles + b * per_image;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                const float *restrict d0 = padded + 2 * ty * pitch, *restrict d1 = d0 + pitch,
                            *restrict d2 = d1 + pitch, *restrict d3 = d2 + pitch;
                const long n = row_tiles(dst - v, tiles_w, stride);
                POSITION_ROWS(dst, stride)
                // The 16 output rows and the 4 source rows never overlap (the pointers above are disjoint).
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    // The 4×4 tile is rows d0…d3, columns 2tx…2tx+3.
                    const long q = 2 * tx;
                    const float d[16] = {d0[q], d0[q + 1], d0[q + 2], d0[q + 3], d1[q], d1[q + 1], d1[q + 2], d1[q + 3],
                                         d2[q], d2[q + 1], d2[q + 2], d2[q + 3], d3[q], d3[q + 1], d3[q + 2], d3[q + 3]};
                    INPUT_TRANSFORM(d, tx)
                }
            }
        }
    }
    free(padded);
}

MULTIVERSION NO_MEMCPY void haze_winograd_output(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                                                 long o, long h, long w, long tiles_h, long tiles_w) {
#ifdef HAZE_AVX512
    if (has_avx512()) {
        if (is_small(tiles_h, tiles_w)) return output_small_avx512(m, y, terms, first_image, images, o, h, w, tiles_h, tiles_w);
        return output_rows_avx512(m, y, terms, first_image, images, o, h, w, tiles_h, tiles_w);
    }
#endif
    if (is_small(tiles_h, tiles_w)) return output_small(m, y, terms, first_image, images, o, h, w, tiles_h, tiles_w);
    const long tiles = images * tiles_h * tiles_w, stride = haze_winograd_block(o, tiles);
    const long width = 2 * vector_tiles(tiles_w);
    float rows[2][width];
    for (long b = 0; b < images; b++) {
        for (long oc = 0; oc < o; oc++) {
            float *plane = y + ((first_image + b) * o + oc) * h * w;
            const float shift = terms.bias ? terms.bias[oc] : 0;
            for (long ty = 0; ty < tiles_h; ty++) {
                const float *restrict src = m + oc * tiles + (b * tiles_h + ty) * tiles_w;
                const long n = row_tiles(src - m, tiles_w, stride);
                float *restrict r0 = rows[0], *restrict r1 = rows[1];
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    float r[4];
                    OUTPUT_TRANSFORM(src, stride, tx, r, shift)
                    r0[2 * tx] = r[0];
                    r0[2 * tx + 1] = r[1];
                    r1[2 * tx] = r[2];
                    r1[2 * tx + 1] = r[3];
                }
                for (int r = 0; r < 2 && 2 * ty + r < h; r++)
                    for (long q = 0; q < w; q++) plane[(2 * ty + r) * w + q] = rows[r][q];
            }
            add_terms_to_plane(plane, terms, (first_image + b) * o + oc, h * w);
        }
    }
}

MULTIVERSION NO_MEMCPY void haze_winograd_output_gradient(const float *g, float *gt, long first_image, long images, long o, long h,
                                                long w, long tiles_h, long tiles_w) {
#ifdef HAZE_AVX512
    if (has_avx512()) {
        if (is_small(tiles_h, tiles_w)) return output_gradient_small_avx512(g, gt, first_image, images, o, h, w, tiles_h, tiles_w);
        if (rows_avx512(w)) return output_gradient_rows_avx512(g, gt, first_image, images, o, h, w, tiles_h, tiles_w);
    }
#endif
    if (is_small(tiles_h, tiles_w)) return output_gradient_small(g, gt, first_image, images, o, h, w, tiles_h, tiles_w);
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles);
    // One gradient plane, zero past row h − 1 and column w − 1 (the outputs an odd size does not have).
    const long pitch = 2 * vector_tiles(tiles_w);
    float *padded = calloc((size_t)(2 * tiles_h * pitch), sizeof(float));
    for (long oc = 0; oc < o; oc++) {
        for (long b = 0; b < images; b++) {
            const float *plane = g + ((first_image + b) * o + oc) * h * w;
            copy_rows(padded, pitch, plane, h, w);
            float *dst = gt + oc * tiles + b * per_image;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                const float *restrict g0 = padded + 2 * ty * pitch, *restrict g1 = g0 + pitch;
                const long n = row_tiles(dst - gt, tiles_w, stride);
                POSITION_ROWS(dst, stride)
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    const long q = 2 * tx;
                    OUTPUT_GRADIENT_TRANSFORM(g0[q], g0[q + 1], g1[q], g1[q + 1], tx)
                }
            }
        }
    }
    free(padded);
}

MULTIVERSION void haze_flipped_kernels(const float *w, float *wf, long o, long c, long first_row, long row_count) {
    for (long r = first_row; r < first_row + row_count; r++)
        for (long s = 0; s < o; s++)
            for (int i = 0; i < 9; i++) wf[(r * o + s) * 9 + i] = w[(s * c + r) * 9 + 8 - i];
}

MULTIVERSION void haze_winograd_sum_slots(float *const *slots, long count, long positions, long o, long c, long r) {
    const long plane = o * c;
    for (long k = 1; k < count; k++)
        for (long xi = 0; xi < positions; xi++) {
            float *restrict acc = slots[0] + xi * plane + r * c;
            const float *restrict add = slots[k] + xi * plane + r * c;
            for (long s = 0; s < c; s++) acc[s] += add[s];
        }
}

MULTIVERSION void haze_winograd_weights_gradient(float *const *slots, long count, float *dw, long o, long c,
                                                 long first_row, long row_count) {
    const long plane = o * c;
    for (long r = first_row; r < first_row + row_count; r++) {
        haze_winograd_sum_slots(slots, count, 16, o, c, r);
        const float *restrict du = slots[0] + r * c;
        float *restrict k = dw + r * c * 9;
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
        for (long s = 0; s < c; s++) {
            float d[4][4];
            for (int xi = 0; xi < 16; xi++) d[xi / 4][xi % 4] = du[xi * plane + s];
            float t[3][4];  // Gᵀ ∂U
            for (int j = 0; j < 4; j++) {
                t[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
                t[1][j] = 0.5f * (d[1][j] - d[2][j]);
                t[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
            }
            for (int i = 0; i < 3; i++) {  // (Gᵀ ∂U) G
                k[s * 9 + i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
                k[s * 9 + i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
                k[s * 9 + i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
            }
        }
    }
}
