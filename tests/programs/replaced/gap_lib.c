/* A library a loop calls every tick with the gap it measured (ns): the runtime truth.
 *
 * Tests replace this library on disk while the loop runs, the way a package
 * upgrade does (a new file renamed over the old path): the loop keeps running
 * the old, deleted, code.  Built with -DUPGRADED the library has other code
 * before report_gap(), so every offset in it moves: a probe placed on the new
 * file can never fire in the running loop.
 *
 * Build: cc -g -O0 -fPIC -shared -o libgap.so gap_lib.c
 */
#include <stdio.h>

#ifdef UPGRADED
__attribute__((noinline, used)) long long upgraded_padding(long long x)
{
	volatile long long table[32];
	int i;

	for (i = 0; i < 32; i++)
		table[i] = x * i;
	return table[x & 31] + table[(x >> 5) & 31];
}
#endif

__attribute__((noinline)) void report_gap(long long gap)
{
	printf("gap %lld\n", gap);
	fflush(stdout);
}
