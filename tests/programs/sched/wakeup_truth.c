/* Ground truth for the scheduling audit: a timer loop that measures its own wakeup latency.
 *
 *   wakeup_truth PERIOD_US COUNT OUT_FILE
 *
 * Sleeps until absolute CLOCK_MONOTONIC deadlines PERIOD_US apart and records,
 * per wakeup, the deadline (intended) and the time it ran again (actual), in ns.
 * CLOCK_MONOTONIC is the clock of the "mono" trace clock, so the audit's waits
 * can be placed inside these intervals.  Prints its tid, then "done" at the end;
 * writes "intended actual" lines to OUT_FILE (also on SIGTERM).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long *intended, *actual;
static volatile sig_atomic_t stop;
static long done_count;

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PERIOD_US COUNT OUT_FILE\n", argv[0]);
        return 2;
    }
    long period_ns = atol(argv[1]) * 1000L;
    long count = atol(argv[2]);
    intended = calloc(count, sizeof(*intended));
    actual = calloc(count, sizeof(*actual));
    if (!intended || !actual || period_ns <= 0)
        return 2;
    signal(SIGTERM, on_term);
    printf("%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    struct timespec next, now;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (long i = 0; i < count && !stop; i++) {
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0 && !stop)
            ;
        clock_gettime(CLOCK_MONOTONIC, &now);
        intended[i] = ns(&next);
        actual[i] = ns(&now);
        done_count = i + 1;
        if (actual[i] > intended[i] + period_ns) /* late by more than a period: skip ahead */
            next = now;
    }
    FILE *out = fopen(argv[3], "w");
    if (!out)
        return 1;
    for (long i = 0; i < done_count; i++)
        fprintf(out, "%lld %lld\n", intended[i], actual[i]);
    fclose(out);
    printf("done\n");
    return 0;
}
