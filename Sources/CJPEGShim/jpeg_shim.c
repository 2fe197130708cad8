// See include/jpeg_shim.h. libjpeg's error manager calls `error_exit` on any fatal error
// (corrupt data, unsupported features, out of memory); ours formats the message and longjmps
// back to haze_decode_jpeg, which cleans up and returns the message. The warning "Premature end
// of JPEG file" (a truncated file) is promoted to an error, so a truncated JPEG is reported
// instead of being returned half grey, as PIL does — unless every row has been decoded and only
// the end marker is missing; other warnings (recoverable corruption) are ignored, as PIL does.
#include "jpeg_shim.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

struct haze_error_manager {
    struct jpeg_error_mgr base;  // first, so a j_common_ptr's err can be cast to this
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int all_rows_read;  // after this, a missing end marker is harmless
};

static void haze_error_exit(j_common_ptr info) {
    struct haze_error_manager *manager = (struct haze_error_manager *)info->err;
    (*info->err->format_message)(info, manager->message);
    longjmp(manager->jump, 1);
}

static void haze_emit_message(j_common_ptr info, int level) {
    // level −1 is a warning; other levels are trace messages.
    struct haze_error_manager *manager = (struct haze_error_manager *)info->err;
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF && !manager->all_rows_read) haze_error_exit(info);
}

static void copy_message(char *error, int error_size, const char *message) {
    if (error == NULL || error_size <= 0) return;
    strncpy(error, message, (size_t)error_size - 1);
    error[error_size - 1] = '\0';
}

int haze_decode_jpeg(const unsigned char *data, unsigned long size, long max_pixels, unsigned char **pixels,
                     int *width, int *height, int *channels, char *error, int error_size) {
    struct jpeg_decompress_struct info;
    struct haze_error_manager manager;
    // volatile: modified between setjmp and longjmp, read after the jump.
    unsigned char *volatile buffer = NULL;

    *pixels = NULL;
    *width = *height = *channels = 0;
    if (size == 0) {
        copy_message(error, error_size, "empty file");
        return 1;
    }
    info.err = jpeg_std_error(&manager.base);
    manager.base.error_exit = haze_error_exit;
    manager.base.emit_message = haze_emit_message;
    manager.message[0] = '\0';
    manager.all_rows_read = 0;
    if (setjmp(manager.jump)) {
        jpeg_destroy_decompress(&info);
        free(buffer);
        copy_message(error, error_size, manager.message);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, size);
    jpeg_read_header(&info, TRUE);
    switch (info.jpeg_color_space) {
    case JCS_GRAYSCALE:
        info.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        jpeg_destroy_decompress(&info);
        copy_message(error, error_size, "CMYK colour is not supported (convert the image to RGB)");
        return 2;
    default:
        info.out_color_space = JCS_RGB;
        break;
    }
    // Check the size before jpeg_start_decompress, which for progressive files already
    // allocates memory in proportion to it.
    jpeg_calc_output_dimensions(&info);
    size_t stride = (size_t)info.output_width * (size_t)info.output_components;
    if ((long)info.output_width * (long)info.output_height > max_pixels) {  // before any pixel is decoded
        *width = (int)info.output_width;
        *height = (int)info.output_height;
        jpeg_destroy_decompress(&info);
        return 3;
    }
    jpeg_start_decompress(&info);
    buffer = malloc(stride * info.output_height);
    if (buffer == NULL) {
        jpeg_destroy_decompress(&info);
        copy_message(error, error_size, "out of memory");
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = buffer + stride * info.output_scanline;
        jpeg_read_scanlines(&info, &row, 1);
    }
    manager.all_rows_read = 1;
    jpeg_finish_decompress(&info);
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    *channels = info.output_components;
    *pixels = buffer;
    jpeg_destroy_decompress(&info);
    return 0;
}
