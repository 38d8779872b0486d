# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The debuginfod options shared by the modules that read DWARF (uprobe, probe_info).
    DOCUMENTATION = r"""
options:
  debuginfod_urls:
    description:
      - debuginfod servers asked for the DWARF by the binary's build-id (C(GET /buildid/ID/debuginfo)) when neither
        the binary, C(/usr/lib/debug) nor O(debuginfo) has it, in order.
      - Default is the space separated C(DEBUGINFOD_URLS) of the module's environment, as for gdb and perf. An
        empty list counts as not given.
      - Downloads are checked (their build-id must be the binary's) and kept in C(DEBUGINFOD_CACHE_PATH), default
        C(~/.cache/debuginfod_client/ID/debuginfo), where gdb and perf find them too. Only Python's standard library.
    type: list
    elements: str
  debuginfod_timeout:
    description:
      - Seconds one server may take for its whole answer. Default C(DEBUGINFOD_TIMEOUT), else 30.
    type: float
"""
