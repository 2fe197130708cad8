// libpng 1.6 (Debian libpng-dev; Homebrew libpng): PNG decoding through the simplified API
// (png_image_begin_read_from_memory / png_image_finish_read).
#include <png.h>
