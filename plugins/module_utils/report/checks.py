# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks on the fleet report: JMESPath expressions evaluated on each host's entry.

A check is ``{"name", "value", "max"/"min"}`` (compares a number) or ``{"name", "expr"}`` (must be
true), evaluated on each host's entry of report.json (``hosts.<name>``).  A check whose value is
null for a host (no such data) is skipped for that host, not passed.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.document import ReportError, number

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:  # reported by the module with a clear message
    jmespath = None
    HAS_JMESPATH = False


def compile_check(check):
    if not isinstance(check, dict) or not check.get("name"):
        raise ReportError("each check needs a 'name' (got %r)" % (check,))
    if not HAS_JMESPATH:
        raise ReportError("checks need the Python library jmespath on the controller (pip install jmespath)")
    if "expr" not in check and "value" not in check:
        raise ReportError("check %r needs 'value' (with 'max' or 'min') or 'expr'" % check["name"])
    if "value" in check and "max" not in check and "min" not in check:
        raise ReportError("check %r has 'value' but neither 'max' nor 'min'" % check["name"])
    for key in ("max", "min"):
        if key in check:
            try:
                check[key] = float(check[key])
            except (TypeError, ValueError):
                raise ReportError("check %r: %s=%r is not a number" % (check["name"], key, check[key]))
    compiled = {}
    for key in ("value", "expr"):
        if key in check:
            try:
                compiled[key] = jmespath.compile(check[key])
            except jmespath.exceptions.JMESPathError as exc:
                raise ReportError("check %r: %s %r is not a valid JMESPath expression: %s"
                                  % (check["name"], key, check[key], exc))
    return compiled


def search(expression, data, what):
    if not HAS_JMESPATH:
        raise ReportError("%s needs the Python library jmespath on the controller" % what)
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise ReportError("%s: JMESPath %r failed: %s" % (what, expression, exc))


def evaluate_checks(report, checks, skip=()):
    """One result per host per check: status passed / failed / skipped.

    Hosts in ``skip`` (those that gave no result) get none: the report names them as down instead.
    """
    results = []
    compiled = [(check, compile_check(check)) for check in checks]
    for name in sorted(report["hosts"]):
        if name in skip:
            continue
        entry = report["hosts"][name]
        for check, exprs in compiled:
            result = {"host": name, "check": check["name"], "description": check.get("description", "")}
            try:
                if "value" in exprs:
                    value = exprs["value"].search(entry)
                    result["value"] = value
                    if value is None:
                        result.update(status="skipped", message="no data for %s on %s" % (check["value"], name))
                    elif number(value) is None:
                        result.update(status="failed", message="%s is %r, not a number" % (check["value"], value))
                    else:
                        limits = []
                        ok = True
                        if "max" in check:
                            limits.append("<= %s" % check["max"])
                            ok = ok and value <= check["max"]
                        if "min" in check:
                            limits.append(">= %s" % check["min"])
                            ok = ok and value >= check["min"]
                        result["limit"] = " and ".join(limits)
                        result["status"] = "passed" if ok else "failed"
                        result["message"] = "%s: %s = %s (must be %s)" % (
                            name, check["name"], value, result["limit"])
                if "expr" in exprs and result.get("status") != "failed":
                    verdict = exprs["expr"].search(entry)
                    if verdict is None and "value" not in exprs:
                        result.update(status="skipped", message="no data for %s on %s" % (check["expr"], name))
                    elif "value" not in exprs or result.get("status") == "passed":
                        result["status"] = "passed" if verdict else "failed"
                        result["message"] = "%s: %s is %s" % (name, check["expr"], "true" if verdict else "false")
            except jmespath.exceptions.JMESPathError as exc:
                result.update(status="failed", message="%s: evaluating %s failed: %s" % (name, check["name"], exc))
            results.append(result)
    return results
