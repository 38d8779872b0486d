/* A timer loop that reports each tick's gap through libgap (gap_lib.c).
 *
 * usage: gap_main INTERVAL_MS; prints "ready PID" once, then the library
 * prints one "gap N" line per tick (what a probe on report_gap must trace).
 *
 * Build: cc -g -O0 -o gap_main gap_main.c -L. -lgap -Wl,-rpath,'$ORIGIN'
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void report_gap(long long gap);

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct timespec interval;
	long long previous, now;
	long ms = argc > 1 ? atol(argv[1]) : 20;

	interval.tv_sec = ms / 1000;
	interval.tv_nsec = (ms % 1000) * 1000000L;
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	previous = now_ns();
	for (;;) {
		nanosleep(&interval, NULL);
		now = now_ns();
		report_gap(now - previous);
		previous = now;
	}
	return 0;
}
