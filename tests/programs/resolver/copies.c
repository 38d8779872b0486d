/* Shapes behind issue 14's classes, for tests/unit/test_dwarf_differential.py:
   an inlined copy whose variable shares its name with the caller's, a one-line
   function (its -O0 prologue is on the same line as its body), and a function
   with an out-of-line copy (address taken) and inlined copies. */
#include <stdio.h>
#include <stdlib.h>

static inline int priced(int price)
{
    int doubled = price * 2;
    return doubled + 1;
}

int one_line(int x) { return x * 3 + 1; }

static int both(int v)
{
    return v * v + (int)getpid_like();
}

int getpid_like(void);
int getpid_like(void) { return 7; }

int (*volatile keep)(int) = both;

int caller(int n)
{
    int price = n + 100;
    {
        int price = n - 1;              /* another price in a block of the caller */
        printf("%d\n", priced(price + 5));
    }
    return price + both(n) + priced(n);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    printf("%d %d %d\n", caller(n), one_line(n), keep(n));
    return 0;
}
