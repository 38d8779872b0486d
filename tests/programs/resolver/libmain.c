/* Executable that drives libdemo.so for the shared-library tests. */
#include <stdlib.h>

struct counter {
    const char *label;
    unsigned int hits;
    long history[3];
    unsigned int flag : 3;
    unsigned int level : 5;
};

long lib_step(struct counter *c, long amount);

int main(int argc, char **argv)
{
    struct counter c = {"libcounter", 0, {0, 0, 0}, 5, 19};
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    int r;

    for (r = 1; r <= rounds; r++)
        lib_step(&c, 7 * r);
    return 0;
}
