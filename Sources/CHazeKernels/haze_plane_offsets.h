// Tables of pixel offsets for kernels that move whole small image planes in one vector loop
// (haze_kernels.c: im2col/col2im of narrow outputs; haze_winograd.c: Winograd on small images).
#ifndef HAZE_PLANE_OFFSETS_H
#define HAZE_PLANE_OFFSETS_H

// For a window of kh × kw pixels sliding with `stride` over an h × w plane padded by top/left,
// with ho × wo positions q: at[(i·kw + j)·pitch + q] = offset in the plane of pixel (i, j) of the
// window at q, or −1 where it falls in the padding (reads as zero). pitch ≥ ho·wo.
static inline void plane_offsets(int *at, long pitch, long h, long w, long kh, long kw, long stride, long top,
                                 long left, long ho, long wo) {
    for (long i = 0; i < kh; i++)
        for (long j = 0; j < kw; j++)
            for (long q = 0; q < ho * wo; q++) {
                const long y = (q / wo) * stride - top + i, x = (q % wo) * stride - left + j;
                at[(i * kw + j) * pitch + q] = y >= 0 && y < h && x >= 0 && x < w ? (int)(y * w + x) : -1;
            }
}

#endif
