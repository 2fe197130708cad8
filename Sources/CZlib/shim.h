// zlib (Debian zlib1g-dev; part of the macOS SDK): deflate for PNG, crc32.
#include <zlib.h>
