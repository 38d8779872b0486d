"""Servers on loopback for the debuginfod tests: the real elfutils debuginfod and bad ones.

``RealDebuginfod`` runs /usr/bin/debuginfod (Debian package ``debuginfod``) over a
directory of ``.debug`` files; ``BadServer`` is a tiny http.server that answers
every build-id request slowly, with a wrong file, or with an error.
"""

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

READY_WAIT_S = 120   # the first scan of a directory; a loaded machine may be slow


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_id_of(path):
    out = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    raise AssertionError("%s has no build-id" % path)


def split_debug(full, directory, name):
    """A stripped (--strip-all, no debuglink) copy of ``full`` and its .debug file in ``directory``."""
    stripped = os.path.join(os.path.dirname(full), name)
    debug = os.path.join(directory, name + ".debug")
    subprocess.run(["objcopy", "--only-keep-debug", full, debug], check=True)
    subprocess.run(["strip", "--strip-all", "-o", stripped, full], check=True)
    return stripped, debug


class RealDebuginfod:
    """``debuginfod -F DIR`` on a free loopback port, its database in ``workdir``."""

    def __init__(self, directory, workdir):
        self.directory = directory
        self.workdir = workdir
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None

    def start(self, build_id):
        binary = shutil.which("debuginfod")
        if binary is None:
            raise RuntimeError("debuginfod is not installed: run scripts/setup.sh (Debian package debuginfod)")
        log = open(os.path.join(self.workdir, "debuginfod.log"), "w")
        self.proc = subprocess.Popen([binary, "-F", "-p", str(self.port), "-d", os.path.join(self.workdir, "db.sqlite"),
                                      "-t", "0", "-g", "0", "-c", "1", self.directory],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + READY_WAIT_S
        url = "%s/buildid/%s/debuginfo" % (self.url, build_id)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("debuginfod exited: %s" % self.log())
            try:
                with urllib.request.build_opener().open(url, timeout=5):  # ready once it answers
                    return self
            except Exception:   # not scanned yet, or not listening yet
                time.sleep(0.3)
        raise RuntimeError("debuginfod did not serve %s within %d s: %s" % (build_id, READY_WAIT_S, self.log()))

    def log(self):
        with open(os.path.join(self.workdir, "debuginfod.log")) as handle:
            return handle.read()[-2000:]

    def requests(self):
        return [line for line in self.log().splitlines() if "GET /buildid/" in line]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Threading(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class BadServer:
    """mode: ``slow`` (sleeps until stopped), ``wrong`` (serves ``payload``, another build), ``html`` (a web
    page with status 200), ``error`` (HTTP 500)."""

    def __init__(self, mode, payload=None):
        self.stopping = threading.Event()
        self.hits = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                if mode == "slow":
                    server.stopping.wait(600)
                    return
                if mode in ("wrong", "html"):
                    if mode == "html":      # a proxy's or portal's page instead of the file
                        data = b"<html><body>please log in</body></html>"
                    else:
                        with open(payload, "rb") as handle:
                            data = handle.read()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_error(500, "broken on purpose")

            def log_message(self, *args):
                pass

        self.httpd = _Threading(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def down_url():
    """A loopback URL nothing listens on."""
    return "http://127.0.0.1:%d" % free_port()
