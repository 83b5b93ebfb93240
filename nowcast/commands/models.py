"""``nowcast models``: what can be named with ``--model`` and ``sampler=``, and the shipped checkpoints.

Lists every registered forecaster and sampler with the first line of its description, and each
shipped checkpoint with its model card's one-liner (``nowcast/checkpoints/cards.yaml``) and, for
a model below pysteps extrapolation, the measured reason (full cards:
``nowcast/checkpoints/README.md``).
"""

from __future__ import annotations

import inspect

from nowcast.cli import command_parser

HELP = "list the registered forecasters and samplers and the shipped checkpoints with their model cards"


def first_line(obj: object) -> str:
    """``obj.summary``, else the first paragraph of its docstring, on one line."""
    doc = getattr(obj, "summary", "") or inspect.getdoc(obj) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def main(argv: list[str] | None = None) -> int:
    command_parser("nowcast models", __doc__).parse_args(argv)
    from nowcast.models import FORECASTERS, import_all
    from nowcast.models.cards import CHECKPOINT_DIR, card_of, shipped_cards
    from nowcast.models.spec import short_form
    from nowcast.samplers import SAMPLERS

    import_all()
    print("forecasters (a model spec: NAME, NAME:key=value,... or a YAML file; nowcast/models/spec.py):")
    for name in FORECASTERS.names():
        cls = FORECASTERS.get(name)
        kind = "learned, shipped checkpoint" if hasattr(cls, "from_checkpoint") else "no weights"
        print(f"  {name:<14} {first_line(cls)} [{kind}]")
    print("\nsamplers of the diffusion model (diffusion:sampler=NAME,steps=N):")
    for name in SAMPLERS.names():
        print(f"  {name:<14} {first_line(SAMPLERS.get(name))}")
    print(f"\nshipped checkpoints ({CHECKPOINT_DIR}; model cards: README.md there):")
    for file, card in shipped_cards().items():
        path = CHECKPOINT_DIR / file
        state = "" if card_of(path) else "  [the file differs from its card: card not applied]"
        print(f"  {file:<14} {card.summary}{state}")
        if card.forecast_args:
            shown = short_form(file.removesuffix(".pt"), card.forecast_args)
            print(f"  {'':<14} forecasts with the settings its card scored: {shown}")
        if card.below_extrapolation:
            print(f"  {'':<14} NOT FOR REAL FORECASTS: {card.below_extrapolation}")
    return 0
