/* Resolver test program: computes values and prints the ones it holds, so
 * tests can compare traced values with the truth.  Marker comments (MARK:x)
 * let the tests find line numbers without hard-coding them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct inner {
    int y;
    long z[4];
};

struct outer {
    int a;
    struct inner *in;
    struct inner embedded;
    char name[16];
    unsigned short tag;
};

long gcount = 5;
static int gstatic = 7;
const char *glabel = "global-label";

__attribute__((noinline)) long compute(struct outer *o, int k, const char *label)
{
    long total = (long)o->a * k;
    int i;

    for (i = 0; i < 4; i++)
        total += o->in->z[i];
    gcount += total + gstatic;
    printf("compute k=%d total=%ld a=%d y=%d z2=%ld ey=%d tag=%u label=%s name=%s gcount=%ld\n", /* MARK:report */
           k, total, o->a, o->in->y, o->in->z[2], o->embedded.y, o->tag, label, o->name, gcount);
    return total;
}

__attribute__((noinline)) int scale(int v)
{
    int doubled = v * 2;
    int result = doubled + 3; /* MARK:scale_result */
    printf("scale v=%d doubled=%d result=%d\n", v, doubled, result); /* MARK:scale_print */
    return result;
}

/* Inline-only at -O2: two inlined copies in main, no out-of-line code. */
static inline int clamp_add(int base, int extra)
{
    int sum = base * 3 + extra; /* MARK:clamp_sum */

    if (sum > 1000)
        sum = 1000;
    return sum;
}

int main(int argc, char **argv)
{
    struct inner in;
    struct outer o;
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    int r;

    memset(&o, 0, sizeof(o));
    in.y = 11;
    for (r = 0; r < 4; r++)
        in.z[r] = 100 * (r + 1) + rounds;
    o.a = 3 + rounds;
    o.in = &in;
    o.embedded.y = 42;
    o.tag = 0xbeef;
    snprintf(o.name, sizeof(o.name), "obj%d", rounds);
    for (r = 1; r <= rounds; r++) {
        compute(&o, r, argc > 2 ? argv[2] : "default");
        scale(r + 40);
        printf("clamp base=%d extra=%d sum=%d\n", r, rounds, clamp_add(r, rounds));
    }
    printf("clamp base=%d extra=%d sum=%d\n", rounds * 500, 7, clamp_add(rounds * 500, 7));
    return 0;
}
