// exp(x) = 2^n · p(r), n = round(x / ln 2), r = x − n ln 2 (Cody–Waite split of ln 2), and p
// the degree-7 Taylor polynomial of e^r on |r| ≤ ln2/2 (relative error < 1e-8, below float
// rounding). Branch-free, so loops calling it vectorise.
#ifndef HAZE_MATH_H
#define HAZE_MATH_H
#include <math.h>
#include <string.h>

static inline float exp_approx(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.7f);
    const float n = rintf(x * 1.44269504088896341f);
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
