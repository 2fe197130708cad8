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

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include <stdlib.h>

MULTIVERSION void haze_winograd_weights(const float *w, float *u, long o, long c, int flip) {
    const long rows = flip ? c : o, cols = flip ? o : c;
    for (long r = 0; r < rows; r++) {
        for (long s = 0; s < cols; s++) {
            // g: the 3×3 kernel from input channel s to output channel r of this convolution.
            float g[3][3];
            const float *k = flip ? w + (s * c + r) * 9 : w + (r * c + s) * 9;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = flip ? k[(2 - i) * 3 + (2 - j)] : k[i * 3 + j];
            float t[4][3];  // G g
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
                const float v[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) u[((i * 4 + j) * rows + r) * cols + s] = v[j];
            }
        }
    }
}

MULTIVERSION void haze_winograd_input(const float *x, float *v, long first_image, long images, long c, long h, long w,
                                      long tiles_h, long tiles_w) {
    const long tiles = images * tiles_h * tiles_w, stride = c * tiles;  // stride: between the 16 positions ξ
    // One image plane with its zero border: padded[r][q] = x[r − 1][q − 1], rows 0…2·tiles_h+1.
    const long ph = 2 * tiles_h + 2, pw = 2 * tiles_w + 2;
    float *padded = malloc(sizeof(float) * ph * pw);
    for (long q = 0; q < pw; q++) padded[q] = 0;
    for (long r = h + 1; r < ph; r++)
        for (long q = 0; q < pw; q++) padded[r * pw + q] = 0;
    for (long b = 0; b < images; b++) {
        for (long ci = 0; ci < c; ci++) {
            const float *plane = x + ((first_image + b) * c + ci) * h * w;
            for (long y = 0; y < h; y++) {
                float *row = padded + (y + 1) * pw;
                row[0] = 0;
                for (long q = 0; q < w; q++) row[q + 1] = plane[y * w + q];
                for (long q = w + 1; q < pw; q++) row[q] = 0;
            }
            float *dst = v + ci * tiles + b * tiles_h * tiles_w;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                const float *d0 = padded + 2 * ty * pw, *d1 = d0 + pw, *d2 = d1 + pw, *d3 = d2 + pw;
                for (long tx = 0; tx < tiles_w; tx++) {
                    const long q = 2 * tx;
                    float t[4][4];  // Bᵀ d, column by column
                    for (int j = 0; j < 4; j++) {
                        t[0][j] = d0[q + j] - d2[q + j];
                        t[1][j] = d1[q + j] + d2[q + j];
                        t[2][j] = d2[q + j] - d1[q + j];
                        t[3][j] = d1[q + j] - d3[q + j];
                    }
                    for (int i = 0; i < 4; i++) {  // (Bᵀ d) B
                        dst[(i * 4 + 0) * stride + tx] = t[i][0] - t[i][2];
                        dst[(i * 4 + 1) * stride + tx] = t[i][1] + t[i][2];
                        dst[(i * 4 + 2) * stride + tx] = t[i][2] - t[i][1];
                        dst[(i * 4 + 3) * stride + tx] = t[i][1] - t[i][3];
                    }
                }
            }
        }
    }
    free(padded);
}

MULTIVERSION void haze_winograd_output(const float *m, float *y, const float *bias, long first_image, long images,
                                       long o, long h, long w, long tiles_h, long tiles_w) {
    const long tiles = images * tiles_h * tiles_w, stride = o * tiles;
    float rows[2][2 * tiles_w];
    for (long b = 0; b < images; b++) {
        for (long oc = 0; oc < o; oc++) {
            float *plane = y + ((first_image + b) * o + oc) * h * w;
            const float shift = bias ? bias[oc] : 0;
            for (long ty = 0; ty < tiles_h; ty++) {
                const float *src = m + oc * tiles + (b * tiles_h + ty) * tiles_w;
                for (long tx = 0; tx < tiles_w; tx++) {
                    float s[4][2];  // M A, row by row
                    for (int r = 0; r < 4; r++) {
                        const float m0 = src[(r * 4 + 0) * stride + tx], m1 = src[(r * 4 + 1) * stride + tx];
                        const float m2 = src[(r * 4 + 2) * stride + tx], m3 = src[(r * 4 + 3) * stride + tx];
                        s[r][0] = m0 + m1 + m2;
                        s[r][1] = m1 - m2 - m3;
                    }
                    for (int j = 0; j < 2; j++) {  // Aᵀ (M A)
                        rows[0][2 * tx + j] = s[0][j] + s[1][j] + s[2][j] + shift;
                        rows[1][2 * tx + j] = s[1][j] - s[2][j] - s[3][j] + shift;
                    }
                }
                for (int r = 0; r < 2 && 2 * ty + r < h; r++)
                    for (long q = 0; q < w; q++) plane[(2 * ty + r) * w + q] = rows[r][q];
            }
        }
    }
}
