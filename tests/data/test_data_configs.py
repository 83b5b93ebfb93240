"""The committed data configs derived from radar-mix stay radar-mix but for their splits."""

from __future__ import annotations

import yaml

from nowcast.types import repo_root

CONFIGS = repo_root() / "configs/data"


def test_radar_mix_bom_is_radar_mix_with_the_optional_training_event() -> None:
    plain = yaml.safe_load((CONFIGS / "radar-mix.yaml").read_text())
    bom = yaml.safe_load((CONFIGS / "radar-mix-bom.yaml").read_text())
    added = [event for event in bom["splits"]["train"] if event not in plain["splits"]["train"]]
    assert added == [{"store": "bom", "start": "2018-06-16", "end": "2018-06-16"}]
    assert bom["splits"]["train"][:-1] == plain["splits"]["train"]
    assert {**bom, "splits": None} == {**plain, "splits": None}
    assert {k: v for k, v in bom["splits"].items() if k != "train"} == \
        {k: v for k, v in plain["splits"].items() if k != "train"}


def test_the_mch_holdout_is_radar_mix_with_one_training_event_held_out() -> None:
    plain = yaml.safe_load((CONFIGS / "radar-mix.yaml").read_text())
    holdout = yaml.safe_load((CONFIGS / "radar-mix-holdout-mch.yaml").read_text())
    held = [{"store": "mch", "start": "2015-05-15T15:45", "end": "2015-05-15T19:00"}]
    assert holdout["splits"]["val"] == held
    assert holdout["splits"]["train"] == [e for e in plain["splits"]["train"] if e not in held]
    assert holdout["splits"]["test"] == plain["splits"]["test"]
    assert {**holdout, "splits": None} == {**plain, "splits": None}
