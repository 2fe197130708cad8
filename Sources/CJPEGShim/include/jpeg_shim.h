// JPEG decoding through libjpeg(-turbo) (Debian libjpeg62-turbo-dev), wrapped in C because
// libjpeg reports errors through a callback that must not return: its default one calls
// exit(). This shim installs one that longjmps back, which Swift cannot do.
#ifndef HAZE_JPEG_SHIM_H
#define HAZE_JPEG_SHIM_H

/// Decodes the JPEG in `data[0..<size]` to 8-bit interleaved pixels: 1 channel for grayscale
/// JPEGs, 3 (RGB) for colour ones. On success returns 0 and stores a malloc'ed buffer of
/// width·height·channels bytes in `*pixels` (the caller frees it with `free`). On failure
/// leaves `*pixels` NULL, writes a NUL-terminated message into `error[0..<error_size]` and
/// returns 1 when libjpeg failed (damaged data, or a variant libjpeg cannot decode; the
/// message is libjpeg's), 2 when Haze refuses a valid image (CMYK), or 3 when the header
/// declares more than `max_pixels` pixels (refused before decoding; `*width`, `*height` set).
int haze_decode_jpeg(const unsigned char *data, unsigned long size, long max_pixels, unsigned char **pixels,
                     int *width, int *height, int *channels, char *error, int error_size);

#endif
