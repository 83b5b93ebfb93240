"""Every shipped evaluation config names its models in a form the runner accepts."""

from __future__ import annotations

import pytest
import yaml

from nowcast.evaluation.specs import parse_specs
from nowcast.types import repo_root

CONFIGS = sorted((repo_root() / "configs/evaluate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_evaluation_config_parses_its_models(path):
    models = yaml.safe_load(path.read_text()).get("models") or []
    for spec in parse_specs(models):
        assert spec.label and isinstance(spec.args, dict)
        assert isinstance(spec.args.get("sampler_args", {}), dict)
