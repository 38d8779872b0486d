/* Paced scheduler load for benchmarks/bench_sched_latency.py.
 *
 *   sched_load PAIRS ROUNDS_PER_SECOND SECONDS
 *
 * PAIRS thread pairs ping-pong one byte over pipes; together they make about
 * ROUNDS_PER_SECOND round trips per second (each a few wakeups and switches),
 * paced with absolute-deadline sleeps every 100 rounds so the event rate is
 * steady and can be stepped up.  Exits after SECONDS.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long rounds_per_pair;
static double seconds;

struct pair { int ping[2], pong[2]; };

static void *echo(void *arg)
{
    struct pair *p = arg;
    char c;
    while (read(p->ping[0], &c, 1) == 1 && c)
        if (write(p->pong[1], &c, 1) != 1)
            break;
    return NULL;
}

static void *drive(void *arg)
{
    struct pair *p = arg;
    struct timespec next, end;
    const long burst = 100;
    long period_ns = (long)(1e9 * burst / rounds_per_pair);
    char c = 1;
    clock_gettime(CLOCK_MONOTONIC, &next);
    end = next;
    end.tv_sec += (time_t)seconds;
    for (;;) {
        for (long i = 0; i < burst; i++) {
            if (write(p->ping[1], &c, 1) != 1 || read(p->pong[0], &c, 1) != 1)
                return NULL;
        }
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        if (next.tv_sec > end.tv_sec || (next.tv_sec == end.tv_sec && next.tv_nsec >= end.tv_nsec))
            break;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    c = 0;
    if (write(p->ping[1], &c, 1) != 1)
        return NULL;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PAIRS ROUNDS_PER_SECOND SECONDS\n", argv[0]);
        return 2;
    }
    int pairs = atoi(argv[1]);
    rounds_per_pair = atol(argv[2]) / pairs;
    seconds = atof(argv[3]);
    pthread_t threads[2 * 64];
    struct pair ps[64];
    if (pairs < 1 || pairs > 64 || rounds_per_pair < 100)
        return 2;
    for (int i = 0; i < pairs; i++) {
        if (pipe(ps[i].ping) || pipe(ps[i].pong))
            return 1;
        pthread_create(&threads[2 * i], NULL, echo, &ps[i]);
        pthread_create(&threads[2 * i + 1], NULL, drive, &ps[i]);
    }
    for (int i = 0; i < 2 * pairs; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
