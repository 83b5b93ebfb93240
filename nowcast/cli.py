"""The ``nowcast`` command: one entry point, one module per subcommand.

Each module in ``nowcast.commands`` defines ``HELP`` (one line) and ``main(argv) -> int``
and builds its own jsonargparse parser, so ``--config configs/x.yaml`` plus
``--some.option value`` overrides work the same in every subcommand. Only the chosen
subcommand's module is imported, which keeps ``nowcast --help`` fast.

Exit codes: 0 done; 2 refused input (a bad option, file, checkpoint, store or model argument,
said in one line on stderr by :func:`fail`, normally before anything is computed); a
subcommand may use 1 for a run that went ahead but did not all succeed (``evaluate``).
"""

from __future__ import annotations

import ast
import errno
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

#: exit code of a refused input
EXIT_REFUSED = 2
#: exit code of a write that failed (a full disk, a folder not writable)
EXIT_WRITE_FAILED = 1
#: exit code of a command stopped by Ctrl-C (SIGINT), as the shell's 128 + 2
EXIT_INTERRUPTED = 130
#: errno values of an OSError that a command reports as a failed write, in one line
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

#: subcommand -> module (in ``nowcast.commands``)
COMMANDS = {
    "ingest": "ingest",
    "forecast": "forecast",
    "train": "train",
    "evaluate": "evaluate",
    "motion": "motion",
    "operate": "operate",
    "models": "models",
}


def command_parser(prog: str, description: str | None, **kwargs: Any):
    """The jsonargparse parser of a subcommand, keeping its description's line breaks (the examples in
    the module docstrings stay one per line)."""
    import argparse

    from jsonargparse import ArgumentParser, DefaultHelpFormatter

    class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        pass

    return ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter, **kwargs)


def help_line(module: str) -> str:
    """The ``HELP`` string of ``nowcast.commands.<module>``, read from its source without importing
    it (the commands import torch, xarray or lightning: ``nowcast --help`` must not wait for them)."""
    spec = importlib.util.find_spec(f"nowcast.commands.{module}")
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HELP" for t in node.targets):
            return str(ast.literal_eval(node.value))
    return ""


def _usage() -> str:
    lines = ["usage: nowcast <command> [options]   (nowcast <command> --help for its options)",
             "       nowcast --version", "", "commands:"]
    lines += [f"  {name:<10} {help_line(module)}" for name, module in COMMANDS.items()]
    return "\n".join(lines)


def quiet_pysteps() -> None:
    """Stop pysteps printing "Pysteps configuration file found at ..." on stdout at its import: point
    ``PYSTEPSRC`` at a copy of pysteps' own default configuration with ``silent_import`` on (kept in
    the nowcast cache folder). A ``PYSTEPSRC`` the user set, or a ``pystepsrc`` in the working
    folder, is left alone."""
    if "PYSTEPSRC" in os.environ or Path("pystepsrc").exists():
        return
    spec = importlib.util.find_spec("pysteps")
    default = Path(spec.origin).parent / "pystepsrc" if spec and spec.origin else None
    if default is None or not default.is_file():
        return
    text = default.read_text().replace('"silent_import": false', '"silent_import": true')
    cache = Path(os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast")
    quiet = cache / "pystepsrc"
    try:
        if not quiet.is_file() or quiet.read_text() != text:
            from nowcast.fsutil import atomic_write

            cache.mkdir(parents=True, exist_ok=True)
            atomic_write(quiet, text)
    except OSError:  # a read-only home: the message stays, nothing else changes
        return
    os.environ["PYSTEPSRC"] = str(quiet)


def fail(command: str, problem: BaseException | str, code: int = EXIT_REFUSED) -> int:
    """Say on one stderr line what went wrong and how to fix it (the message's job), for
    ``nowcast <command>``; returns ``code`` (default :data:`EXIT_REFUSED`) for the subcommand to return."""
    text = problem.args[0] if type(problem) is KeyError and problem.args else str(problem)  # no quotes
    print(f"nowcast {command}: error: {' '.join(str(text).split())}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from nowcast import __version__

        print(f"nowcast {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nowcast: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_REFUSED
    quiet_pysteps()
    module = importlib.import_module(f"nowcast.commands.{COMMANDS[name]}")
    from nowcast.fsutil import WriteError

    try:
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (a store's interrupted write is
        # rolled back by its next writer or reader; a file appears whole under its name or not at all)
        print(f"nowcast {name}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except WriteError as err:  # what each writer says: the file and why
        return fail(name, err, EXIT_WRITE_FAILED)
    except OSError as err:  # any other write on a full disk: one line, not a traceback
        if err.errno not in WRITE_FAILURES:
            raise
        where = f" {err.filename}" if err.filename else ""
        return fail(name, f"cannot write{where}: {err.strerror} (disk full or not writable?)",
                    EXIT_WRITE_FAILED)
    except (RuntimeError, ValueError) as err:  # a corrupt chunk of a store read: bad input, said so
        from nowcast.data.store import damaged_store_message, undecodable_chunk

        if not undecodable_chunk(err):
            raise
        return fail(name, damaged_store_message(err))


if __name__ == "__main__":
    sys.exit(main())
