"""The one model spec every command reads (nowcast.models.spec): short form, mapping form, checks."""

from __future__ import annotations

import pytest

from nowcast.models.base import ModelArgumentError
from nowcast.models.spec import ModelSpec, ModelSpecError


def test_short_form_and_mapping_form_are_the_same_spec():
    short = ModelSpec.parse("diffusion:sampler=ddim,steps=10,match=none,checkpoint=a/b.pt")
    mapping = ModelSpec.parse({"name": "diffusion", "checkpoint": "a/b.pt",
                               "args": {"sampler": "ddim", "steps": 10, "match": "none"}})
    assert short == mapping
    assert short.args == {"sampler": "ddim", "steps": 10, "match": "none"} and short.checkpoint == "a/b.pt"
    assert ModelSpec.parse(str(short)) == short  # the short form round-trips
    assert ModelSpec.parse(short.to_dict()) == short and ModelSpec.parse(short) is short
    assert ModelSpec.parse("steps") == ModelSpec("steps") and str(ModelSpec("steps")) == "steps"


def test_values_are_read_as_yaml_scalars():
    spec = ModelSpec.parse("x:a=1,b=0.5,c=true,d=null,e=text")
    assert spec.args == {"a": 1, "b": 0.5, "c": True, "d": None, "e": "text"}


@pytest.mark.parametrize("bad, words", [
    ("a b", "expected 'name'"),
    ("steps:ar_order", "'ar_order' is not key=value"),
    ({"args": {}}, "no 'name'"),
    ({"name": "steps", "kwargs": {}}, "unknown key(s) ['kwargs']"),
    ({"name": "steps", "args": [1]}, "args must be a mapping"),
    ({"name": 3}, "name must be a registry name"),
])
def test_a_bad_spec_says_what_is_wrong(bad, words):
    with pytest.raises(ModelSpecError, match="bad model spec") as err:
        ModelSpec.parse(bad)
    assert words in str(err.value)


def test_check_refuses_unknown_names_and_arguments_without_loading():
    assert ModelSpec.parse("steps:ar_order=1").check().name == "steps"
    with pytest.raises(ModelArgumentError, match="unknown forecaster 'nonesuch'"):
        ModelSpec.parse("nonesuch").check()
    with pytest.raises(ModelArgumentError, match="unknown argument 'bogus'"):
        ModelSpec.parse("persistence:bogus=1").check()


def test_load_builds_the_named_forecaster_with_its_args():
    model = ModelSpec.parse({"name": "steps", "args": {"ar_order": 1}}).load()
    assert model.name == "steps" and model.ar_order == 1


def test_a_spec_file_holds_either_form(tmp_path):
    (tmp_path / "mapping.yaml").write_text("name: steps\nargs: {ar_order: 1}\n")
    (tmp_path / "short.yml").write_text("steps:ar_order=1\n")
    assert ModelSpec.parse(str(tmp_path / "mapping.yaml")) == ModelSpec.parse(str(tmp_path / "short.yml"))
    with pytest.raises(ModelSpecError, match="not found"):
        ModelSpec.parse(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    with pytest.raises(ModelSpecError, match="neither a mapping"):
        ModelSpec.parse(str(tmp_path / "list.yaml"))


@pytest.mark.parametrize("args, words", [
    ("steps=0", "steps must be a whole number in 1..1000"),
    ("steps=2000", "steps must be a whole number in 1..1000"),
    ("steps=4.5", "steps must be a whole number"),
    ("match=foo", "match must be 'none' or 'observation'"),
    ("motion_perturbation=-1", "motion_perturbation must be a finite number >= 0"),
    ("sampler=foo", "unknown sampler 'foo'; known: adversarial, ddim"),
    ("sampler=adversarial", "no adversarial network with 4 steps is shipped"),
])
def test_check_refuses_settings_the_shipped_diffusion_model_cannot_run(args, words):
    """Refused with one line before any forecast runs (these used to fail deep in sampling)."""
    with pytest.raises(ModelArgumentError) as err:
        ModelSpec.parse(f"diffusion:{args}").check()
    assert words in str(err.value)
    assert ModelSpec.parse("diffusion:steps=10,sampler=dpmpp_2m").check().name == "diffusion"
