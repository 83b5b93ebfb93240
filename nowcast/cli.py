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

import importlib
import logging
import sys

#: exit code of a refused input
EXIT_REFUSED = 2

#: subcommand -> module (in ``nowcast.commands``)
COMMANDS = {
    "ingest": "ingest",
    "forecast": "forecast",
    "train": "train",
    "evaluate": "evaluate",
    "motion": "motion",
    "operate": "operate",
}


def _usage() -> str:
    lines = ["usage: nowcast <command> [options]   (nowcast <command> --help for its options)", "",
             "commands:"]
    for name, module in COMMANDS.items():
        try:
            help_line = importlib.import_module(f"nowcast.commands.{module}").HELP
        except ModuleNotFoundError:
            continue
        lines.append(f"  {name:<10} {help_line}")
    return "\n".join(lines)


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
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nowcast: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_REFUSED
    module = importlib.import_module(f"nowcast.commands.{COMMANDS[name]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
