#include <zlib.h>

/* inflateInit2 is a macro; Swift cannot call macros. */
static inline int veil_inflate_init(z_stream *stream) {
    return inflateInit2(stream, 15 + 32);
}

static inline int veil_deflate_init_gzip(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
