"""A run builds the click command of the command it runs only (cli.dispatch.app_for), and the
whole app whenever argv leaves any doubt about which command that is; the console script keeps
the garbage collector off start-up's objects (cli.run)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from paraminspect.cli.app import app
from paraminspect.cli.dispatch import GLOBAL_FLAGS, GLOBAL_VALUE_OPTIONS, app_for, invoked_command, register_commands
from tests.conftest import SAMPLES, run_cli

register_commands([])


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["shapes", "x.gguf"], "shapes"),
        (["--max-entries", "5", "shapes", "x"], "shapes"),
        (["--max-entries=5", "-v", "--no-progress", "get", "x", "y"], "get"),
        (["--max-depth", "diff", "tree", "x"], "tree"),  # an option's value is never the command
        (["set-meta", "x", "k=v"], "set-meta"),
        (["--help", "shapes"], None),  # the app's help lists every command
        (["-h", "shapes"], None),
        (["--version", "shapes"], None),
        (["-vh", "shapes"], None),  # combined short flags: not parsed here
        (["--", "shapes"], None),
        (["shape", "x", "get"], None),  # a typo: "did you mean" looks at every command
        (["--verbose=1", "shapes"], None),
        (["--max-entries"], None),
        ([], None),
    ],
)
def test_the_command_a_run_names(argv: list[str], name: str | None) -> None:
    assert invoked_command(argv) == name
    view = app_for(argv)
    if name is None:
        assert view is app
    else:
        assert [info.name for info in view.registered_commands] == [name]
        assert view.registered_callback is app.registered_callback


def test_the_global_options_known_are_those_of_the_app() -> None:
    group = typer.main.get_command(app)
    value_options, flags = set(), set()
    for param in group.params:
        if not isinstance(param, typer.core.TyperOption) or param.is_eager:
            continue  # --version and --help end the run: the whole app is built for them
        (flags if param.is_flag else value_options).update(param.opts + param.secondary_opts)
    assert (value_options, flags) == (set(GLOBAL_VALUE_OPTIONS), set(GLOBAL_FLAGS))


def test_the_view_leaves_the_app_whole() -> None:
    before = [info.name for info in app.registered_commands]
    app_for(["shapes", "x"])
    assert [info.name for info in app.registered_commands] == before
    assert len(before) > 1


def test_output_and_errors_through_the_view_are_those_of_the_whole_app() -> None:
    path = str(SAMPLES / "mlp.safetensors")
    shown = run_cli("--max-entries", "100", "shapes", path)
    assert shown.code == 0 and "total" in shown.out
    see = " (see 'paraminspect --help')\n"
    bad = run_cli("shapes", path, "--no-such-option")
    assert (bad.code, bad.err) == (2, "paraminspect: error: No such option: --no-such-option" + see)
    typo = run_cli("shape", path, "get")
    assert typo.err == "paraminspect: error: No such command 'shape'. Did you mean 'shapes'?" + see


_GC_PROBE = """
import gc
import paraminspect.cli.dispatch as dispatch
def probe(argv=None):
    print(gc.isenabled(), gc.get_freeze_count() > 1000)
    return 0
dispatch.main = probe
from paraminspect.cli import run
run()
"""


def test_the_console_script_runs_a_command_with_its_start_up_frozen_and_collection_on() -> None:
    """Start-up's objects are frozen (never walked by a collection again), and the command's
    own garbage is still collected: a long diff's cycles do not pile up."""
    proc = subprocess.run([sys.executable, "-c", _GC_PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True True\n", "")


def test_a_command_builds_its_checkpoint_with_collection_paused_then_frozen() -> None:
    """The entries of a checkpoint live until exit: they are built with the collector off
    (it would walk 10^5 of them for nothing) and frozen after, and collection is on again,
    also when the open fails."""
    import gc

    from paraminspect.cli.app import read_checkpoint
    from paraminspect.errors import CheckpointError

    seen: list[bool] = []
    real = gc.disable

    def spy() -> None:
        seen.append(gc.isenabled())
        real()

    gc.enable()
    before = gc.get_freeze_count()
    try:
        gc.disable = spy  # type: ignore[assignment]
        ckpt = read_checkpoint(SAMPLES / "mlp.safetensors")
        assert seen == [True] and gc.isenabled()
        assert gc.get_freeze_count() > before  # the entries just built are out of later collections
        with pytest.raises(CheckpointError):
            read_checkpoint(SAMPLES / "make_samples.py")  # not a checkpoint
        assert gc.isenabled()
    finally:
        gc.disable = real  # type: ignore[assignment]
        gc.unfreeze()
    assert ckpt.tensors
