/* Drives lz4 (block, HC, frame, streaming) with known arguments for the runtime-truth checks. */
#include <stdio.h>
#include <string.h>
#include <lz4.h>
#include <lz4hc.h>
#include <lz4frame.h>

static char input[65536], packed[80000], unpacked[65536];

int main(void)
{
    for (unsigned i = 0; i < sizeof(input); i++)
        input[i] = (char)((i * 7 + i / 13) % 61);
    int n = LZ4_compress_default(input, packed, sizeof(input), sizeof(packed));
    LZ4_decompress_safe(packed, unpacked, n, sizeof(unpacked));
    n = LZ4_compress_fast(input, packed, 30000, sizeof(packed), 3);
    LZ4_decompress_safe_partial(packed, unpacked, n, 1000, sizeof(unpacked));
    for (int level = 1; level <= 12; level += 5) {
        n = LZ4_compress_HC(input, packed, sizeof(input), sizeof(packed), level);
        LZ4_decompress_safe(packed, unpacked, n, sizeof(unpacked));
    }
    LZ4_stream_t *stream = LZ4_createStream();
    LZ4_loadDict(stream, input, 4096);
    LZ4_compress_fast_continue(stream, input + 4096, packed, 8192, sizeof(packed), 2);
    LZ4_freeStream(stream);
    LZ4_streamHC_t *hc = LZ4_createStreamHC();
    LZ4_resetStreamHC_fast(hc, 9);
    LZ4_compress_HC_continue(hc, input, packed, 16384, sizeof(packed));
    LZ4_freeStreamHC(hc);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.compressionLevel = 4;
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    size_t framed = LZ4F_compressFrame(packed, sizeof(packed), input, sizeof(input), &prefs);
    LZ4F_dctx *dctx;
    LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
    size_t out_len = sizeof(unpacked), in_len = framed;
    LZ4F_decompress(dctx, unpacked, &out_len, packed, &in_len, NULL);
    LZ4F_freeDecompressionContext(dctx);
    printf("%d %zu %d\n", n, framed, LZ4_compressBound(12345));
    return 0;
}
