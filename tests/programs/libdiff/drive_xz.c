/* Drives liblzma (easy/raw buffers, streams, checks, index) with known arguments for the runtime-truth checks. */
#include <stdio.h>
#include <string.h>
#include <lzma.h>

static uint8_t input[65536], packed[80000], unpacked[65536];

int main(void)
{
    for (unsigned i = 0; i < sizeof(input); i++)
        input[i] = (uint8_t)((i * 7 + i / 13) % 61);
    size_t out_pos = 0, in_pos = 0, un_pos = 0;
    lzma_easy_buffer_encode(1, LZMA_CHECK_CRC64, NULL, input, sizeof(input), packed, &out_pos, sizeof(packed));
    uint64_t memlimit = 1 << 26;
    lzma_stream_buffer_decode(&memlimit, 0, NULL, packed, &in_pos, out_pos, unpacked, &un_pos, sizeof(unpacked));
    lzma_stream strm = LZMA_STREAM_INIT;
    lzma_easy_encoder(&strm, 0, LZMA_CHECK_SHA256);
    strm.next_in = input; strm.avail_in = 20000; strm.next_out = packed; strm.avail_out = sizeof(packed);
    lzma_code(&strm, LZMA_RUN);
    lzma_code(&strm, LZMA_FINISH);
    size_t total = strm.total_out;
    lzma_end(&strm);
    lzma_stream dec = LZMA_STREAM_INIT;
    lzma_stream_decoder(&dec, UINT64_MAX, LZMA_CONCATENATED);
    dec.next_in = packed; dec.avail_in = total; dec.next_out = unpacked; dec.avail_out = sizeof(unpacked);
    lzma_code(&dec, LZMA_FINISH);
    lzma_end(&dec);
    lzma_options_lzma opt;
    lzma_lzma_preset(&opt, 2);
    lzma_filter filters[] = {{LZMA_FILTER_X86, NULL}, {LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    out_pos = 0;
    lzma_raw_buffer_encode(filters, NULL, input, 30000, packed, &out_pos, sizeof(packed));
    printf("%u %lu %lu %lu\n", lzma_crc32(input, 1000, 0), (unsigned long)lzma_crc64(input, 999, 7),
           (unsigned long)lzma_easy_encoder_memusage(3), (unsigned long)lzma_stream_buffer_bound(4321));
    return 0;
}
