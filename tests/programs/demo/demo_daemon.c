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
 * With a WATCHDOG device (fd 4) the loop also tickles it after every tick,
 * ioctl(fd, WDIOC_KEEPALIVE, &ok), the way corosync's wd_tickle_fn() does
 * from its main-loop timer (exec/wd.c): a keepalive the driver holds for a
 * second stalls the loop for a second, the talk's incident.  The sleep is
 * then whatever the driver's is (S for the FUSE slow watchdog).
 *
 * With DEMO_HEARTBEAT=mmap in the environment the heartbeat is stored into a
 * shared mapping of the file instead: no system call.  Freezing its file system
 * writes the page back and protects it, so the next store faults and sleeps in
 * D state in the page fault (ext4_page_mkwrite -> sb_start_pagefault), outside
 * any system call, as a frozen cgroup or reclaim would.
 *
 * Usage: demo_daemon HEARTBEAT_FILE [PERIOD_MS [THRESHOLD_MS [WATCHDOG]]]
 * Build: cc -g -O2 -o demo_daemon demo_daemon.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/watchdog.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

static int open_on(const char *path, int flags, int want);

#define MAPPED_SIZE 4096
static char *mapped; /* the heartbeat file's first page, when DEMO_HEARTBEAT=mmap */

static void heartbeat(int fd, unsigned long long tick)
{
	char line[64];
	int len = snprintf(line, sizeof(line), "heartbeat %llu\n", tick);

	if (mapped) {
		memcpy(mapped, line, len);
		return;
	}
	if (write(fd, line, len) < 0)
		perror("demo_daemon: heartbeat write");
}

static int map_heartbeat(const char *path)
{
	int fd = open_on(path, O_RDWR | O_CREAT, 3);

	if (fd < 0 || ftruncate(fd, MAPPED_SIZE) < 0)
		return -1;
	mapped = mmap(NULL, MAPPED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mapped == MAP_FAILED) {
		perror("demo_daemon: mmap");
		return -1;
	}
	return fd;
}

/* Like corosync's wd_tickle_fn(): the result is not checked, the loop just waits for it. */
static void wd_tickle(int dog, int *watchdog_ok)
{
	if (dog > 0)
		ioctl(dog, WDIOC_KEEPALIVE, watchdog_ok);
}

/* Open path on exactly fd want (the tests name the fds they expect). */
static int open_on(const char *path, int flags, int want)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);

	if (fd < 0) {
		perror(path);
		return -1;
	}
	if (fd != want) {
		if (dup3(fd, want, O_CLOEXEC) < 0) {
			perror("dup3");
			return -1;
		}
		close(fd);
	}
	return want;
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
	int fd, dog = -1, watchdog_ok = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: %s HEARTBEAT_FILE [PERIOD_MS [THRESHOLD_MS [WATCHDOG]]]\n", argv[0]);
		return 2;
	}
	period_ms = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
	timeout_data.max_tv_diff = (argc > 3 ? strtoull(argv[3], NULL, 10) : 4 * period_ms) * NS_IN_MSEC;
	/* The tests look for "fd 3" and "fd 4": keep them there whatever is open. */
	if (getenv("DEMO_HEARTBEAT") && strcmp(getenv("DEMO_HEARTBEAT"), "mmap") == 0)
		fd = map_heartbeat(argv[1]);
	else
		fd = open_on(argv[1], O_WRONLY | O_CREAT | O_APPEND, 3);
	if (fd < 0)
		return 1;
	if (argc > 4) {
		/* O_WRONLY, as corosync's setup_watchdog() opens it. */
		dog = open_on(argv[4], O_WRONLY, 4);
		if (dog < 0)
			return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	period.tv_sec = period_ms / 1000;
	period.tv_nsec = (period_ms % 1000) * NS_IN_MSEC;
	fprintf(stderr, "demo_daemon[%d]: tick every %llu ms, threshold %llu ms, heartbeat %s%s%s\n",
		(int)getpid(), period_ms, timeout_data.max_tv_diff / NS_IN_MSEC, argv[1],
		dog > 0 ? ", watchdog " : "", dog > 0 ? argv[4] : "");
	while (!stopping) {
		nanosleep(&period, NULL);
		timer_callback(&timeout_data);
		heartbeat(fd, ++tick);
		wd_tickle(dog, &watchdog_ok);
	}
	/* The magic close, as corosync's wd_exec_exit_fn(): a real watchdog would stop counting. */
	if (dog > 0 && write(dog, "V", 1) < 0)
		perror("demo_daemon: watchdog magic close");
	fprintf(stderr, "demo_daemon[%d]: stopped after %llu ticks, %llu late\n",
		(int)getpid(), tick, timeout_data.late_ticks);
	return 0;
}
