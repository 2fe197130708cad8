// Scaled dot-product attention for heads with few features (U-Net attention: 49 tokens, heads of
// width 8), forward: o = softmax(α q kᵀ) v for one head, in one pass over blocks of 16 queries.
//
// A block's 16 queries are the 16 vector lanes, so every step is a vertical operation:
//   scores   sᵀ[j] = Σ_e k[j][e] · α qᵀ[e]           (S vectors, one per key j)
//   softmax  m = max_j sᵀ[j], pᵀ[j] = exp(sᵀ[j] − m), Σ = Σ_j pᵀ[j]   (no horizontal reductions)
//   output   oᵀ[e] = (Σ_j v[j][e] · pᵀ[j]) / Σ
// The two products and the softmax never leave the L1 cache, and no K or P transpose, masked
// row tails or separate softmax pass is needed (as a GEMM + softmax + GEMM has at D = 8).
// Two layouts: rows (q [L, D], as Tensor.scaledDotProductAttention holds heads) and channels
// first (q [D, L], as a U-Net attention block holds them; then the queries of a block, the
// outputs and Pᵀ move as whole vectors). Also the softmax step of the backward on Pᵀ.

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include "haze_exp.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// The vector helpers below are always inlined, so the ABI of passing a 64-byte vector to a
// function compiled without AVX-512 (the baseline clone) never applies.
#pragma clang diagnostic ignored "-Wpsabi"

enum { LANES = 16 };
typedef haze_x16 lanes_t;  // one zmm register with AVX-512; exp_x16 (haze_exp.h) takes it

// Lanes 0..<count of a vector from or to consecutive floats (one vector move for a full block).
static inline __attribute__((always_inline)) lanes_t load_lanes(const float *src, long count) {
    lanes_t v = 0;
    if (count == LANES) memcpy(&v, src, sizeof v);
    else
        for (long lane = 0; lane < count; lane++) v[lane] = src[lane];
    return v;
}

static inline __attribute__((always_inline)) void store_lanes(float *dst, lanes_t v, long count) {
    if (count == LANES) memcpy(dst, &v, sizeof v);
    else
        for (long lane = 0; lane < count; lane++) dst[lane] = v[lane];
}

// One block of `count` ≤ 16 queries starting at row `first`. D, DV and the layout are compile-time
// constants in the specialised calls below, so that the accumulators of qᵀ and oᵀ stay in
// registers. Layouts: rows (q [L, D], k [S, D], v [S, DV], o [L, DV]) or, with `CF` (channels
// first), their transposes (q [D, L], k [D, S], v [DV, S], o [DV, L]). st: S vectors of scratch.
static inline __attribute__((always_inline)) void attention_block(const float *restrict q, const float *restrict k,
                                                                  const float *restrict v, float *restrict o,
                                                                  float *restrict pt, lanes_t *restrict st, long l,
                                                                  long s, long first, long count, float alpha,
                                                                  const long D, const long DV, const int CF) {
#define Q(i, e) q[CF ? (e) * l + (i) : (i) * D + (e)]
#define K(j, e) k[CF ? (e) * s + (j) : (j) * D + (e)]
#define V(j, e) v[CF ? (e) * s + (j) : (j) * DV + (e)]
#define O(i, e) o[CF ? (e) * l + (i) : (i) * DV + (e)]
    lanes_t qt[D];  // α qᵀ, zero in the lanes past `count`
    for (long e = 0; e < D; e++) {
        if (CF) {
            qt[e] = alpha * load_lanes(&Q(first, e), count);
        } else {
            qt[e] = 0;
            for (long lane = 0; lane < count; lane++) qt[e][lane] = alpha * Q(first + lane, e);
        }
    }
    lanes_t m = -INFINITY;
    for (long j = 0; j < s; j++) {
        lanes_t acc = 0;
        for (long e = 0; e < D; e++) acc += K(j, e) * qt[e];
        st[j] = acc;
        m = acc > m ? acc : m;
    }
    lanes_t sum = 0;
    for (long j = 0; j < s; j++) {
        const lanes_t p = exp_x16(st[j] - m);
        st[j] = p;
        sum += p;
    }
    const lanes_t inverse = 1.0f / sum;
    lanes_t ot[DV];
    for (long e = 0; e < DV; e++) ot[e] = 0;
    for (long j = 0; j < s; j++)
        for (long e = 0; e < DV; e++) ot[e] += V(j, e) * st[j];
    for (long e = 0; e < DV; e++) ot[e] *= inverse;
    for (long e = 0; e < DV; e++) {
        if (CF) store_lanes(&O(first, e), ot[e], count);
        else
            for (long lane = 0; lane < count; lane++) O(first + lane, e) = ot[e][lane];
    }
    if (pt)
        for (long j = 0; j < s; j++) store_lanes(pt + j * l + first, st[j] * inverse, count);
#undef Q
#undef K
#undef V
#undef O
}

static inline __attribute__((always_inline)) void attention_head(const float *q, const float *k, const float *v, float *o,
                                                                 float *pt, float *work, long l, long s, long d, long dv,
                                                                 float alpha, const int CF) {
    lanes_t *st = (lanes_t *)(((uintptr_t)work + sizeof(lanes_t) - 1) & ~(uintptr_t)(sizeof(lanes_t) - 1));
    for (long first = 0; first < l; first += LANES) {
        const long count = l - first < LANES ? l - first : LANES;
        if (d == 8 && dv == 8) attention_block(q, k, v, o, pt, st, l, s, first, count, alpha, 8, 8, CF);
        else if (d == 16 && dv == 16) attention_block(q, k, v, o, pt, st, l, s, first, count, alpha, 16, 16, CF);
        else if (d == 32 && dv == 32) attention_block(q, k, v, o, pt, st, l, s, first, count, alpha, 32, 32, CF);
        else attention_block(q, k, v, o, pt, st, l, s, first, count, alpha, d, dv, CF);
    }
}

MULTIVERSION void haze_attention_head(const float *q, const float *k, const float *v, float *o, float *pt, float *work,
                                      long l, long s, long d, long dv, float alpha, int channels_first) {
    if (channels_first) attention_head(q, k, v, o, pt, work, l, s, d, dv, alpha, 1);
    else attention_head(q, k, v, o, pt, work, l, s, d, dv, alpha, 0);
}

MULTIVERSION void haze_softmax_columns_backward(const float *pt, float *dpt, float *dot, long s, long l) {
    for (long i = 0; i < l; i++) dot[i] = 0;
    for (long j = 0; j < s; j++)
        for (long i = 0; i < l; i++) dot[i] += pt[j * l + i] * dpt[j * l + i];
    for (long j = 0; j < s; j++)
        for (long i = 0; i < l; i++) dpt[j * l + i] = pt[j * l + i] * (dpt[j * l + i] - dot[i]);
}
