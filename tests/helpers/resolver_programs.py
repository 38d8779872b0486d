"""Build the resolver test programs into a directory (used by the tests, not by the collection).

Each variant is (name, cflags): optimization, PIE or not, DWARF version.  The
line numbers of MARK:x comments are looked up from the sources so tests do
not hard-code them.
"""

import os
import re
import subprocess

# The C sources, in tests/programs/resolver/
SOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "programs", "resolver")
DEMO = os.path.join(SOURCES, "demo.c")

VARIANTS = {
    "demo_O0": ["-O0", "-gdwarf-5"],
    "demo_O2": ["-O2", "-gdwarf-5"],
    "demo_O0_dw4": ["-O0", "-gdwarf-4"],
    "demo_O2_nopie_dw4": ["-O2", "-gdwarf-4", "-fno-pie", "-no-pie"],
}


def marker_line(name, source=DEMO):
    with open(source) as handle:
        for number, text in enumerate(handle, 1):
            if "MARK:%s " % name in text or text.rstrip().endswith("MARK:%s */" % name):
                return number
    raise KeyError(name)


def decl_line(function, source=DEMO):
    pattern = re.compile(r"\b%s\s*\(" % re.escape(function))
    with open(source) as handle:
        for number, text in enumerate(handle, 1):
            if pattern.search(text) and not text.rstrip().endswith(";"):
                return number
    raise KeyError(function)


def build(cc, directory, name):
    """Compile one variant of demo.c; return the binary path."""
    out = os.path.join(directory, name)
    if not os.path.exists(out):
        subprocess.run([cc, "-g"] + VARIANTS[name] + ["-o", out, DEMO], check=True)
    return out


def build_shared(cc, directory, opt="-O2", dwarf="-gdwarf-5"):
    """libdemo.so and the executable that calls it; return (library, executable)."""
    lib = os.path.join(directory, "libdemo.so")
    exe = os.path.join(directory, "libmain")
    if not os.path.exists(lib):
        subprocess.run([cc, "-g", dwarf, opt, "-fPIC", "-shared", "-o", lib, os.path.join(SOURCES, "libdemo.c")],
                       check=True)
        subprocess.run([cc, "-g", dwarf, opt, "-o", exe, os.path.join(SOURCES, "libmain.c"), "-L", directory,
                        "-ldemo", "-Wl,-rpath," + directory], check=True)
    return lib, exe


def build_split_debug(cc, directory, name="demo_O0"):
    """A stripped copy of a variant plus its only-keep-debug file, linked by .gnu_debuglink.

    Returns (stripped binary, debug file)."""
    full = build(cc, directory, name)
    stripped = os.path.join(directory, name + "_stripped")
    debug = stripped + ".debug"
    if not os.path.exists(stripped):
        subprocess.run(["objcopy", "--only-keep-debug", full, debug], check=True)
        subprocess.run(["objcopy", "--strip-debug", "--add-gnu-debuglink=" + debug, full, stripped], check=True)
    return stripped, debug


def build_extern(cc, directory):
    """Two compile units: the global is defined in one and only declared in the other."""
    out = os.path.join(directory, "extern_demo")
    if not os.path.exists(out):
        subprocess.run([cc, "-g", "-O2", "-o", out, os.path.join(SOURCES, "extern_main.c"),
                        os.path.join(SOURCES, "extern_use.c")], check=True)
    return out


def build_copies(cc, directory, opt):
    """copies.c (issue 14's shapes) at ``opt`` (-O0 / -O2); return the binary path."""
    out = os.path.join(directory, "copies" + opt)
    if not os.path.exists(out):
        subprocess.run([cc, "-g", opt, "-w", "-o", out, os.path.join(SOURCES, "copies.c")], check=True)
    return out


CXX_DEMO = os.path.join(SOURCES, "cxx_demo.cc")


def build_cxx(cxx, directory, opt):
    """cxx_demo.cc at ``opt`` (-O0, -O2), DWARF 5; return the binary path."""
    out = os.path.join(directory, "cxx_demo" + opt)
    if not os.path.exists(out):
        subprocess.run([cxx, "-g", "-gdwarf-5", opt, "-o", out, CXX_DEMO], check=True)
    return out
