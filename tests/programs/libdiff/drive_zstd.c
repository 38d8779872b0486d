/* Drives libzstd with known arguments for the resolver's runtime-truth checks
   (tests/helpers/libtruth.py): the public entry points a few times, and frames of
   the legacy formats are not made here (only the library's own format). */
#include <stdio.h>
#include <string.h>
#include <zstd.h>

static unsigned char input[65536], packed[80000], unpacked[65536];

int main(void)
{
    for (unsigned i = 0; i < sizeof(input); i++)
        input[i] = (unsigned char)((i * 7 + i / 13) % 61);
    for (int level = 1; level <= 9; level += 4) {
        size_t n = ZSTD_compress(packed, sizeof(packed), input, sizeof(input), level);
        ZSTD_getFrameContentSize(packed, n);
        ZSTD_findFrameCompressedSize(packed, n);
        ZSTD_decompress(unpacked, sizeof(unpacked), packed, n);
        ZSTD_isError(n);
    }
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 5);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(cctx, packed, sizeof(packed), input, 40000);
    ZSTD_compressCCtx(cctx, packed, sizeof(packed), input, 30000, 3);
    ZSTD_freeCCtx(cctx);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_decompressDCtx(dctx, unpacked, sizeof(unpacked), packed, n);
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    ZSTD_freeDCtx(dctx);
    ZSTD_compressBound(12345);
    ZSTD_getErrorName(ZSTD_isError(n));
    printf("%zu\n", n);
    return 0;
}
