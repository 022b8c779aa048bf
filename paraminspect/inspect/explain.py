"""``scan --explain``: for each finding, what loading the file would do, and what to do instead.

The scanner knows which globals a pickle names, not what it does with them;
a pickle names a global to call it (REDUCE, NEWOBJ) or to build it, so the
explanation says what importing and calling that name amounts to. Names met
in ordinary training checkpoints (an ``argparse.Namespace`` of hyper-parameters,
``training_args.bin``'s ``TrainingArguments``, numpy arrays in RNG states) are
told apart from names that run commands or code.
"""

from __future__ import annotations

LOAD = "torch.load(weights_only=False)"
INSTEAD_READ = (
    "read it without running anything ('paraminspect tree FILE', 'paraminspect get FILE NAME'),"
    " and load only with torch.load(weights_only=True), which refuses it"
)

# Callables whose call runs a command, code, or touches files and the network.
_RUNS = {
    "os.system": "run a shell command",
    "posix.system": "run a shell command",
    "nt.system": "run a shell command",
    "os.popen": "run a shell command",
    "os.execv": "replace the process with another program",
    "os.execve": "replace the process with another program",
    "os.remove": "delete a file",
    "os.unlink": "delete a file",
    "shutil.rmtree": "delete a directory tree",
    "builtins.eval": "evaluate Python code",
    "builtins.exec": "execute Python code",
    "builtins.compile": "compile Python code (to run it)",
    "builtins.__import__": "import any module",
    "builtins.getattr": "fetch any attribute (a step to call anything)",
    "builtins.open": "open (read or overwrite) a file",
    "importlib.import_module": "import any module",
    "runpy.run_path": "run a Python file",
    "runpy.run_module": "run a Python module",
    "pickle.loads": "unpickle more, unchecked data",
    "marshal.loads": "load compiled code",
    "webbrowser.open": "open a URL",
}
_RUNS_MODULES = {
    "subprocess": "start another program",
    "socket": "open a network connection",
    "ctypes": "call native code",
    "pty": "spawn a shell",
    "code": "run an interactive interpreter",
}
# Names of ordinary training state: harmless objects, still refused by weights_only.
_INERT = {
    "argparse.Namespace": "rebuild an argparse.Namespace: the run's command-line arguments (hyper-parameters)",
    "transformers.training_args.TrainingArguments": (
        "import transformers and rebuild the Trainer's TrainingArguments (what training_args.bin holds)"
    ),
    "numpy.core.multiarray._reconstruct": "rebuild a numpy array (as RNG states and metrics are saved)",
    "numpy._core.multiarray._reconstruct": "rebuild a numpy array (as RNG states and metrics are saved)",
    "numpy.ndarray": "rebuild a numpy array",
    "numpy.dtype": "rebuild a numpy dtype",
    "numpy.core.multiarray.scalar": "rebuild a numpy scalar",
    "numpy._core.multiarray.scalar": "rebuild a numpy scalar",
}
INSTEAD_INERT = (
    "if you trust the file's source, allow just this class for torch.load(weights_only=True)"
    " (torch.serialization.add_safe_globals); otherwise read it with 'paraminspect tree/get FILE'"
)


def explain(kind: str, name: str) -> tuple[str, str]:
    """(what loading would do, what to do instead) for one unsafe reference."""
    if kind != "global":
        return (
            f"{LOAD} would hand persistent id {name!r} to torch's loader, which expects storages only",
            INSTEAD_READ,
        )
    module = name.rpartition(".")[0]
    top = module.partition(".")[0]
    if name in _RUNS:
        return (
            f"{LOAD} would import {module} and call {name}: it can {_RUNS[name]}",
            "do not load it; " + INSTEAD_READ,
        )
    if top in _RUNS_MODULES:
        return (
            f"{LOAD} would import {module} and call {name}: it can {_RUNS_MODULES[top]}",
            "do not load it; " + INSTEAD_READ,
        )
    if name in _INERT:
        return (f"{LOAD} would {_INERT[name]}; that runs no code of the file's choosing", INSTEAD_INERT)
    return (
        f"{LOAD} would import {module} (running its import-time code) and call or build {name}"
        " with arguments the file chooses",
        INSTEAD_READ,
    )


# Patterns aimed at torch's own weights_only loader, by rule id (formats/pickle/scanner.py).
_PATTERNS = {
    "PI004": (
        "torch.load(weights_only=True) before torch 2.10 would write into that object with SETITEM (its"
        " __setitem__), which a torch.save file never does (CVE-2026-24747, a memory corruption fixed in"
        " torch 2.10, whose loader accepts SETITEM only on dict, OrderedDict and Counter)",
        "do not load it with torch older than 2.10; " + INSTEAD_READ,
    ),
    "PI005": (
        "torch.load(weights_only=True) before torch 2.10 would not check the storage against its record"
        " (CVE-2026-24747, a memory corruption fixed in torch 2.10, whose loader refuses a record size that"
        " does not match); torch.save never writes such a file",
        "do not load it with torch older than 2.10; " + INSTEAD_READ,
    ),
    "PI006": (
        f"{LOAD} would unpickle it like any other pickle, while scanners that find pickles by their"
        " leading PROTO byte (0x80) do not see it; torch.save writes protocol 2 unless given"
        " pickle_protocol=0 or 1, and torch's weights_only loader supports only some protocol 0/1 opcodes",
        "treat it as crafted unless you saved it with pickle_protocol=0 or 1, and read it without"
        " running anything ('paraminspect tree FILE', 'paraminspect get FILE NAME')",
    ),
}
NUMPY_DATA_LOAD = (
    "torch.load(weights_only=True) refuses numpy globals by default; transformers' Trainer and accelerate"
    " allow exactly numpy's _reconstruct, ndarray and dtype (torch.serialization.safe_globals) to load RNG"
    " states, and building them runs no code of the file's choosing"
)
NUMPY_DATA_INSTEAD = (
    "nothing to fix: read it with 'paraminspect tree/get FILE'; to load it with torch, allow-list those"
    " numpy names with torch.serialization.safe_globals as the Trainer does"
)


def explain_reference(kind: str, name: str, status: str, rule: str | None = None) -> tuple[str, str]:
    """(what loading would do, what to do instead) for a reference of any kind and status."""
    if kind == "pattern" and rule in _PATTERNS:
        return _PATTERNS[rule]
    if status == "numpy-data":
        return (f"{NUMPY_DATA_LOAD} ({name} builds array data)", NUMPY_DATA_INSTEAD)
    return explain(kind, name)


def explain_unfinished(message: str) -> tuple[str, str]:
    """For a scan that stopped: nothing is known about the rest of the file."""
    return (
        f"the scan stopped ({message}), so what {LOAD} would do with the rest of the file is unknown",
        "treat it as unsafe: do not load it; get a complete copy from a trusted source",
    )
