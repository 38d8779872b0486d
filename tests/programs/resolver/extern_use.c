/* Reads a global defined in another compile unit. */
#include <stdio.h>

extern long shared_counter;

__attribute__((noinline)) int report_shared(int round)
{
    printf("shared round=%d counter=%ld\n", round, shared_counter);
    return round;
}
