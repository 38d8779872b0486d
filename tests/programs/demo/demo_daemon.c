/*
 * fleettrace demo daemon: a corosync-like main loop, small enough to read.
 *
 * Every tick a timer callback measures how late it runs (tv_diff, in ns,
 * the way corosync's timer_function_scheduler_timeout() does) and logs
 * "not scheduled for N ms" when that passes the threshold.  After each tick
 * the loop writes a heartbeat line to fd 3 (the heartbeat file).  When the
 * file system of that file is frozen, write() sleeps in D state and the next
 * tick comes late: exactly the stall the diagnose playbook has to explain.
 *
 * Usage: demo_daemon HEARTBEAT_FILE [PERIOD_MS [THRESHOLD_MS]]
 * Build: cc -g -O2 -o demo_daemon demo_daemon.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_IN_MSEC 1000000ULL

struct scheduler_pause_timeout_data {
	unsigned long long tv_prev;
	unsigned long long max_tv_diff;
	unsigned long long late_ticks;
};

static volatile sig_atomic_t stopping;

static unsigned long long nano_current_get(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Called through a pointer, as corosync's timer callbacks are: never inlined. */
static void timer_function_scheduler_timeout(void *data)
{
	struct scheduler_pause_timeout_data *timeout_data = data;
	unsigned long long tv_current;
	unsigned long long tv_diff;

	tv_current = nano_current_get();
	if (timeout_data->tv_prev == 0) {
		/* First call: nothing to compare with yet. */
		timeout_data->tv_prev = tv_current;
	}
	tv_diff = tv_current - timeout_data->tv_prev;
	timeout_data->tv_prev = tv_current;

	if (tv_diff > timeout_data->max_tv_diff) {
		timeout_data->late_ticks++;
		fprintf(stderr, "demo_daemon[%d]: main process was not scheduled for %0.4f ms "
			"(threshold is %0.4f ms).\n", (int)getpid(),
			(double)tv_diff / NS_IN_MSEC, (double)timeout_data->max_tv_diff / NS_IN_MSEC);
	}
}

static void heartbeat(int fd, unsigned long long tick)
{
	char line[64];
	int len = snprintf(line, sizeof(line), "heartbeat %llu\n", tick);

	if (write(fd, line, len) < 0)
		perror("demo_daemon: heartbeat write");
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

int main(int argc, char **argv)
{
	struct scheduler_pause_timeout_data timeout_data = { 0, 0, 0 };
	void (*volatile timer_callback)(void *) = timer_function_scheduler_timeout;
	unsigned long long period_ms, tick = 0;
	struct timespec period;
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s HEARTBEAT_FILE [PERIOD_MS [THRESHOLD_MS]]\n", argv[0]);
		return 2;
	}
	period_ms = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
	timeout_data.max_tv_diff = (argc > 3 ? strtoull(argv[3], NULL, 10) : 4 * period_ms) * NS_IN_MSEC;
	/* The tests look for "fd 3": keep the heartbeat there whatever is open. */
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (fd != 3) {
		if (dup3(fd, 3, O_CLOEXEC) < 0) {
			perror("dup3");
			return 1;
		}
		close(fd);
		fd = 3;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	period.tv_sec = period_ms / 1000;
	period.tv_nsec = (period_ms % 1000) * NS_IN_MSEC;
	fprintf(stderr, "demo_daemon[%d]: tick every %llu ms, threshold %llu ms, heartbeat %s\n",
		(int)getpid(), period_ms, timeout_data.max_tv_diff / NS_IN_MSEC, argv[1]);
	while (!stopping) {
		nanosleep(&period, NULL);
		timer_callback(&timeout_data);
		heartbeat(fd, ++tick);
	}
	fprintf(stderr, "demo_daemon[%d]: stopped after %llu ticks, %llu late\n",
		(int)getpid(), tick, timeout_data.late_ticks);
	return 0;
}
