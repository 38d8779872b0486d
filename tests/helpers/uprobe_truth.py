"""Runtime truth for probes: what a test program printed against what its probe traced."""

import os
import re

from tests.helpers import resolver_programs as programs

REPORT = programs.marker_line("report") - programs.decl_line("compute")
SCALE_PRINT = programs.marker_line("scale_print") - programs.decl_line("scale")
LIBDEMO = os.path.join(programs.SOURCES, "libdemo.c")
LIB_REPORT = programs.marker_line("lib_report", LIBDEMO) - programs.decl_line("lib_step", LIBDEMO)
PAIR = re.compile(r'(\w+)=("[^"]*"|\S+)')


def _value(text):
    if text.startswith('"'):
        return text.strip('"')
    try:
        return int(text, 0)
    except ValueError:
        return text


def program_records(stdout, kind):
    return [{k: _value(v) for k, v in PAIR.findall(line)} for line in stdout.splitlines()
            if line.startswith(kind + " ")]


def trace_records(text):
    records = []
    for line in text.splitlines():
        if line.startswith("#") or ": (0x" not in line:
            continue
        event = re.search(r"\s(\w+): \(0x", line).group(1)
        fields = line.split(") ", 1)[1] if ") " in line else ""
        record = {k: _value(v) for k, v in PAIR.findall(fields)}
        record["_event"] = event
        records.append(record)
    return records


def assert_matches(traced, printed, key, mapping):
    """Every traced record equals the printed record with the same ``key``."""
    assert traced, "the probe never fired"
    by_key = {p[mapping[key]]: p for p in printed}
    for record in traced:
        truth = by_key[record[key]]
        for field, printed_name in mapping.items():
            assert record[field] == truth[printed_name], (field, record, truth)
