"""Real corosync for tests: built from Debian's source (scripts/build-corosync.sh), one node on 127.0.0.1.

``Corosync`` runs it with its state directory on a loop-mounted ext4 (which
a test can freeze: a D-state stall), or, with ``watchdog_file``, in a private
mount namespace where that file (the slow watchdog, FUSE) is its
/dev/watchdog: the talk's incident.  The fixtures that build and start it are
in tests/integration/conftest.py (``corosync_prefix``, ``slow_watchdog``,
``corosync_with_watchdog``).
"""

import os
import re
import subprocess
import threading
import time

from tests.helpers import slow_watchdog as sw
from tests.helpers.paths import REPO

TOKEN_MS = 1000  # corosync warns at 0.8 x token = 800 ms
# exec/wd.c: the keepalive timer runs every watchdog_timeout * 1000 / 2 ms;
# 2 s (the smallest it accepts) tickles every second.
WATCHDOG_TIMEOUT_S = 2

COROSYNC_CONF = """\
totem {
  version: 2
  cluster_name: fleettrace
  transport: knet
  token: %(token)d
  crypto_cipher: none
  crypto_hash: none
}
nodelist {
  node {
    ring0_addr: 127.0.0.1
    name: node1
    nodeid: 1
  }
}
quorum {
  provider: corosync_votequorum
}
logging {
  to_logfile: yes
  logfile: %(log)s
  to_syslog: no
  to_stderr: no
  timestamp: on
}
system {
  state_dir: %(state)s
}
%(resources)s"""

WATCHDOG_RESOURCES = """\
resources {
  watchdog_device: /dev/watchdog
  watchdog_timeout: %d
}
""" % WATCHDOG_TIMEOUT_S


def build():
    """(prefix, None) of the cached build, or (None, why it could not be built)."""
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "build-corosync.sh")], capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        return None, ("corosync could not be built from Debian's source package (scripts/build-corosync.sh):\n"
                      + proc.stderr[-3000:])
    return proc.stdout.strip().splitlines()[-1], None


class Corosync:
    """One corosync; with watchdog_file, in a private namespace where that file is /dev/watchdog."""

    def __init__(self, prefix, workdir, watchdog_file=None):
        self.prefix = prefix
        self.binary = os.path.join(prefix, "sbin", "corosync")
        self.cmapctl = os.path.join(prefix, "sbin", "corosync-cmapctl")
        self.workdir = workdir
        self.state = os.path.join(workdir, "state")
        self.log = os.path.join(workdir, "corosync.log")
        self.conf = os.path.join(workdir, "corosync.conf")
        self.watchdog_file = watchdog_file
        self.proc = None
        self._stop = threading.Event()
        self._staller = None
        self.stalls = 0

    def start(self):
        os.makedirs(self.state)
        image = os.path.join(self.workdir, "state.img")
        # Room for many flight-data dumps (several MB each): a nearly full ext4
        # makes writers wait on writeback instead of on the freeze itself.
        subprocess.run(["truncate", "-s", "256M", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
        subprocess.run(["mount", "-o", "loop", image, self.state], check=True)
        with open(self.conf, "w") as handle:
            handle.write(COROSYNC_CONF % {"token": TOKEN_MS, "log": self.log, "state": self.state,
                                          "resources": WATCHDOG_RESOURCES if self.watchdog_file else ""})
        argv = [self.binary, "-f", "-c", self.conf]
        if self.watchdog_file:
            stage = os.path.join(self.workdir, "ns-stage")
            os.makedirs(stage)
            # exec'ed all the way down: self.proc.pid is corosync's pid.
            argv = ["bash", sw.WITH_DEV_WATCHDOG, self.watchdog_file, stage] + argv
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("corosync exited with %s; log:\n%s" % (self.proc.returncode, self.read_log()))
            if self.cmap("-g", "runtime.config.totem.token").returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("corosync did not answer corosync-cmapctl in 60 s; log:\n" + self.read_log())

    def cmap(self, *args):
        return subprocess.run([self.cmapctl] + list(args), capture_output=True,
                              text=True, timeout=60, check=False)

    def read_log(self):
        try:
            with open(self.log) as handle:
                return handle.read()
        except OSError:
            return ""

    def stall_repeatedly(self, freeze_s=2.0, pause_s=2.0):
        """Freeze the state dir and make corosync write there, again and again, in a thread."""
        def loop():
            while not self._stop.is_set():
                subprocess.run(["fsfreeze", "-f", self.state], check=True)
                # The flight-data dump runs in corosync's main loop and opens a file in state_dir.
                # Any change of the key dumps (exec/main.c), setting the same value is none: alternate.
                value = "yes" if self.stalls % 2 == 0 else "no"
                dump = subprocess.Popen([self.cmapctl, "-s", "runtime.blackbox.dump_flight_data", "str", value],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self._stop.wait(freeze_s)
                subprocess.run(["fsfreeze", "-u", self.state], check=False)
                dump.wait(timeout=60)
                self.stalls += 1
                self._stop.wait(pause_s)
        self._staller = threading.Thread(target=loop, daemon=True)
        self._staller.start()

    def stop(self):
        self._stop.set()
        if self._staller is not None:
            self._staller.join(timeout=60)
        subprocess.run(["fsfreeze", "-u", self.state], stderr=subprocess.DEVNULL, check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if os.path.ismount(self.state):
            subprocess.run(["umount", self.state], check=True)


def require_watchdog_feature(prefix):
    version = subprocess.run([os.path.join(prefix, "sbin", "corosync"), "-v"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, check=False).stdout
    assert re.search(r"features:.*\bwatchdog\b", version), (
        "corosync at %s was built without the watchdog service:\n%s" % (prefix, version))


def watchdog_fd(pid):
    """corosync's fd on /dev/watchdog, read from the host as the capture reads it."""
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) == "/dev/watchdog":
                return int(name)
        except OSError:
            continue
    return None
