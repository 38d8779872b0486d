/* A timer loop like corosync's scheduler watchdog, for capture tests.
 *
 * Every tick it measures the gap (ns) since the previous tick into the
 * local variable `gap` (the line marked PROBE_GAP is where tests put a
 * uprobe), prints the gap it measured (the runtime truth tests compare the
 * traced values with), then writes a heartbeat to HEARTBEAT_FILE on a
 * known fd.  When the filesystem behind that file is frozen, the write
 * blocks in D state and the next gap is long.
 *
 * usage: tick_loop HEARTBEAT_FILE INTERVAL_MS TICKS
 * Output: "ready PID FD" once, then one "gap N" line per tick.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void tick(int fd, long long *previous, long tick_number)
{
	char line[64];
	long long gap;
	long long now = now_ns();
	int len;

	gap = now - *previous;
	*previous = now;
	printf("gap %lld\n", gap); /* PROBE_GAP */
	fflush(stdout);
	len = snprintf(line, sizeof(line), "tick %ld\n", tick_number);
	if (write(fd, line, len) != len)
		perror("write");
}

int main(int argc, char **argv)
{
	struct timespec interval;
	long long previous;
	long ticks, i;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s HEARTBEAT_FILE INTERVAL_MS TICKS\n", argv[0]);
		return 2;
	}
	/* Move the fd away from 3 so tests see a number they did not assume. */
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || dup2(fd, 10) < 0) {
		perror(argv[1]);
		return 1;
	}
	close(fd);
	fd = 10;
	interval.tv_sec = atol(argv[2]) / 1000;
	interval.tv_nsec = (atol(argv[2]) % 1000) * 1000000L;
	ticks = atol(argv[3]);
	printf("ready %d %d\n", (int)getpid(), fd);
	fflush(stdout);
	previous = now_ns();
	for (i = 0; ticks <= 0 || i < ticks; i++) {
		nanosleep(&interval, NULL);
		tick(fd, &previous, i);
	}
	return 0;
}
