"""Subcommands of the ``nowcast`` CLI; each module defines ``HELP`` and ``main(argv)``."""
