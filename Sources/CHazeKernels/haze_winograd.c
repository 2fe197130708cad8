// Winograd F(2×2, 3×3) transforms for 3×3, stride-1, padding-1 convolutions (Lavin & Gray 2016,
// "Fast Algorithms for Convolutional Neural Networks"). Each 2×2 output tile is
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
// over the 4×4 input tiles d_c (stride 2, starting one pixel up-left, zero outside the image),
// with
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The sum over channels for each of the 16 positions ξ is a matrix product done by BLAS:
// M[ξ] [O, T] = U[ξ] [O, C] · V[ξ] [C, T], T = tiles. These kernels do the three transforms;
// the tile loops run along a tile row so that the V and M accesses are contiguous.
// The weight gradient is the adjoint of the same formula: with the output gradient ḡ of a tile,
// M̄ = A ḡ Aᵀ, ∂U[ξ] [O, C] = Σ_t M̄[ξ] [O, T] · V[ξ] [C, T]ᵀ and ∂g = Gᵀ ∂U G.

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include <stdlib.h>
#include <string.h>

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

// u0…u15: the 16 position rows of a tile row, `stride` apart from `dst` (disjoint).
#define POSITION_ROWS(dst, stride)                                                                          \
    float *restrict u0 = (dst), *restrict u1 = u0 + (stride), *restrict u2 = u1 + (stride);               \
    float *restrict u3 = u2 + (stride), *restrict u4 = u3 + (stride), *restrict u5 = u4 + (stride);       \
    float *restrict u6 = u5 + (stride), *restrict u7 = u6 + (stride), *restrict u8 = u7 + (stride);       \
    float *restrict u9 = u8 + (stride), *restrict u10 = u9 + (stride), *restrict u11 = u10 + (stride);    \
    float *restrict u12 = u11 + (stride), *restrict u13 = u12 + (stride), *restrict u14 = u13 + (stride); \
    float *restrict u15 = u14 + (stride);

MULTIVERSION void haze_winograd_input(const float *x, float *v, long first_image, long images, long c, long h, long w,
                                      long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = c * tiles;  // stride: between ξ
    // One image plane with its zero border, padded[r][q] = x[r − 1][q − 1]: rows 0 and h+1… and the
    // columns 0 and w+1… stay zero (rows are wide enough for the rounded-up tile loop).
    const long ph = 2 * tiles_h + 2, pitch = 2 * vector_tiles(tiles_w) + 2;
    float *padded = calloc((size_t)(ph * pitch), sizeof(float));
    for (long ci = 0; ci < c; ci++) {
        for (long b = 0; b < images; b++) {
            const float *plane = x + ((first_image + b) * c + ci) * h * w;
            for (long y = 0; y < h; y++) memcpy(padded + (y + 1) * pitch + 1, plane + y * w, sizeof(float) * w);
            float *dst = v + ci * tiles + b * per_image;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                const float *restrict d0 = padded + 2 * ty * pitch, *restrict d1 = d0 + pitch,
                            *restrict d2 = d1 + pitch, *restrict d3 = d2 + pitch;
                const long n = row_tiles(dst - v, tiles_w, stride);
                POSITION_ROWS(dst, stride)
                // The 16 output rows and the 4 source rows never overlap (the pointers above are disjoint).
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    // The 4×4 tile d is rows d0…d3, columns 2tx…2tx+3; t = Bᵀ d.
                    const long q = 2 * tx;
                    const float t00 = d0[q] - d2[q], t01 = d0[q + 1] - d2[q + 1], t02 = d0[q + 2] - d2[q + 2], t03 = d0[q + 3] - d2[q + 3];
                    const float t10 = d1[q] + d2[q], t11 = d1[q + 1] + d2[q + 1], t12 = d1[q + 2] + d2[q + 2], t13 = d1[q + 3] + d2[q + 3];
                    const float t20 = d2[q] - d1[q], t21 = d2[q + 1] - d1[q + 1], t22 = d2[q + 2] - d1[q + 2], t23 = d2[q + 3] - d1[q + 3];
                    const float t30 = d1[q] - d3[q], t31 = d1[q + 1] - d3[q + 1], t32 = d1[q + 2] - d3[q + 2], t33 = d1[q + 3] - d3[q + 3];
                    // (Bᵀ d) B at position ξ = 4i + j.
                    u0[tx] = t00 - t02;  u1[tx] = t01 + t02;  u2[tx] = t02 - t01;  u3[tx] = t01 - t03;
                    u4[tx] = t10 - t12;  u5[tx] = t11 + t12;  u6[tx] = t12 - t11;  u7[tx] = t11 - t13;
                    u8[tx] = t20 - t22;  u9[tx] = t21 + t22;  u10[tx] = t22 - t21; u11[tx] = t21 - t23;
                    u12[tx] = t30 - t32; u13[tx] = t31 + t32; u14[tx] = t32 - t31; u15[tx] = t31 - t33;
                }
            }
        }
    }
    free(padded);
}

MULTIVERSION void haze_winograd_output(const float *m, float *y, const float *bias, long first_image, long images,
                                       long o, long h, long w, long tiles_h, long tiles_w) {
    const long tiles = images * tiles_h * tiles_w, stride = o * tiles;
    const long width = 2 * vector_tiles(tiles_w);
    float rows[2][width];
    for (long b = 0; b < images; b++) {
        for (long oc = 0; oc < o; oc++) {
            float *plane = y + ((first_image + b) * o + oc) * h * w;
            const float shift = bias ? bias[oc] : 0;
            for (long ty = 0; ty < tiles_h; ty++) {
                const float *restrict src = m + oc * tiles + (b * tiles_h + ty) * tiles_w;
                const long n = row_tiles(src - m, tiles_w, stride);
                float *restrict r0 = rows[0], *restrict r1 = rows[1];
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    float s[4][2];  // M A, row by row
                    for (int r = 0; r < 4; r++) {
                        const float m0 = src[(r * 4 + 0) * stride + tx], m1 = src[(r * 4 + 1) * stride + tx];
                        const float m2 = src[(r * 4 + 2) * stride + tx], m3 = src[(r * 4 + 3) * stride + tx];
                        s[r][0] = m0 + m1 + m2;
                        s[r][1] = m1 - m2 - m3;
                    }
                    // Aᵀ (M A)
                    r0[2 * tx] = s[0][0] + s[1][0] + s[2][0] + shift;
                    r0[2 * tx + 1] = s[0][1] + s[1][1] + s[2][1] + shift;
                    r1[2 * tx] = s[1][0] - s[2][0] - s[3][0] + shift;
                    r1[2 * tx + 1] = s[1][1] - s[2][1] - s[3][1] + shift;
                }
                for (int r = 0; r < 2 && 2 * ty + r < h; r++)
                    for (long q = 0; q < w; q++) plane[(2 * ty + r) * w + q] = rows[r][q];
            }
        }
    }
}

MULTIVERSION void haze_winograd_output_gradient(const float *g, float *gt, long first_image, long images, long o, long h,
                                                long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = o * tiles;
    // One gradient plane, zero past row h − 1 and column w − 1 (the outputs an odd size does not have).
    const long pitch = 2 * vector_tiles(tiles_w);
    float *padded = calloc((size_t)(2 * tiles_h * pitch), sizeof(float));
    for (long oc = 0; oc < o; oc++) {
        for (long b = 0; b < images; b++) {
            const float *plane = g + ((first_image + b) * o + oc) * h * w;
            for (long y = 0; y < h; y++) memcpy(padded + y * pitch, plane + y * w, sizeof(float) * w);
            float *dst = gt + oc * tiles + b * per_image;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                const float *restrict g0 = padded + 2 * ty * pitch, *restrict g1 = g0 + pitch;
                const long n = row_tiles(dst - gt, tiles_w, stride);
                POSITION_ROWS(dst, stride)
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
                for (long tx = 0; tx < n; tx++) {
                    const long q = 2 * tx;
                    // A ḡ: rows (ḡ0, ḡ0 + ḡ1, ḡ0 − ḡ1, −ḡ1), each a pair of columns.
                    const float a00 = g0[q], a01 = g0[q + 1];
                    const float a10 = g0[q] + g1[q], a11 = g0[q + 1] + g1[q + 1];
                    const float a20 = g0[q] - g1[q], a21 = g0[q + 1] - g1[q + 1];
                    const float a30 = -g1[q], a31 = -g1[q + 1];
                    // (A ḡ) Aᵀ: each row (x0, x1) → (x0, x0 + x1, x0 − x1, −x1), position ξ = 4i + j.
                    u0[tx] = a00;  u1[tx] = a00 + a01;  u2[tx] = a00 - a01;  u3[tx] = -a01;
                    u4[tx] = a10;  u5[tx] = a10 + a11;  u6[tx] = a10 - a11;  u7[tx] = -a11;
                    u8[tx] = a20;  u9[tx] = a20 + a21;  u10[tx] = a20 - a21; u11[tx] = -a21;
                    u12[tx] = a30; u13[tx] = a30 + a31; u14[tx] = a30 - a31; u15[tx] = -a31;
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

MULTIVERSION void haze_winograd_weights_gradient(const float *du, float *dw, long o, long c) {
    for (long r = 0; r < o; r++) {
        for (long s = 0; s < c; s++) {
            float d[4][4];
            for (int xi = 0; xi < 16; xi++) d[xi / 4][xi % 4] = du[(xi * o + r) * c + s];
            float t[3][4];  // Gᵀ ∂U
            for (int j = 0; j < 4; j++) {
                t[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
                t[1][j] = 0.5f * (d[1][j] - d[2][j]);
                t[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
            }
            float *k = dw + (r * c + s) * 9;
            for (int i = 0; i < 3; i++) {  // (Gᵀ ∂U) G
                k[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
                k[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
                k[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
            }
        }
    }
}
