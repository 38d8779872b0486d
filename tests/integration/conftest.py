"""Fixtures for multi-host and daemon tests: a loopback sshd, the demo daemon, corosync."""

import fcntl
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.helpers import corosync as corosync_helper
from tests.helpers import slow_watchdog as slow_watchdog_helper
from tests.helpers.paths import REPO, SSH_LOOPBACK

SSH_HOSTS = 3


@pytest.fixture(scope="session")
def loopback_sshd():
    """Start the private loopback sshd of scripts/ssh-loopback.sh for this session.

    Stops it afterwards only if this session started it; the system's sshd is
    never touched (the script uses its own config, keys and pid file).
    """
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd needs root")
    proc = subprocess.run(["bash", SSH_LOOPBACK, "start"], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail("scripts/ssh-loopback.sh start failed:\n%s%s" % (proc.stdout, proc.stderr))
    started_here = proc.stdout.strip().endswith("started")
    yield
    # An xdist worker never stops it (others may still use it): the controlling
    # process does, at the end of the session (tests/conftest.py).
    if started_here and not os.environ.get("PYTEST_XDIST_WORKER"):
        subprocess.run(["bash", SSH_LOOPBACK, "stop"], capture_output=True, check=False)


@pytest.fixture
def ssh_inventory(loopback_sshd, tmp_path):
    """Path of an inventory of node1..node3 reaching this machine over loopback SSH."""
    path = str(tmp_path / "ssh-inventory.ini")
    subprocess.run(["bash", SSH_LOOPBACK, "inventory", str(SSH_HOSTS), path], check=True,
                   stdout=subprocess.PIPE, timeout=60)
    yield path


class DemoDaemon:
    """The bundled demo daemon, its heartbeat file on a loop-mounted ext4, and a fault injector."""

    def __init__(self, workdir, cc):
        self.workdir = workdir
        self.binary = os.path.join(workdir, "demo_daemon")
        self.mnt = os.path.join(workdir, "mnt")
        self.heartbeat = os.path.join(self.mnt, "heartbeat.log")
        self.image = os.path.join(workdir, "fs.img")
        self.log = os.path.join(workdir, "daemon.log")
        self.proc = None
        self.injector = None
        subprocess.run([cc, "-g", "-O2", "-o", self.binary,
                        os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")], check=True)

    def start(self, period_ms=100, threshold_ms=400, heartbeat="write"):
        """``heartbeat``: ``write`` (a write() in D when frozen), ``mmap`` (a page fault in D: no system
        call) or ``fifo`` (write() into a pipe the test drains: held full with ``hold_fifo``, a sleep in S)."""
        os.makedirs(self.mnt)
        subprocess.run(["truncate", "-s", "16M", self.image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        subprocess.run(["mount", "-o", "loop", self.image, self.mnt], check=True)
        if heartbeat == "fifo":
            self._fifo_start()
            heartbeat = "write"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([self.binary, self.heartbeat, str(period_ms), str(threshold_ms)], stderr=log,
                                         env=dict(os.environ, DEMO_HEARTBEAT=heartbeat))
        return self.proc.pid

    def inject_faults(self, freeze_ms=1000, pause_ms=2500, count=0):
        self.injector = subprocess.Popen(
            ["bash", os.path.join(REPO, "tests", "programs", "demo", "fault_injector.sh"), self.mnt,
             str(freeze_ms), str(pause_ms), str(count)], stdout=subprocess.DEVNULL)

    def _fifo_start(self):
        os.mkfifo(self.heartbeat)
        # Opened before the daemon (its open for writing waits for a reader); one page, quick to fill.
        self.fifo_reader = os.open(self.heartbeat, os.O_RDONLY | os.O_NONBLOCK)
        self.fifo_writer = os.open(self.heartbeat, os.O_WRONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.fifo_reader, 1031, 4096)  # F_SETPIPE_SZ
        self.fifo_holding, self.fifo_paused, self.fifo_stop = threading.Event(), threading.Event(), threading.Event()

        def drain():
            while not self.fifo_stop.is_set():
                if self.fifo_holding.is_set():
                    self.fifo_paused.set()
                else:
                    self.fifo_paused.clear()
                    try:
                        os.read(self.fifo_reader, 65536)
                    except BlockingIOError:
                        pass
                time.sleep(0.005)
        self.fifo_drainer = threading.Thread(target=drain)
        self.fifo_drainer.start()

    def hold_fifo(self, seconds):
        """Keep the heartbeat pipe full for ``seconds``: the daemon's next write() sleeps in S."""
        self.fifo_holding.set()
        assert self.fifo_paused.wait(10), "the drainer did not pause"
        # To the last byte: a heartbeat still in the pipe leaves room that a small write would use.
        for chunk in (b"x" * 512, b"x"):
            try:
                while True:
                    os.write(self.fifo_writer, chunk)
            except BlockingIOError:
                pass
        time.sleep(seconds)
        self.fifo_holding.clear()

    def late_ticks_ms(self):
        """The delays the daemon itself measured and logged ("not scheduled for N ms")."""
        import re
        with open(self.log) as log:
            return [float(m) for m in re.findall(r"not scheduled for ([0-9.]+) ms", log.read())]

    def stop(self):
        if getattr(self, "fifo_drainer", None) is not None:
            self.fifo_holding.clear()
            self.fifo_stop.set()
            self.fifo_drainer.join()
            os.close(self.fifo_writer)
        if self.injector is not None and self.injector.poll() is None:
            self.injector.terminate()
            self.injector.wait(timeout=30)
        subprocess.run(["fsfreeze", "-u", self.mnt], stderr=subprocess.DEVNULL, check=False)
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a test that stopped it and failed
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if getattr(self, "fifo_reader", None) is not None:
            os.close(self.fifo_reader)
            self.fifo_reader = None
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", self.mnt], check=True)


@pytest.fixture
def demo_daemon(tmp_path, cc):
    """A built (not yet started) demo daemon; stopped, thawed and unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the demo daemon's frozen file system needs root")
    os.makedirs(str(tmp_path / "demo"))
    demo = DemoDaemon(str(tmp_path / "demo"), cc)
    try:
        yield demo
    finally:
        demo.stop()


def read_summary(results_dir, run_id, label="corosync"):
    """summary.json of one run of diagnose-corosync.yml."""
    import json
    with open(os.path.join(results_dir, "%s-%s" % (label, run_id), "summary.json")) as handle:
        return json.load(handle)


@pytest.fixture
def mount_leak_check(tmp_path, run_token):
    """Fail the test when it leaves a mount behind (under tmp_path or carrying the run token).

    Leaked mounts are lazily unmounted before failing, so one failing test never
    leaves the machine with stray FUSE or loop mounts.
    """
    from tests.helpers.slow_watchdog import mounts_of

    def ours():
        return set(mounts_of(str(tmp_path))) | set(mounts_of(run_token))
    before = ours()
    yield
    leaked = sorted(ours() - before)
    for mount_point in reversed(leaked):
        subprocess.run(["umount", "-l", mount_point], stderr=subprocess.DEVNULL, check=False)
    if leaked:
        pytest.fail("mounts left behind (now lazily unmounted):\n  " + "\n  ".join(leaked))


@pytest.fixture(scope="session")
def corosync_prefix():
    """Where corosync 3.1.7 built from Debian's source is installed (scripts/build-corosync.sh, cached)."""
    if os.geteuid() != 0:
        pytest.skip("building and running corosync needs root")
    prefix, why = corosync_helper.build()
    if prefix is None:
        # make test / CI must prove the real-corosync workflow: no silent skip there.
        if os.environ.get("FLEETTRACE_REQUIRE_COROSYNC") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return prefix


@pytest.fixture
def slow_watchdog(cc, tmp_path, run_token):
    """The slow watchdog, fast for now (the test makes it slow once tracing is armed)."""
    try:
        binary = slow_watchdog_helper.build(cc, tmp_path)
    except slow_watchdog_helper.FuseUnavailable as why:
        if os.environ.get("FLEETTRACE_REQUIRE_COROSYNC") == "1":
            pytest.fail("the slow watchdog cannot run here: %s" % why)
        pytest.skip(str(why))
    with slow_watchdog_helper.SlowWatchdog(binary, tmp_path, "fleettrace_%s_corosync_wd" % run_token, delay_ms=0) as wd:
        yield wd


@pytest.fixture
def corosync_with_watchdog(corosync_prefix, slow_watchdog, tmp_path):
    corosync_helper.require_watchdog_feature(corosync_prefix)
    node = corosync_helper.Corosync(corosync_prefix, str(tmp_path / "corosync"), watchdog_file=slow_watchdog.device)
    os.makedirs(node.workdir)
    try:
        node.start()
        yield node
    finally:
        # corosync first: its namespace holds the last reference to the watchdog mount.
        slow_watchdog.try_control(enabled=0)
        node.stop()
