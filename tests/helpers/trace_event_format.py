"""trace.json checked against the Trace Event Format (the Chromium project's "Trace Event Format" document).

A real consumer would be better: the `perfetto` package on PyPI reads JSON traces
with trace_processor_shell, but it downloads that binary from get.perfetto.dev at
run time, which a test here cannot do.  So the events are validated against the
format's rules for the phases trace.json uses, with jsonschema: the JSON object
form (``traceEvents``, ``displayTimeUnit``), complete events (``X``: ``ts`` and a
non-negative ``dur`` in microseconds), instant events (``i``/``I`` with scope
``g``/``p``/``t``) and metadata events (``M``: process and thread names).
"""

import jsonschema

_IDS = {"pid": {"type": "integer"}, "tid": {"type": "integer"}}
_COMMON = dict(_IDS, name={"type": "string", "minLength": 1}, cat={"type": "string"}, args={"type": "object"},
               ts={"type": "number"})
SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "otherData": {"type": "object"},
        "traceEvents": {"type": "array", "items": {"oneOf": [
            {"type": "object", "required": ["name", "ph", "ts", "dur", "pid", "tid"],
             "properties": dict(_COMMON, ph={"const": "X"}, dur={"type": "number", "minimum": 0})},
            {"type": "object", "required": ["name", "ph", "ts", "pid", "tid"],
             "properties": dict(_COMMON, ph={"enum": ["i", "I"]}, s={"enum": ["g", "p", "t"]})},
            {"type": "object", "required": ["name", "ph", "pid", "args"],
             "properties": dict(_IDS, ph={"const": "M"},
                                name={"enum": ["process_name", "process_labels", "process_sort_index",
                                               "thread_name", "thread_sort_index"]},
                                args={"type": "object", "minProperties": 1})},
        ]}},
    },
}


def problems(data):
    """Every way ``data`` (the parsed trace.json) breaks the format; [] when it is valid."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    found = ["%s: %s" % ("/".join(str(p) for p in error.absolute_path), error.message)
             for error in validator.iter_errors(data)]
    events = data.get("traceEvents") or [] if isinstance(data, dict) else []
    named = {(e.get("pid"), e.get("tid")) for e in events if isinstance(e, dict) and e.get("name") == "thread_name"}
    for index, event in enumerate(events):
        # Each task's events sit on a thread the metadata names (Perfetto shows the name on the track).
        if isinstance(event, dict) and event.get("ph") in ("X", "i", "I") and (event.get("pid"), event.get("tid")) not in named:
            found.append("traceEvents/%d: thread %s of process %s has no thread_name" % (
                index, event.get("tid"), event.get("pid")))
    return found
