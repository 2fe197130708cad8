// exp(x) = 2^n · p(r), n = round(x / ln 2), r = x − n ln 2 (Cody–Waite split of ln 2), and p
// the degree-7 Taylor polynomial of e^r on |r| ≤ ln2/2 (relative error < 1e-8, below float
// rounding). The two steps as expressions of a float or of a vector of floats, shared by the
// scalar exp_approx (below: haze_kernels.c, haze_linear_attention.c) and the vector exp_lanes
// (haze_attention.c).
#ifndef HAZE_EXP_H
#define HAZE_EXP_H

#include <math.h>
#include <string.h>

#define HAZE_EXP_REDUCED(x, n) (((x) - (n) * 0.693145751953125f) - (n) * 1.428606765330187e-6f)
#define HAZE_EXP_POLYNOMIAL(r)                                                                                 \
    (((((((1.0f / 5040 * (r) + 1.0f / 720) * (r) + 1.0f / 120) * (r) + 1.0f / 24) * (r) + 1.0f / 6) * (r) + 0.5f) * \
       (r) + 1.0f) * (r) + 1.0f)

// Always inlined, so that it is compiled for the instruction set of each multiversioned caller.
static inline __attribute__((always_inline)) float exp_approx(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.7f);
    const float n = rintf(x * 1.44269504088896341f);
    const float p = HAZE_EXP_POLYNOMIAL(HAZE_EXP_REDUCED(x, n));
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
