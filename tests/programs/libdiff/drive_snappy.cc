// Drives snappy with known arguments for the resolver's runtime-truth checks
// (tests/helpers/libtruth.py): every public entry point a few times.
#include <snappy.h>
#include <snappy-c.h>
#include <cstdio>
#include <string>

int main()
{
    std::string input;
    for (unsigned i = 0; i < 65536; i++)
        input.push_back(static_cast<char>((i * 7 + i / 13) % 61));
    std::string packed, unpacked;
    for (int round = 0; round < 3; round++) {
        size_t n = snappy::Compress(input.data(), input.size() - round * 1000, &packed);
        snappy::IsValidCompressedBuffer(packed.data(), n);
        size_t length = 0;
        snappy::GetUncompressedLength(packed.data(), n, &length);
        snappy::Uncompress(packed.data(), n, &unpacked);
        snappy::MaxCompressedLength(input.size() - round);
    }
    char raw[80000], back[65536];
    size_t raw_length = 0;
    snappy::RawCompress(input.data(), 30000, raw, &raw_length);
    snappy::RawUncompress(raw, raw_length, back);
    size_t c_length = sizeof(raw);
    snappy_compress(input.data(), 20000, raw, &c_length);
    size_t c_back = sizeof(back);
    snappy_uncompress(raw, c_length, back, &c_back);
    snappy_validate_compressed_buffer(raw, c_length);
    std::printf("%zu %zu\n", unpacked.size(), c_back);
    return 0;
}
