"""The ``nowcast`` command: one entry point, one module per subcommand.

Each module in ``nowcast.commands`` defines ``HELP`` (one line) and ``main(argv) -> int``
and builds its own jsonargparse parser, so ``--config configs/x.yaml`` plus
``--some.option value`` overrides work the same in every subcommand. Only the chosen
subcommand's module is imported, which keeps ``nowcast --help`` fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

#: subcommand -> module (in ``nowcast.commands``)
COMMANDS = {
    "ingest": "ingest",
    "forecast": "forecast",
    "train": "train",
    "evaluate": "evaluate",
    "motion": "motion",
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nowcast: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"nowcast.commands.{COMMANDS[name]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
