"""Static analysis of a pickle: every global and persistent id it references.

Nothing is unpickled. ``pickletools.genops`` walks the opcodes and a small
symbolic stack follows just enough values (strings, memo slots, short tuples)
to name what STACK_GLOBAL builds and what kind of persistent id BINPERSID
receives. Each reference is classified against the unpickler's allow-list.
"""

from __future__ import annotations

import copyreg
import io
import pickletools
import warnings
from dataclasses import dataclass
from typing import Any

from paraminspect import limits as _limits
from paraminspect.errors import CheckpointError, LimitExceeded
from paraminspect.formats.pickle.guard import too_many_opcodes, walk
from paraminspect.formats.pickle.numpydata import NUMPY_GLOBALS
from paraminspect.formats.pickle.unpickler import SAFE_GLOBALS, canonical

ALLOWED = "allowed"  # on paraminspect's allow-list: decoded by an inert stand-in
TORCH_SAFE = "torch-safe"  # not decoded (shown as a placeholder) but torch's weights_only allows it
UNSAFE = "unsafe"  # anything else: a real unpickler would import and possibly call it
# numpy arrays, dtypes and scalars: decoded by paraminspect as inert data. torch.load(weights_only=True)
# refuses them by default; transformers' Trainer and accelerate allow-list them to load RNG states.
NUMPY_DATA = "numpy-data"

# Stable rule ids (output/sarif.py) of the patterns that exploit torch's own weights_only loader.
RULE_SETITEM = "PI004"  # SETITEM/SETITEMS on an object that is not a dict
RULE_STORAGE_SIZE = "PI005"  # a storage whose declared size disagrees with its record (scan.py checks it)
RULE_NO_PROTO = "PI006"  # a protocol 0/1 pickle: no PROTO opcode in front

# Globals torch.load(weights_only=True) allows by default that paraminspect does
# not decode but shows as inert placeholders: tensor layouts it cannot read
# (sparse, quantized, nested, meta, tensor subclasses) and their helpers. They
# build data, never run user code, so they do not make a file unsafe. torch's
# ``builtins.bytearray`` is deliberately NOT here: bytearray(N) allocates N bytes.
_TORCH_SAFE = {
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch.serialization._get_layout",
    "torch.per_tensor_affine",
    "torch.per_tensor_symmetric",
    "torch.per_channel_affine",
    "torch.per_channel_symmetric",
    "torch.per_channel_affine_float_qparams",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.storage.TypedStorage",
    "collections.Counter",
    *(f"torch.{kind}{n}" for kind in ("int", "uint") for n in range(1, 8)),
    *(f"torch.bits{n}" for n in ("1x8", "2x4", "4x2", "8", "16")),
}
# Legacy tensor classes (torch.FloatTensor, torch.cuda.HalfTensor, torch.sparse.IntTensor...).
_TORCH_TENSOR_MODULES = {"torch", "torch.cuda", "torch.sparse", "torch.cuda.sparse"}

_STRING_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_EXT_OPS = {"EXT1", "EXT2", "EXT4"}


def classify(qualname: str) -> str:
    """ALLOWED, TORCH_SAFE or UNSAFE for a global's dotted name."""
    module, _, name = qualname.rpartition(".")
    if canonical(module, name) in NUMPY_GLOBALS:
        return NUMPY_DATA
    if canonical(module, name) in SAFE_GLOBALS:
        return ALLOWED
    if qualname in _TORCH_SAFE:
        return TORCH_SAFE
    if module in _TORCH_TENSOR_MODULES and name.endswith(("Tensor", "Storage")) and name[:1].isupper():
        return TORCH_SAFE
    return UNSAFE


@dataclass(frozen=True)
class Reference:
    """One global or persistent id a pickle names, where, and whether it is allowed."""

    kind: str  # "global", "persistent-id", or "pattern" (an opcode pattern aimed at torch's loader)
    name: str  # "os.system", "torch._utils._rebuild_tensor_v2"; for a persistent id its kind ("storage")
    opcode: str  # GLOBAL, STACK_GLOBAL, INST, EXT1/2/4, BINPERSID, PERSID
    position: int  # byte offset of the opcode inside the pickle
    status: str  # ALLOWED, TORCH_SAFE, NUMPY_DATA or UNSAFE
    rule: str | None = None  # a pattern's rule id (RULE_*)


@dataclass(frozen=True, slots=True)
class StorageClaim:
    """A storage persistent id ``('storage', class, key, location, numel)``: what it declares."""

    key: str
    storage_class: str  # "torch.FloatStorage", "torch.storage.UntypedStorage"
    numel: int  # elements (bytes for UntypedStorage)
    position: int  # the BINPERSID opcode


class _Mark:
    """The MARK opcode's entry on the symbolic stack."""


class _Global:
    """A global pushed on the symbolic stack (its value is never looked up)."""

    __slots__ = ("name", "status")

    def __init__(self, name: str, status: str) -> None:
        self.name, self.status = name, status


class _Built:
    """An object whose kind the analysis knows (to tell a dict from what SETITEM must not touch)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what  # "a dict", "a list", "the result of torch._utils._rebuild_tensor_v2"


_MARK = _Mark()
_KEPT_IN_TUPLES = (str, int, _Global)  # a tuple, not ``str | int | ...``: built once, not per item
_UNKNOWN = object()  # any value the analysis does not follow
_COMPUTED = _Global("<computed name>", UNSAFE)
_DICT = _Built("a dict")
_BUILT = {"EMPTY_LIST": _Built("a list"), "LIST": _Built("a list"), "EMPTY_SET": _Built("a set")}
_BUILT.update({"FROZENSET": _Built("a frozenset"), "EMPTY_DICT": _DICT, "DICT": _DICT})
_STORAGE = _Built("a storage")
# What torch's weights_only loader lets SETITEM write into (torch 2.10 and later check it).
_DICT_CLASSES = {"builtins.dict", "collections.OrderedDict", "collections.Counter"}
# Results of unknown kind: copyreg._reconstructor builds whatever class it is given (a dict subclass
# in protocol 0/1 pickles), _rebuild_from_type_v2 a tensor subclass.
_OPEN_RESULTS = {"copyreg._reconstructor", "torch._tensor._rebuild_from_type_v2"}


def scan_pickle(
    data: bytes,
    *,
    start: int = 0,
    persistent_kinds: frozenset[str] = frozenset(),
    storages: list[StorageClaim] | None = None,
) -> tuple[list[Reference], int]:
    """References in the pickle starting at ``start``, and the offset just past its STOP.

    ``persistent_kinds`` are the persistent-id kinds the format expects (torch:
    ``storage``); others are reported UNSAFE. Each storage persistent id is appended
    to ``storages`` (if given), for the caller to hold to the file's records.
    Patterns aimed at torch's own loader are references of kind ``pattern``.
    Malformed opcodes or a stack that could not unpickle raise :class:`CheckpointError`.
    """
    _within_opcode_limit(data, start)
    stream = io.BytesIO(data)
    stream.seek(start)
    refs: list[Reference] = []
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    end = start

    def pop(position: int) -> Any:
        if not stack or stack[-1] is _MARK:
            raise CheckpointError(f"malformed pickle: stack underflow at byte {position}")
        return stack.pop()

    def pop_mark(position: int) -> list[Any]:
        items: list[Any] = []
        while stack and stack[-1] is not _MARK:
            items.append(stack.pop())
        if not stack:
            raise CheckpointError(f"malformed pickle: no MARK before byte {position}")
        stack.pop()
        items.reverse()
        return items

    distinct: set[str] = set()
    max_globals = _limits.current().max_globals

    def add_global(qualname: str, opcode: str, position: int) -> None:
        distinct.add(qualname)
        if len(distinct) > max_globals:  # as the reader refuses them (unpickler.find_class)
            raise LimitExceeded(
                f"pickle names more than {max_globals:,} distinct globals (use --max-globals to raise it)"
            )
        status = classify(qualname)
        refs.append(Reference("global", qualname, opcode, position, status))
        stack.append(_Global(qualname, status))

    def set_item(opcode: str, position: int) -> None:
        if not stack or stack[-1] is _MARK:
            raise CheckpointError(f"malformed pickle: stack underflow at byte {position}")
        what = _not_a_dict(stack[-1])
        if what is not None:
            refs.append(Reference("pattern", f"{opcode} on {what}", opcode, position, UNSAFE, RULE_SETITEM))

    results: dict[str, _Built] = {}

    def built(callable_: Any) -> Any:
        """What calling (REDUCE, NEWOBJ) a global builds, when it is one torch would call."""
        if not isinstance(callable_, _Global) or callable_.status == UNSAFE or callable_.name in _OPEN_RESULTS:
            return _UNKNOWN
        if callable_.name in _DICT_CLASSES:
            return _DICT
        found = results.get(callable_.name)
        if found is None:
            found = results[callable_.name] = _Built(f"the result of {callable_.name}")
        return found

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # STRING args with bad escapes
            left = _limits.current().max_pickle_opcodes
            for op, arg, pos in pickletools.genops(stream):
                left -= 1
                if left < 0:
                    raise too_many_opcodes()
                position = pos if pos is not None else 0
                name = op.name
                end = stream.tell()
                if position == start and name != "PROTO":
                    what = "protocol 0/1 pickle (no PROTO opcode in front)"
                    refs.append(Reference("pattern", what, name, position, UNSAFE, RULE_NO_PROTO))
                if name in _STRING_OPS:
                    stack.append(arg)
                elif name in _PUT_OPS or name == "MEMOIZE":
                    if name != "MEMOIZE" and not 0 <= int(arg or 0) <= len(data):  # as guard.py bounds memo indexes
                        raise CheckpointError(f"malformed pickle: memo slot {arg!r} at byte {position} is out of range")
                    if not stack or stack[-1] is _MARK:
                        raise CheckpointError(f"malformed pickle: nothing to memoize at byte {position}")
                    memo[len(memo) if name == "MEMOIZE" else int(arg or 0)] = stack[-1]
                elif name in _GET_OPS:
                    if arg not in memo:
                        raise CheckpointError(
                            f"malformed pickle: memo slot {arg} read before it is written (byte {position})"
                        )
                    stack.append(memo[arg])
                elif name == "DUP":
                    stack.append(stack[-1] if stack else pop(position))
                elif name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    if name == "INST":
                        pop_mark(position)
                    add_global(".".join(canonical(module, attr)), name, position)
                elif name == "STACK_GLOBAL":
                    attr, module = pop(position), pop(position)
                    if isinstance(module, str) and isinstance(attr, str):
                        add_global(".".join(canonical(module, attr)), name, position)
                    else:  # a name computed at load time: cannot be checked, so never allowed
                        refs.append(Reference("global", "<computed name>", name, position, UNSAFE))
                        stack.append(_COMPUTED)
                elif name in _EXT_OPS:
                    known = copyreg._inverted_registry.get(arg)  # type: ignore[attr-defined]
                    if known:
                        add_global(".".join(canonical(*known)), name, position)
                    else:
                        refs.append(Reference("global", f"<extension code {arg}>", name, position, UNSAFE))
                        stack.append(_COMPUTED)
                elif name in ("BINPERSID", "PERSID"):
                    pid = pop(position) if name == "BINPERSID" else arg
                    kind = _persistent_kind(pid)
                    status = ALLOWED if kind in persistent_kinds else UNSAFE
                    refs.append(Reference("persistent-id", kind, name, position, status))
                    claim = _storage_claim(pid, position)
                    if storages is not None and claim is not None:
                        storages.append(claim)
                    stack.append(_STORAGE if claim is not None else _UNKNOWN)
                elif name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"):
                    if name == "TUPLE":
                        items = pop_mark(position)
                    else:
                        items = [pop(position) for _ in range(len(op.stack_before))][::-1]
                    # Keep tuples one level deep: enough for a persistent id, no deep structures.
                    stack.append(tuple(i if isinstance(i, _KEPT_IN_TUPLES) else _UNKNOWN for i in items))
                elif name in ("BININT", "BININT1", "BININT2", "INT", "LONG1", "LONG4", "LONG"):
                    stack.append(arg)
                elif name in _BUILT:
                    if name in ("DICT", "LIST", "FROZENSET"):
                        pop_mark(position)
                    stack.append(_BUILT[name])
                elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                    for _ in range(2 if name == "NEWOBJ_EX" else 1):
                        pop(position)  # the arguments (and NEWOBJ_EX's keyword arguments)
                    stack.append(built(pop(position)))
                elif name == "BUILD":
                    pop(position)  # the state; the object stays what it was
                    if not stack or stack[-1] is _MARK:
                        raise CheckpointError(f"malformed pickle: stack underflow at byte {position}")
                elif name == "SETITEM":
                    pop(position), pop(position)
                    set_item(name, position)
                elif name == "SETITEMS":
                    pop_mark(position)
                    set_item(name, position)
                else:
                    _generic(op, stack, pop, pop_mark, position)
                if name == "STOP":
                    break
    except CheckpointError:
        raise
    except (ValueError, EOFError, KeyError, IndexError, OverflowError, MemoryError) as exc:
        raise CheckpointError(f"malformed pickle data ({exc})") from None
    return refs, end


def _within_opcode_limit(data: bytes, start: int) -> None:
    """Refuse a pickle over ``--max-pickle-opcodes`` with the guard's cheap walk
    (3x faster than genops) before the analysis decodes anything."""
    try:
        for _ in walk(data, start):
            pass
    except LimitExceeded:
        raise
    except CheckpointError:
        pass  # malformed: the analysis below reports it in its own words


def _generic(op: pickletools.OpcodeInfo, stack: list[Any], pop: Any, pop_mark: Any, position: int) -> None:
    """Apply an opcode's documented stack effect, pushing values we do not follow."""
    before = op.stack_before
    below_mark = len(before)
    if pickletools.markobject in before:  # e.g. APPENDS: [list, mark, slice]; OBJ: [mark, class, slice]
        below_mark = before.index(pickletools.markobject)
        pop_mark(position)
    for _ in range(below_mark):
        pop(position)
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _UNKNOWN)


def _not_a_dict(target: Any) -> str | None:
    """What SETITEM writes into when it is known not to be a dict (None: a dict, or unknown).

    Only objects torch itself would build count: the result of an unsafe global is
    already a finding (and may well be a dict subclass, as Lightning's AttributeDict).
    """
    if isinstance(target, _Built):
        return None if target is _DICT else target.what
    if isinstance(target, _Global):
        return None if target.status == UNSAFE else f"the global {target.name}"
    if isinstance(target, tuple):
        return "a tuple"
    if isinstance(target, str):
        return "a string"
    if isinstance(target, int):
        return "an integer"
    return None


def _storage_claim(pid: Any, position: int) -> StorageClaim | None:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        return None
    _, storage_class, key, _, numel = pid
    if not isinstance(storage_class, _Global) or not isinstance(key, str) or type(numel) is not int:
        return None
    return StorageClaim(key, storage_class.name, numel, position)


def _persistent_kind(pid: Any) -> str:
    if isinstance(pid, tuple) and pid and isinstance(pid[0], str):
        return pid[0][:60]
    if isinstance(pid, str):
        return f"<string {pid[:40]!r}>"
    return "<not a tuple>"
