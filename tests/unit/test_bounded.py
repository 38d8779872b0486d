"""bounded.py: user-given paths never block, never flood, never redirect a write.

Each case runs in a child process with a deadline, so a regression shows as a
failed test, not a hung suite.
"""

import multiprocessing
import os
import struct

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf import reader as elf_reader

DEADLINE = 20


def _in_child(queue, function, args):
    try:
        queue.put(("ok", function(*args)))
    except Exception as exc:  # handed to the test
        queue.put((type(exc).__name__, str(exc)))


def within_deadline(function, *args):
    """(outcome, value) of function(*args) run in a child; fails the test if it does not end."""
    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_in_child, args=(queue, function, args))
    child.start()
    child.join(DEADLINE)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("%s%r still running after %d s" % (function.__name__, args, DEADLINE))
    return queue.get(timeout=5)


def read_first_bytes(path):
    with bounded.open_regular(path, "binary") as handle:
        return handle.read(4)


def write_text(path):
    with bounded.open_output(path, "json_path") as handle:
        handle.write("x")
    return True


def elf_headers(path):
    return sorted(elf_reader.ElfHeaders(path).sections)


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    return path


def test_fifo_and_devices_are_refused_at_once(fifo):
    assert within_deadline(read_first_bytes, fifo) == ("FileRefused", "binary %s is a FIFO; give the path of a "
                                                                      "regular file" % fifo)
    outcome, message = within_deadline(read_first_bytes, "/dev/zero")
    assert outcome == "FileRefused" and "a character device" in message
    outcome, message = within_deadline(write_text, fifo)
    assert outcome == "FileRefused" and "FIFO" in message
    outcome, message = within_deadline(elf_headers, fifo)
    assert outcome == "ElfError" and "is a FIFO" in message
    with pytest.raises(bounded.FileRefused, match="FIFO"):
        bounded.check_output(fifo, "raw_path")


def test_output_written_only_into_a_regular_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old content that is longer")
    assert within_deadline(write_text, str(target)) == ("ok", True)
    assert target.read_text() == "x"
    with pytest.raises(bounded.FileRefused, match="does not exist"):
        bounded.check_output(str(tmp_path / "missing" / "x.json"), "json_path")


def test_new_file_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    temp = tmp_path / ".report.html.1.tmp"
    os.symlink(str(victim), str(temp))
    with bounded.open_new(str(temp), "temporary file") as handle:
        handle.write("new")
    assert victim.read_text() == "keep" and not os.path.islink(str(temp)) and temp.read_text() == "new"


def test_size_cap_refuses_before_reading(tmp_path):
    big = tmp_path / "big"
    with open(str(big), "wb") as handle:
        handle.truncate(1 << 30)
    with pytest.raises(bounded.FileRefused, match="1073741824 bytes; at most 1024"):
        bounded.open_regular(str(big), "source file", 1024)


def test_elf_header_claiming_a_huge_table_is_refused_not_read(tmp_path):
    """A section header table 'at' 2**40 (a corrupt or hostile ELF) is refused by the file's size."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 1 << 40, 0, 64, 56, 0, 64, 0xffff, 1)
    path = tmp_path / "hostile.so"
    path.write_bytes(ident + header)
    outcome, message = within_deadline(elf_headers, str(path))
    assert outcome == "ElfError" and "end past its 64 bytes" in message, message
