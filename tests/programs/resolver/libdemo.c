/* Shared-library half of the resolver tests: probed inside libdemo.so. */
#include <stdio.h>

struct counter {
    const char *label;
    unsigned int hits;
    long history[3];
    unsigned int flag : 3;
    unsigned int level : 5;
};

long lib_total = 1000;

__attribute__((noinline)) long lib_step(struct counter *c, long amount)
{
    long before = lib_total;

    c->hits++;
    c->history[c->hits % 3] = amount;
    lib_total += amount;
    printf("lib_step amount=%ld before=%ld total=%ld hits=%u flag=%u level=%u label=%s\n", /* MARK:lib_report */
           amount, before, lib_total, c->hits, c->flag, c->level, c->label);
    return lib_total - before;
}
