"""The ``onespike`` command group: global options (``--debug``, ``-q``, ``--threads``), the
error mapping (one ``error:`` line, :mod:`onespike.apps.cli.errors`) and the commands
(``demo``, ``convert``, ``evaluate``, ``info``, ``plot``, ``robustness``, ``bench``,
``export``), each in a
module of its own that takes its shared options from :mod:`onespike.apps.cli.options` and
resolves them with :mod:`onespike.apps.cli.resolve`.

Every user error ends with one line ``error: …`` on stderr and a non-zero exit code (2 for
command-line usage errors, 1 otherwise); ``--debug`` (or ``ONESPIKE_DEBUG=1``) shows the
traceback instead. The mapping lives in :meth:`OnespikeGroup.main`.

Every command runs with one torch thread unless ``onespike --threads N`` (or
``ONESPIKE_THREADS``) says otherwise: see :data:`DEFAULT_THREADS`.

Other programs add subcommands with ``main.add_command(...)``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from onespike.apps.cli.bench import bench
from onespike.apps.cli.convert import convert
from onespike.apps.cli.demo import demo
from onespike.apps.cli.errors import describe_error, one_line
from onespike.apps.cli.evaluate import evaluate
from onespike.apps.cli.export import export
from onespike.apps.cli.info import info
from onespike.apps.cli.plot import plot
from onespike.apps.cli.robustness import robustness

__all__ = ["DEFAULT_THREADS", "OnespikeGroup", "main"]

#: Torch threads of every command unless ``--threads`` / ``ONESPIKE_THREADS`` say otherwise.
DEFAULT_THREADS = 1


def _debug(args: list[str] | None) -> bool:
    argv = sys.argv[1:] if args is None else list(args)
    return os.environ.get("ONESPIKE_DEBUG", "") not in ("", "0") or "--debug" in argv


class OnespikeGroup(click.Group):
    """Click group that turns every exception into one ``error:`` line."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        arglist = None if args is None else list(args)
        try:
            rv = super().main(arglist, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except click.ClickException as exc:
            if _debug(arglist):
                raise
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            click.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):
            click.echo("error: aborted", err=True)
            code = 130
        except Exception as exc:
            if _debug(arglist):
                raise
            click.echo(f"error: {describe_error(exc)}", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _version() -> str:
    from onespike._version import __version__

    return __version__


@click.group(cls=OnespikeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="onespike")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors "
              "(also: ONESPIKE_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they are shown only "
              "when stderr is a terminal anyway).")
@click.option("--threads", type=click.IntRange(min=0), default=DEFAULT_THREADS,
              show_default=True, envvar="ONESPIKE_THREADS", metavar="N",
              help="CPU threads torch may use (also: ONESPIKE_THREADS). The default is 1, not "
              "one per core: on a loaded 2-core machine two threads made convert 10x slower "
              "than one, as the threads wait for each other at every parallel step. Raise it "
              "on an idle multi-core machine; 0 leaves torch's own default.")
def main(debug: bool, quiet: bool, threads: int) -> None:
    """Convert trained ReLU networks into exact single-spike networks and check them.

    \b
    onespike demo                         digits CNN: ReLU vs spiking, raster plot
    onespike convert --model M --calibration DATA --out net.onespike
    onespike evaluate --snn net.onespike --dataset digits
    onespike info net.onespike
    onespike --threads 2 convert …        more CPU threads (default 1)
    """
    ctx = click.get_current_context()
    _set_threads(ctx, threads)
    _init_distributed(ctx)


#: Commands that spread over the processes of a ``torchrun`` launch.
DISTRIBUTED_COMMANDS = ("evaluate", "convert")


def _init_distributed(ctx: click.Context) -> None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group (gloo on CPU, NCCL on
    CUDA; :func:`onespike.distributed.init_from_env`), left when the command ends; every rank
    but 0 prints nothing on stdout (errors still go to stderr). Other commands than
    :data:`DISTRIBUTED_COMMANDS` are refused: they would only repeat the same work."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    sub = ctx.invoked_subcommand
    if sub not in DISTRIBUTED_COMMANDS:
        raise click.UsageError(f"'onespike {sub}' runs in one process; under torchrun only "
                               f"{' and '.join(DISTRIBUTED_COMMANDS)} spread over processes")
    import torch.distributed as dist

    from onespike.distributed import init_from_env, world

    if init_from_env():
        ctx.call_on_close(dist.destroy_process_group)
    if world()[0] != 0:
        quiet = open(os.devnull, "w")
        old = sys.stdout
        sys.stdout = quiet

        def restore() -> None:
            sys.stdout = old
            quiet.close()

        ctx.call_on_close(restore)


def _set_threads(ctx: click.Context, threads: int) -> None:
    """``torch.set_num_threads(threads)`` for the command (restored when it ends); 0 keeps
    torch's default."""
    if threads <= 0:
        return
    import torch  # already imported with onespike

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    ctx.call_on_close(lambda: torch.set_num_threads(old))


for _command in (demo, convert, evaluate, info, plot, robustness, bench, export):
    main.add_command(_command)
