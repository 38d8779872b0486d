/* Drives zlib with known arguments for the resolver's runtime-truth checks
   (tests/helpers/libtruth.py): every public entry point a few times. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static unsigned char input[65536], packed[70000], unpacked[65536];

int main(void)
{
    for (unsigned i = 0; i < sizeof(input); i++)
        input[i] = (unsigned char)((i * 7 + i / 13) % 61);
    for (int level = 0; level <= 9; level += 3) {
        uLongf packed_len = sizeof(packed), unpacked_len = sizeof(unpacked);
        compress2(packed, &packed_len, input, sizeof(input), level);
        uncompress(unpacked, &unpacked_len, packed, packed_len);
    }
    z_stream s;
    memset(&s, 0, sizeof(s));
    deflateInit2(&s, 5, Z_DEFLATED, 13, 7, Z_FILTERED);
    deflateSetDictionary(&s, input, 300);
    s.next_in = input; s.avail_in = 40000; s.next_out = packed; s.avail_out = sizeof(packed);
    deflate(&s, Z_NO_FLUSH);
    deflateParams(&s, 2, Z_HUFFMAN_ONLY);
    s.avail_in = sizeof(input) - 40000;
    deflate(&s, Z_FINISH);
    uLong total = s.total_out;
    deflateBound(&s, 12345);
    deflateEnd(&s);
    memset(&s, 0, sizeof(s));
    inflateInit2(&s, 13);
    s.next_in = packed; s.avail_in = (uInt)total; s.next_out = unpacked; s.avail_out = sizeof(unpacked);
    if (inflate(&s, Z_SYNC_FLUSH) == Z_NEED_DICT)
        inflateSetDictionary(&s, input, 300);
    inflate(&s, Z_FINISH);
    inflateEnd(&s);
    printf("%lu %lu %lu\n", crc32(0, input, 1000), adler32(1, input, 999), crc32_combine(11, 22, 333));
    char path[] = "/tmp/fleettrace-drive-zlib-XXXXXX";
    snprintf(path + strlen(path) - 6, 7, "%06d", (int)(total % 999983));
    gzFile f = gzopen(path, "wb6");
    if (f) {
        gzwrite(f, input, 5000);
        gzprintf(f, "%d %s\n", 42, "answer");
        gzputs(f, "line\n");
        gzclose(f);
        f = gzopen(path, "rb");
        gzread(f, unpacked, 4000);
        gzgetc(f);
        gzgets(f, (char *)unpacked, 100);
        gzclose(f);
        remove(path);
    }
    return 0;
}
