// The TensorFlow notebook's linear attention (TFArticleLinearAttention), its core fused per head:
// from the NCHW output of the q/k/v convolution to the NCHW input of the output convolution,
// with no whole-tensor permutes. See include/haze_kernels.h for the layout.
//
// TensorFlow holds q, k, v as NHWC [N, P] per image and reshapes that memory to [heads, d, N]:
// head h's [d, N] matrix is the NHWC rows of positions [h·N/heads, (h+1)·N/heads), all P channels.
// So each head gathers its q̃, k̃, ṽ by transposing a [P, N/heads] block of the NCHW planes (which
// gives exactly that NHWC memory), and scatters its output [d, N] back the same way. Per head:
//   q = softmax over i (each column j) of q̃ [d, N],  k = softmax over j (each row i) of k̃
//   c = α · k vᵀ [d, d] (α = d^(−½), applied to c instead of q),  o = cᵀ q [d, N]
// and the backward, with the forward recomputed from qkv:
//   ∂q = c ∂o,  ∂(k vᵀ) = α · q ∂oᵀ,  ∂k = ∂(k vᵀ) v,  ∂v = ∂(k vᵀ)ᵀ k
//   ∂k̃ = k ⊙ (∂k − Σ_j ∂k ⊙ k),  ∂q̃ = q ⊙ (∂q − Σ_i ∂q ⊙ q)
// Every head writes only its own positions of y (or ∂qkv), so heads run in parallel.

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include "haze_exp.h"
#include "haze_avx512.h"
#include <math.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))  // into the multiversioned kernels

// Each entry point below runs with subnormal floats (below 2⁻¹²⁶) flushed to zero, as results and
// as inputs (MXCSR's FTZ and DAZ, restored on return; TensorFlow runs its kernels so too). k's
// softmax over thousands of positions gives such values wherever a key is far below its row's
// largest, and on Intel cores each multiply-add that meets one takes a microcode assist: sampling
// a 64×64 tf-article model spent 27 % of its time in the head's d × d products (`perf`), against
// 3.5 % for random inputs. A term below 2⁻¹²⁶ in these sums changes nothing at float precision.
#if defined(__x86_64__)
#include <xmmintrin.h>
INLINE unsigned subnormals_flushed(void) {
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040);  // FTZ (bit 15), DAZ (bit 6)
    return saved;
}
INLINE void subnormals_restored(unsigned saved) { _mm_setcsr(saved); }
#else
INLINE unsigned subnormals_flushed(void) { return 0; }
INLINE void subnormals_restored(unsigned saved) { (void)saved; }
#endif

// Columns per block of the d × d products: two [d, JB] blocks stay in L1/L2 while all d² pairs use them.
enum { JB = 256 };

// Softmax of each column of m [d, n] (over the d rows); colmax, colsum: n floats of scratch.
INLINE void softmax_columns(float *m, long d, long n, float *colmax, float *colsum) {
    memcpy(colmax, m, (size_t)n * sizeof(float));
    for (long i = 1; i < d; i++)
        for (long j = 0; j < n; j++) colmax[j] = fmaxf(colmax[j], m[i * n + j]);
    memset(colsum, 0, (size_t)n * sizeof(float));
    for (long i = 0; i < d; i++)
        for (long j = 0; j < n; j++) {
            const float e = exp_approx(m[i * n + j] - colmax[j]);
            m[i * n + j] = e;
            colsum[j] += e;
        }
    for (long j = 0; j < n; j++) colsum[j] = 1.0f / colsum[j];
    for (long i = 0; i < d; i++)
        for (long j = 0; j < n; j++) m[i * n + j] *= colsum[j];
}

// Softmax of each row of m [d, n].
INLINE void softmax_rows(float *m, long d, long n) {
    for (long i = 0; i < d; i++) {
        float *row = m + i * n;
        float mx = row[0];
        for (long j = 0; j < n; j++) mx = fmaxf(mx, row[j]);  // from 0: n = 4096 leaves no scalar tail
        float sum = 0;
        {
#pragma clang fp reassociate(on)
            for (long j = 0; j < n; j++) {
                row[j] = exp_approx(row[j] - mx);
                sum += row[j];
            }
        }
        const float inv = 1.0f / sum;
        for (long j = 0; j < n; j++) row[j] *= inv;
    }
}

// Σ_j a[j] b[j].
INLINE float dot(const float *a, const float *b, long n) {
#pragma clang fp reassociate(on)
    float s = 0;
    for (long j = 0; j < n; j++) s += a[j] * b[j];
    return s;
}

#ifdef HAZE_AVX512
// The head's rows are N floats apart, 16 KB at 64 × 64: read in place, the d rows of a column block
// fall into the same few L1 sets and come from L2 on every pass. So both kernels first copy a block
// of columns of every row they read into a contiguous panel (at most PANEL floats) and work there.
enum { PANEL = 4096 };

// m[0..d, j0..j0 + width) → panel [d, width].
static inline AVX512 void copy_columns(const float *m, long n, long d, long j0, long width, float *panel) {
    for (long s = 0; s < d; s++)
        for (long j = 0; j < width; j += 16) _mm512_storeu_ps(panel + s * width + j, _mm512_loadu_ps(m + s * n + j0 + j));
}

// combine_rows for n a multiple of 32, d of 8 and d ≤ 128: per panel of 32 columns, 8 output rows ×
// 32 columns accumulate over s in registers (two loads per 16 multiply-adds); the sums run over s
// in order, as the plain loop's do.
static AVX512 void combine_rows_avx512(const float *coef, long rs, long cs, const float *m, float *out, long d, long n) {
    float panel[PANEL] __attribute__((aligned(64)));
    for (long j0 = 0; j0 < n; j0 += 32) {
        copy_columns(m, n, d, j0, 32, panel);
        for (long r0 = 0; r0 < d; r0 += 8) {
            __m512 acc[8][2];
            for (int r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (long s = 0; s < d; s++) {
                const __m512 x0 = _mm512_load_ps(panel + s * 32), x1 = _mm512_load_ps(panel + s * 32 + 16);
                for (int r = 0; r < 8; r++) {
                    const __m512 a = _mm512_set1_ps(coef[s * cs + (r0 + r) * rs]);
                    acc[r][0] = _mm512_fmadd_ps(a, x0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(a, x1, acc[r][1]);
                }
            }
            for (int r = 0; r < 8; r++) {
                _mm512_storeu_ps(out + (r0 + r) * n + j0, acc[r][0]);
                _mm512_storeu_ps(out + (r0 + r) * n + j0 + 16, acc[r][1]);
            }
        }
    }
}

// row_products for n a multiple of 64, d of 4 and d ≤ 64: per panel of `width` columns of a and of
// b (256, 128 or 64, as many as divide n and fit), 4 × 4 (i, e) pairs keep 16 lane sums each in
// registers (8 loads per 16 multiply-adds), folded by haze_sum16 and added into c.
static AVX512 void row_products_avx512(const float *a, const float *b, float *c, long d, long n) {
    float panels[2 * PANEL] __attribute__((aligned(64)));
    float *pa = panels, *pb = panels + PANEL;
    long width = 256;
    while (width > 64 && (n % width != 0 || d * width > PANEL)) width /= 2;
    for (long j0 = 0; j0 < n; j0 += width) {
        copy_columns(a, n, d, j0, width, pa);
        copy_columns(b, n, d, j0, width, pb);
        for (long i0 = 0; i0 < d; i0 += 4)
            for (long e0 = 0; e0 < d; e0 += 4) {
                __m512 acc[16];
                for (int x = 0; x < 16; x++) acc[x] = _mm512_setzero_ps();
                for (long j = 0; j < width; j += 16) {
                    __m512 ra[4], rb[4];
                    for (int i = 0; i < 4; i++) ra[i] = _mm512_load_ps(pa + (i0 + i) * width + j);
                    for (int e = 0; e < 4; e++) rb[e] = _mm512_load_ps(pb + (e0 + e) * width + j);
                    for (int i = 0; i < 4; i++)
                        for (int e = 0; e < 4; e++) acc[4 * i + e] = _mm512_fmadd_ps(ra[i], rb[e], acc[4 * i + e]);
                }
                const __m512 sums = haze_sum16(acc);  // lane 4i + e: row i0 + i, column e0 + e
                float *row = c + i0 * d + e0;
                _mm_storeu_ps(row, _mm_add_ps(_mm_loadu_ps(row), _mm512_extractf32x4_ps(sums, 0)));
                _mm_storeu_ps(row + d, _mm_add_ps(_mm_loadu_ps(row + d), _mm512_extractf32x4_ps(sums, 1)));
                _mm_storeu_ps(row + 2 * d, _mm_add_ps(_mm_loadu_ps(row + 2 * d), _mm512_extractf32x4_ps(sums, 2)));
                _mm_storeu_ps(row + 3 * d, _mm_add_ps(_mm_loadu_ps(row + 3 * d), _mm512_extractf32x4_ps(sums, 3)));
            }
    }
}
#endif

// out [r, n] = Σ_s coef[s·cs + r·rs] · m[s] (rows of m [d, n]), for r < d: a [d, d] matrix (given
// by strides) times m, by blocks of JB columns.
INLINE void combine_rows(const float *coef, long rs, long cs, const float *m, float *out, long d, long n) {
#ifdef HAZE_AVX512
    if (n % 32 == 0 && d % 8 == 0 && d * 32 <= PANEL && has_avx512()) return combine_rows_avx512(coef, rs, cs, m, out, d, n);
#endif
    for (long j0 = 0; j0 < n; j0 += JB) {
        const long len = n - j0 < JB ? n - j0 : JB;
        for (long r = 0; r < d; r++) {
            float *dst = out + r * n + j0;
            for (long j = 0; j < len; j++) dst[j] = 0;
            for (long s = 0; s < d; s++) {
                const float a = coef[s * cs + r * rs];
                const float *src = m + s * n + j0;
                for (long j = 0; j < len; j++) dst[j] += a * src[j];
            }
        }
    }
}

// c[i·d + e] = α Σ_j a[i][j] b[e][j] for a, b [d, n], by blocks of JB columns.
INLINE void row_products(const float *a, const float *b, float *c, long d, long n, float alpha) {
    for (long x = 0; x < d * d; x++) c[x] = 0;
#ifdef HAZE_AVX512
    if (n % 64 == 0 && d % 4 == 0 && d * 64 <= PANEL && has_avx512()) {
        row_products_avx512(a, b, c, d, n);
        for (long x = 0; x < d * d; x++) c[x] *= alpha;
        return;
    }
#endif
    for (long j0 = 0; j0 < n; j0 += JB) {
        const long len = n - j0 < JB ? n - j0 : JB;
        for (long i = 0; i < d; i++)
            for (long e = 0; e < d; e++) c[i * d + e] += dot(a + i * n + j0, b + e * n + j0, len);
    }
    for (long x = 0; x < d * d; x++) c[x] *= alpha;
}

// The head's q, k, v (softmaxed) and α·k vᵀ from its blocks of q̃, k̃, ṽ: [P, N/heads] each, rows
// ld floats apart, k̃ at block + P·ld and ṽ at block + 2·P·ld; with block NULL, from q, k, v as
// haze_linear_attention_project left them. work: 3·d·n + 2·n floats after c [d·d].
INLINE void head_forward(const float *block, long ld, long p, long n, long heads, long d, float alpha,
                         float *q, float *k, float *v, float *c, float *scratch) {
    const long chunk = n / heads;
    if (block) {
        haze_transpose_tiled(block, ld, q, p, p, chunk);
        haze_transpose_tiled(block + p * ld, ld, k, p, p, chunk);
        haze_transpose_tiled(block + 2 * p * ld, ld, v, p, p, chunk);
    }
    softmax_columns(q, d, n, scratch, scratch + n);
    softmax_rows(k, d, n);
    row_products(k, v, c, d, n, alpha);
}

// One head's output o = cᵀ q, scattered into image b's positions of y.
INLINE void head_output(const float *block, long ld, float *y, long p, long n, long heads, long d, float alpha,
                        long b, long h, float *work) {
    float *c = work, *q = c + 2 * d * d, *k = q + d * n, *v = k + d * n, *o = v + d * n, *scratch = o + d * n;
    const long chunk = n / heads;
    head_forward(block, ld, p, n, heads, d, alpha, q, k, v, c, scratch);
    combine_rows(c, 1, d, q, o, d, n);  // o[e] = Σ_i c[i][e] q[i]
    haze_transpose_tiled(o, p, y + b * p * n + h * chunk, n, chunk, p);
}

// The head's backward from its saved q, k (softmaxed), v, c = α k vᵀ and ∂o [d, N]: ∂q̃, ∂k̃, ∂ṽ
// (the gradients before the softmaxes), with dc [d, d] and colsum [n] of scratch.
INLINE void head_backward(const float *q, const float *k, const float *v, const float *c, const float *dout, float *dq,
                          float *dk, float *dv, long d, long n, float alpha, float *dc, float *colsum) {
    combine_rows(c, d, 1, dout, dq, d, n);  // ∂q[i] = Σ_e c[i][e] ∂o[e]
    row_products(q, dout, dc, d, n, alpha);  // ∂(k vᵀ)
    combine_rows(dc, d, 1, v, dk, d, n);  // ∂k[i] = Σ_e ∂c[i][e] v[e]
    combine_rows(dc, 1, d, k, dv, d, n);  // ∂v[e] = Σ_i ∂c[i][e] k[i]
    // Through the softmaxes: rows of k, columns of q.
    for (long i = 0; i < d; i++) {
        const float s = dot(dk + i * n, k + i * n, n);
        for (long j = 0; j < n; j++) dk[i * n + j] = k[i * n + j] * (dk[i * n + j] - s);
    }
    memset(colsum, 0, (size_t)n * sizeof(float));
    for (long i = 0; i < d; i++)
        for (long j = 0; j < n; j++) colsum[j] += dq[i * n + j] * q[i * n + j];
    for (long i = 0; i < d; i++)
        for (long j = 0; j < n; j++) dq[i * n + j] = q[i * n + j] * (dq[i * n + j] - colsum[j]);
}

long haze_linear_attention_work_size(long n, long d, int backward) {
    return d * d * 2 + (backward ? 7 : 4) * d * n + 2 * n;
}

MULTIVERSION void haze_linear_attention_forward(const float *qkv, float *y, long p, long n, long heads, long d, float alpha,
                                                long first, long count, float *work) {
    const unsigned saved = subnormals_flushed();
    for (long task = first; task < first + count; task++) {
        const long b = task / heads, h = task % heads;
        head_output(qkv + b * 3 * p * n + h * (n / heads), n, y, p, n, heads, d, alpha, b, h, work);
    }
    subnormals_restored(saved);
}

void haze_linear_attention_project(const float *x_packed, const float *wt, long c, long p, long n, long heads,
                                   float *qkv, long part_stride) {
    // Head h's [d, N] matrix is the memory of its positions' NHWC rows [N/heads, P]: the products
    // land in that layout, q̃, k̃, ṽ part_stride floats apart.
    for (long part = 0; part < 3; part++)
        haze_gemm_packed(x_packed, wt + part * p, 3 * p, qkv + part * part_stride, p, n / heads, p, c, 0);
}

// z = W_out · oᵀ + b_out [C, N/heads] for the head's positions (o [N/heads, P], their NHWC rows; ot:
// P · N/heads floats for its transpose), then y = x + LayerNorm_C(z) there, with their mean and
// 1/std. x, z, y point at the head's first position of planes of N floats; z may be y.
INLINE void output_and_norm(const float *o, float *ot, const float *x, float *z, float *y, const float *out_packed,
                            const float *out_bias, const float *gamma, const float *beta, float eps, long channels,
                            long p, long n, long chunk, float *mean, float *rstd) {
    haze_transpose_tiled(o, p, ot, chunk, chunk, p);
    haze_gemm_packed(out_packed, ot, chunk, z, n, channels, chunk, p, 0);
    for (long ch = 0; ch < channels; ch++)
        for (long j = 0; j < chunk; j++) z[ch * n + j] += out_bias[ch];
    haze_channel_norm_forward(z, x, y, gamma, beta, channels, n, 0, chunk, eps, mean, rstd);
}

MULTIVERSION void haze_linear_attention_block_forward(const float *x, float *y, const float *out_packed, const float *out_bias,
                                                     const float *gamma, const float *beta, float eps, long channels, long p,
                                                     long n, long heads, long d, float alpha, long b, long h, float *work) {
    const unsigned saved = subnormals_flushed();
    float *c = work, *q = c + 2 * d * d, *k = q + d * n, *v = k + d * n, *o = v + d * n, *scratch = o + d * n;
    const long chunk = n / heads, offset = b * channels * n + h * chunk;
    head_forward(NULL, 0, p, n, heads, d, alpha, q, k, v, c, scratch);
    combine_rows(c, 1, d, q, o, d, n);  // o[e] = Σ_i c[i][e] q[i]: the positions' NHWC rows [N/heads, P]
    // z, the norm and the residual in place in y's planes (oᵀ where q was; mean, 1/std in scratch).
    output_and_norm(o, q, x + offset, y + offset, y + offset, out_packed, out_bias, gamma, beta, eps, channels, p, n, chunk,
                    scratch, scratch + chunk);
    subnormals_restored(saved);
}

MULTIVERSION void haze_linear_attention_block_train_forward(const float *x, float *y, float *qkv, float *c, float *o, float *z,
                                                           float *mean, float *rstd, const float *out_packed,
                                                           const float *out_bias, const float *gamma, const float *beta,
                                                           float eps, long channels, long p, long n, long heads, long d,
                                                           float alpha, long h, float *work) {
    const unsigned saved = subnormals_flushed();
    const long chunk = n / heads;
    float *q = qkv + h * chunk * p, *k = q + n * p, *v = k + n * p, *oh = o + h * chunk * p;
    head_forward(NULL, 0, p, n, heads, d, alpha, q, k, v, c, work);
    combine_rows(c, 1, d, q, oh, d, n);
    const long first = h * chunk;
    output_and_norm(oh, work, x + first, z + first, y + first, out_packed, out_bias, gamma, beta, eps, channels, p, n, chunk,
                    mean + first, rstd + first);
    subnormals_restored(saved);
}

MULTIVERSION void haze_linear_attention_head_backward(const float *q, const float *k, const float *v, const float *c,
                                                      const float *dout, float *dq, float *dk, float *dv, long d, long n,
                                                      float alpha, float *scratch) {
    const unsigned saved = subnormals_flushed();
    head_backward(q, k, v, c, dout, dq, dk, dv, d, n, alpha, scratch, scratch + d * d);
    subnormals_restored(saved);
}

MULTIVERSION void haze_linear_attention_backward(const float *qkv, const float *dy, float *dqkv, long p, long n, long heads,
                                                 long d, float alpha, long first, long count, float *work) {
    const unsigned saved = subnormals_flushed();
    float *c = work, *q = c + 2 * d * d, *k = q + d * n, *v = k + d * n, *dout = v + d * n;
    float *dq = dout + d * n, *dk = dq + d * n, *dv = dk + d * n, *scratch = dv + d * n;
    const long chunk = n / heads;
    for (long task = first; task < first + count; task++) {
        const long b = task / heads, h = task % heads;
        head_forward(qkv + b * 3 * p * n + h * chunk, n, p, n, heads, d, alpha, q, k, v, c, scratch);
        haze_transpose_tiled(dy + b * p * n + h * chunk, n, dout, p, p, chunk);
        head_backward(q, k, v, c, dout, dq, dk, dv, d, n, alpha, c + d * d, scratch);
        float *image = dqkv + b * 3 * p * n + h * chunk;
        haze_transpose_tiled(dq, p, image, n, chunk, p);
        haze_transpose_tiled(dk, p, image + p * n, n, chunk, p);
        haze_transpose_tiled(dv, p, image + 2 * p * n, n, chunk, p);
    }
    subnormals_restored(saved);
}
