/*
 * slow_watchdog: a watchdog device whose keepalive can be slow, as a FUSE
 * file system (libfuse3, low-level API).  It stands in for the IPMI watchdog
 * of the talk, whose WDIOC_KEEPALIVE held corosync's main loop for a second.
 *
 * The mount holds two files:
 *   watchdog  answers WDIOC_GETSUPPORT, WDIOC_GETTIMEOUT, WDIOC_SETTIMEOUT,
 *             WDIOC_SETOPTIONS and WDIOC_KEEPALIVE (and the magic close 'V').
 *             A keepalive blocks for DELAY_MS when the slow mode says so.
 *   control   read: the current settings and counters; write: change them at
 *             run time, e.g.  echo "delay_ms=1500 every=1" > MNT/control
 *             (keys: delay_ms, every, enabled, hold; "every=N" blocks keepalives
 *             N, 2N, 3N, ...; every=1 blocks them all, every=0 none; "hold=N"
 *             blocks the next N keepalives, whatever every says; "hold_in_ms=N"
 *             blocks the first keepalive that comes N ms from now or later).
 * SIGUSR1 switches the slow mode on (enabled=1), SIGUSR2 off (enabled=0).
 *
 * Every keepalive served is logged, one line each, with CLOCK_MONOTONIC
 * start and end (the truth tests compare traced latencies with):
 *   keepalive seq=3 pid=1234 start_ns=... end_ns=... duration_ns=... slow=1
 * and every other ioctl as "ioctl cmd=0x... name=WDIOC_... pid=... result=...".
 *
 * These are FUSE "restricted" ioctls: the kernel copies data in and out
 * according to the _IOC direction and size encoded in the command, so
 * _IOR commands (GETSUPPORT, GETTIMEOUT, KEEPALIVE, SETOPTIONS) bring no
 * input and _IOWR (SETTIMEOUT) brings an int.  KEEPALIVE and SETOPTIONS reply
 * without data: a real watchdog driver writes nothing back for them (corosync
 * passes &watchdog_ok and a bare WDIOS_ENABLECARD respectively).
 *
 * The caller of a keepalive waits in the kernel's request_wait_answer()
 * (fs/fuse/dev.c), interruptibly: state S, the case the talk's D-state
 * filter would miss.
 *
 * Usage: slow_watchdog MOUNTPOINT --log FILE [--delay-ms N] [--every N]
 *                      [--disabled] [--timeout S] [--fsname NAME]
 * Runs in the foreground; SIGTERM/SIGINT unmount and exit.
 * Build: cc -O2 -Wall $(pkg-config --cflags fuse3) -o slow_watchdog slow_watchdog.c $(pkg-config --libs fuse3)
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <linux/watchdog.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INO_ROOT 1
#define INO_WATCHDOG 2
#define INO_CONTROL 3
#define NS_IN_SEC 1000000000ULL
#define NS_IN_MSEC 1000000ULL
#define CONTROL_MAX 512
/* Timeouts a driver accepts (corosync asks for 2..120 s). */
#define TIMEOUT_MIN_S 1
#define TIMEOUT_MAX_S 3600

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long delay_ms;
static unsigned long every = 1;
static unsigned long long hold;
static unsigned long long hold_at_ns;
static volatile sig_atomic_t enabled = 1;
static int timeout_s = 60;
static unsigned long long keepalives, slow_keepalives, magic_closes;
static FILE *logf;

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * NS_IN_SEC + ts.tv_nsec;
}

static void log_line(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&lock);
	va_start(ap, fmt);
	vfprintf(logf, fmt, ap);
	va_end(ap);
	fflush(logf);
	pthread_mutex_unlock(&lock);
}

static const char *wdioc_name(unsigned int cmd)
{
	switch (cmd) {
	case WDIOC_GETSUPPORT: return "WDIOC_GETSUPPORT";
	case WDIOC_GETSTATUS: return "WDIOC_GETSTATUS";
	case WDIOC_GETBOOTSTATUS: return "WDIOC_GETBOOTSTATUS";
	case WDIOC_SETOPTIONS: return "WDIOC_SETOPTIONS";
	case WDIOC_KEEPALIVE: return "WDIOC_KEEPALIVE";
	case WDIOC_SETTIMEOUT: return "WDIOC_SETTIMEOUT";
	case WDIOC_GETTIMEOUT: return "WDIOC_GETTIMEOUT";
	default: return "unknown";
	}
}

static void sleep_until(unsigned long long deadline_ns)
{
	struct timespec ts = { (time_t)(deadline_ns / NS_IN_SEC), (long)(deadline_ns % NS_IN_SEC) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void keepalive(fuse_req_t req)
{
	unsigned long long seq, start, end, delay;
	int slow;

	start = now_ns();
	pthread_mutex_lock(&lock);
	seq = ++keepalives;
	if (hold_at_ns && start >= hold_at_ns) {
		hold_at_ns = 0;
		hold++;
	}
	slow = enabled && delay_ms > 0 && (hold > 0 || (every > 0 && seq % every == 0));
	if (slow && hold > 0)
		hold--;
	delay = delay_ms;
	if (slow)
		slow_keepalives++;
	pthread_mutex_unlock(&lock);
	if (slow)
		sleep_until(start + delay * NS_IN_MSEC);
	end = now_ns();
	log_line("keepalive seq=%llu pid=%d start_ns=%llu end_ns=%llu duration_ns=%llu slow=%d\n",
		 seq, (int)fuse_req_ctx(req)->pid, start, end, end - start, slow);
	fuse_reply_ioctl(req, 0, NULL, 0);
}

static void wd_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	struct watchdog_info info;
	int value, result = 0;

	(void)arg; (void)fi; (void)out_bufsz;
	if (ino != INO_WATCHDOG) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	switch (cmd) {
	case WDIOC_KEEPALIVE:
		keepalive(req);
		return;
	case WDIOC_GETSUPPORT:
		memset(&info, 0, sizeof(info));
		info.options = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING;
		snprintf((char *)info.identity, sizeof(info.identity), "fleettrace slow watchdog");
		fuse_reply_ioctl(req, 0, &info, sizeof(info));
		break;
	case WDIOC_GETTIMEOUT:
		pthread_mutex_lock(&lock);
		value = timeout_s;
		pthread_mutex_unlock(&lock);
		fuse_reply_ioctl(req, 0, &value, sizeof(value));
		break;
	case WDIOC_SETTIMEOUT:
		if (in_bufsz < sizeof(value)) {
			result = -EINVAL;
			fuse_reply_err(req, EINVAL);
			break;
		}
		memcpy(&value, in_buf, sizeof(value));
		if (value < TIMEOUT_MIN_S || value > TIMEOUT_MAX_S) {
			result = -EINVAL;
			fuse_reply_err(req, EINVAL);
			break;
		}
		pthread_mutex_lock(&lock);
		timeout_s = value;
		pthread_mutex_unlock(&lock);
		fuse_reply_ioctl(req, 0, &value, sizeof(value));
		break;
	case WDIOC_SETOPTIONS:
		/* _IOR: the option word does not reach a FUSE server; accept it. */
		fuse_reply_ioctl(req, 0, NULL, 0);
		break;
	default:
		result = -ENOTTY;
		fuse_reply_err(req, ENOTTY);
		break;
	}
	log_line("ioctl cmd=0x%08x name=%s pid=%d result=%d\n", cmd, wdioc_name(cmd),
		 (int)fuse_req_ctx(req)->pid, result);
}

static int control_text(char *buf, size_t size)
{
	int n;

	pthread_mutex_lock(&lock);
	n = snprintf(buf, size, "delay_ms=%llu every=%lu enabled=%d hold=%llu timeout_s=%d keepalives=%llu "
		     "slow_keepalives=%llu magic_closes=%llu\n", delay_ms, every, (int)enabled, hold, timeout_s,
		     keepalives, slow_keepalives, magic_closes);
	pthread_mutex_unlock(&lock);
	return n < (int)size ? n : (int)size - 1;
}

/* "delay_ms=1500 every=2 enabled=1": any subset, in any order. */
static int control_apply(const char *text)
{
	char copy[CONTROL_MAX + 1], *save = NULL, *tok, *end;
	unsigned long long value;

	snprintf(copy, sizeof(copy), "%s", text);
	for (tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq || eq[1] == '\0')
			return -EINVAL;
		*eq = '\0';
		errno = 0;
		value = strtoull(eq + 1, &end, 10);
		if (errno || *end)
			return -EINVAL;
		pthread_mutex_lock(&lock);
		if (strcmp(tok, "delay_ms") == 0)
			delay_ms = value;
		else if (strcmp(tok, "every") == 0)
			every = value;
		else if (strcmp(tok, "enabled") == 0)
			enabled = value != 0;
		else if (strcmp(tok, "hold") == 0)
			hold = value;
		else if (strcmp(tok, "hold_in_ms") == 0)
			hold_at_ns = now_ns() + value * NS_IN_MSEC;
		else {
			pthread_mutex_unlock(&lock);
			return -EINVAL;
		}
		pthread_mutex_unlock(&lock);
	}
	log_line("control %s", text[0] && text[strlen(text) - 1] == '\n' ? text : "(no newline)\n");
	return 0;
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (ino == INO_ROOT) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = ino == INO_CONTROL ? CONTROL_MAX : 0;
	}
}

static void wd_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	if (parent != INO_ROOT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "watchdog") == 0)
		e.ino = INO_WATCHDOG;
	else if (strcmp(name, "control") == 0)
		e.ino = INO_CONTROL;
	else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void wd_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != INO_ROOT && ino != INO_WATCHDOG && ino != INO_CONTROL) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 0);
}

/* O_TRUNC from "echo ... > control" arrives as a size change: nothing to truncate. */
static void wd_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)attr; (void)to_set;
	wd_getattr(req, ino, fi);
}

static void wd_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	static const struct { const char *name; fuse_ino_t ino; mode_t mode; } entries[] = {
		{ ".", INO_ROOT, S_IFDIR }, { "..", INO_ROOT, S_IFDIR },
		{ "watchdog", INO_WATCHDOG, S_IFREG }, { "control", INO_CONTROL, S_IFREG },
	};
	char buf[1024];
	size_t used = 0, i;

	(void)fi;
	if (ino != INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (i = (size_t)off; i < sizeof(entries) / sizeof(entries[0]); i++) {
		struct stat st = { .st_ino = entries[i].ino, .st_mode = entries[i].mode };
		size_t len = fuse_add_direntry(req, buf + used, sizeof(buf) - used, entries[i].name, &st, i + 1);

		if (used + len > sizeof(buf) || used + len > size)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
}

static void wd_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == INO_ROOT) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* No page cache: control is read fresh and writes reach us at once. */
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void wd_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char buf[CONTROL_MAX];
	int len;

	(void)fi;
	if (ino != INO_CONTROL) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = control_text(buf, sizeof(buf));
	if (off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	fuse_reply_buf(req, buf + off, (size_t)(len - off) < size ? (size_t)(len - off) : size);
}

static void wd_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	char text[CONTROL_MAX + 1];
	int err;

	(void)off; (void)fi;
	if (ino == INO_WATCHDOG) {
		/* The magic close character 'V' (corosync writes it on exit). */
		if (memchr(data, 'V', size)) {
			pthread_mutex_lock(&lock);
			magic_closes++;
			pthread_mutex_unlock(&lock);
			log_line("magic_close pid=%d\n", (int)fuse_req_ctx(req)->pid);
		}
		fuse_reply_write(req, size);
		return;
	}
	if (size > CONTROL_MAX) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	err = control_apply(text);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_write(req, size);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = wd_lookup,
	.getattr = wd_getattr,
	.setattr = wd_setattr,
	.readdir = wd_readdir,
	.open = wd_open,
	.read = wd_read,
	.write = wd_write,
	.ioctl = wd_ioctl,
};

static void on_usr(int sig)
{
	enabled = sig == SIGUSR1;
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s MOUNTPOINT --log FILE [--delay-ms N] [--every N] [--disabled] "
		"[--timeout S] [--fsname NAME]\n", prog);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "log", required_argument, NULL, 'l' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "every", required_argument, NULL, 'e' },
		{ "disabled", no_argument, NULL, 'x' },
		{ "timeout", required_argument, NULL, 't' },
		{ "fsname", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *log_path = NULL, *fsname = "slow_watchdog";
	char fsname_opt[256];
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	struct fuse_loop_config *config;
	struct sigaction sa;
	int opt, ret = 1;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': log_path = optarg; break;
		case 'd': delay_ms = strtoull(optarg, NULL, 10); break;
		case 'e': every = strtoul(optarg, NULL, 10); break;
		case 'x': enabled = 0; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'n': fsname = optarg; break;
		default: usage(argv[0]); return 2;
		}
	}
	if (optind != argc - 1 || !log_path) {
		usage(argv[0]);
		return 2;
	}
	logf = fopen(log_path, "a");
	if (!logf) {
		perror(log_path);
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);

	snprintf(fsname_opt, sizeof(fsname_opt), "-ofsname=%s,subtype=slow_watchdog", fsname);
	if (fuse_opt_add_arg(&args, argv[0]) || fuse_opt_add_arg(&args, fsname_opt))
		return 1;
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out_args;
	if (fuse_set_signal_handlers(se))
		goto out_session;
	if (fuse_session_mount(se, argv[optind]))
		goto out_signals;
	log_line("mounted %s delay_ms=%llu every=%lu enabled=%d pid=%d\n", argv[optind], delay_ms,
		 every, (int)enabled, (int)getpid());
	config = fuse_loop_cfg_create();
	/* Workers enough that control and a blocked keepalive never wait on each other. */
	fuse_loop_cfg_set_max_threads(config, 8);
	ret = fuse_session_loop_mt(se, config) ? 1 : 0;
	fuse_loop_cfg_destroy(config);
	fuse_session_unmount(se);
	log_line("unmounted\n");
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	fuse_opt_free_args(&args);
	return ret;
}
