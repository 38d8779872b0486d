# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scope that owns the variables at a probe: the rules of perf that choose it in the chain of
DIEs dwarf/scopes.py finds at an address.

Above scopes.py, functions.py and lines.py: the choice asks which copies are gcc's own body
(functions.is_self_copy) and where a function was declared (lines), while those two walk the
DIE tree with scopes.py.  Every function takes a ``context.DwarfContext`` first.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import functions
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import lines as dwarf_lines
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import names
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import scopes
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import typeinfo as dwarf_types


def _origin_offset_of(die):
    """Offset of the abstract DIE a concrete copy stands for, else the DIE's own."""
    attr = die.attributes.get("DW_AT_abstract_origin")
    return scopes.origin_offset(die.cu, attr) if attr is not None else die.offset


def is_own_body(ctx, chain, index):
    """Whether ``chain[index]`` is gcc's inlined copy of a function inside an out-of-line copy of
    that same function, at its declaration line (no call: the body itself, its variables mostly
    without locations; perf's __die_walk_instances_cb skips these).

    The same shape inside another function (libpython's ``rlock__at_fork_reinit`` folded into
    ``lock__at_fork_reinit``) is a real copy: its variables, with or without locations, are the
    ones at those addresses."""
    die = chain[index]
    if not functions.is_self_copy(ctx, die):
        return False
    for outer in reversed(chain[:index]):
        if outer.tag in scopes.FUNCTION_TAGS:
            return _origin_offset_of(outer) == _origin_offset_of(die)
    return False


def probe_scope(ctx, chain, point, address, scope=None):
    """``chain`` as a ScopeChain whose scope is the DIE that owns the variables at the probe.

    DWARF rule: a variable of an inlined copy is a child of that copy's
    DW_TAG_inlined_subroutine, so the lookup starts there, not at the subprogram the
    copy was inlined into (whose blocks may hold other variables of the same name):

    * ``scope`` given (the copy or function a FUNC probe was placed for): that DIE, added
      at the end when it holds no range (a copy described by its entry pc only);
    * FUNC:N: the innermost copy of FUNC holding the address (the subprogram itself when it
      is FUNC); when none holds it (N past FUNC's end), the innermost function there, as perf;
    * FILE:LINE: the innermost function or copy declared in FILE before LINE, skipping
      inlined calls whose call site is the line itself (the line belongs to the caller).

    gcc's copy of a function inside its own out-of-line copy (is_own_body) never scopes anything."""
    chain = scopes.ScopeChain(chain)
    if not chain:
        return chain
    if scope is not None:
        for index, die in enumerate(chain):
            if die.offset == scope.offset:
                chain.scope = index
                return chain
        if scope.tag == "DW_TAG_inlined_subroutine":
            chain.append(scope)
            chain.scope = len(chain) - 1
            return chain
    if point.function is not None:

        wanted = names.FunctionName(point.function)
        for index in range(len(chain) - 1, -1, -1):
            die = chain[index]
            if die.tag in scopes.FUNCTION_TAGS and not is_own_body(ctx, chain, index) and wanted.matches(
                    names.qualifier_of(die) if wanted.qualified else "", dwarf_types.name_of(die),
                    names.linkage_name_of(die) if wanted.mangled else None):
                chain.scope = index
                return chain
        # perf (find_inner_scope_cb): the line lies outside FUNC (N past its end), in the innermost
        # function there, which owns the variables at that address.
        chain.scope = [index for index, die in enumerate(chain)
                       if die.tag in scopes.FUNCTION_TAGS and not is_own_body(ctx, chain, index)][-1]
        return chain
    for index in range(len(chain) - 1, 0, -1):
        die = chain[index]
        if die.tag not in scopes.FUNCTION_TAGS or is_own_body(ctx, chain, index):
            continue
        call_line = die.attributes.get("DW_AT_call_line")
        if call_line is not None and call_line.value == point.absolute_line and ctx.entry_pc(die) == address:
            continue
        decl_line = dwarf_types.origin_attr(die, "DW_AT_decl_line")[0]
        decl_file = dwarf_lines.decl_file_name(ctx, die)
        if decl_line is None or decl_file is None or decl_line.value > point.absolute_line:
            continue
        if dwarf_lines.file_matcher(point.source)(decl_file):
            chain.scope = index
            break
    return chain


def chain_for(ctx, cu, address, point, scope=None):
    """The ScopeChain for a probe at ``address`` (see probe_scope).

    For an inlined copy the probe was placed for, the blocks between the subprogram and the copy
    are not searched (variables are looked up in the copy, the frame base is the subprogram's):
    [subprogram, copy], without descending through the subprogram's blocks at every copy."""
    if scope is not None and scope.tag == "DW_TAG_inlined_subroutine":
        subprogram = ctx.enclosing_function(cu, scope)
        if subprogram is None or not ctx.die_contains(subprogram, address):
            subprogram = scopes.subprogram_at(ctx, cu, address)
        chain = scopes.ScopeChain([subprogram, scope] if subprogram is not None else [scope])
        chain.scope = len(chain) - 1
        return chain
    # A FUNC probe at an out-of-line copy's entry: that copy is the subprogram (no search for it).
    known = scope if scope is not None and scope.tag == "DW_TAG_subprogram" and ctx.die_contains(scope, address) \
        else None
    return probe_scope(ctx, scopes.scope_chain(ctx, cu, address, known), point, address, scope)
