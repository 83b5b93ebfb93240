"""The command line's front door: `nowcast --help`, each `--help`, `--version`, `nowcast models`,
and no pysteps banner on stdout. Help must not import torch (speed is a benchmark, not a test:
what is tested is that the heavy modules stay unimported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nowcast
from nowcast.cli import COMMANDS, help_line, main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

PROBE = """
import sys
from nowcast.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "xarray", "lightning", "pysteps") if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["forecast", "--help"], ["evaluate", "--help"],
                                  ["train", "--help"],
                                  ["ingest", "--help"], ["motion", "--help"], ["operate", "--help"],
                                  ["models", "--help"]])
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=ENV,
                         timeout=120).stdout
    assert out.strip().splitlines()[-1] == "HEAVY", out[-2000:]


def test_usage_lists_every_command_with_its_help_line(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name, module in COMMANDS.items():
        assert help_line(module) and f"  {name:<10} {help_line(module)}" in text


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nowcast {nowcast.__version__}"


def test_models_lists_registered_names_and_shipped_checkpoints(capsys) -> None:
    from nowcast.models import FORECASTERS, import_all
    from nowcast.samplers import SAMPLERS

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    import_all()
    for name in [*FORECASTERS.names(), *SAMPLERS.names()]:
        assert f"  {name} " in text
    for file in ("diffusion.pt", "convlstm.pt", "simvp.pt", "cgan.pt"):
        assert f"  {file} " in text
    assert "NOT FOR REAL FORECASTS" in text


def test_no_pysteps_banner_on_stdout(tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "from nowcast.cli import quiet_pysteps; quiet_pysteps(); "
                            "import pysteps"], capture_output=True, text=True,
                           env={**ENV, "NOWCAST_CACHE": str(tmp_path)}, timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert "Pysteps configuration file found" not in probe.stdout


def test_options_are_spelled_with_dashes_and_the_old_underscores_still_work() -> None:
    from nowcast.commands.ingest import build_parser

    for spelling in ("--zr-a", "--zr_a"):
        cfg = build_parser().parse_args(["f.h5", "--store", "s.zarr", spelling, "300"])
        assert cfg.zr_a == 300.0
    for module in COMMANDS.values():
        source = (REPO / "nowcast" / "commands" / f"{module}.py").read_text()
        firsts = [line.split('"')[1] for line in source.splitlines() if 'add_argument("--' in line]
        assert not [o for o in firsts if "_" in o], f"{module}: options spelled with underscores first"
