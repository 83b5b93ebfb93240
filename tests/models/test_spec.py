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


@pytest.mark.parametrize("spec, expected", [
    ("steps:ar_order=0", "steps(ar_order=0): ar_order must be a whole number >= 1, got 0"),
    ("steps:ar_order=1.5", "ar_order must be a whole number >= 1, got 1.5"),
    ("steps:n_cascade_levels=2", "n_cascade_levels must be a whole number >= 3, got 2"),
    ("extrapolation:interp_order=7",
     "extrapolation(interp_order=7): interp_order must be a whole number in 0..5, got 7"),
    ("extrapolation:interp_order=-1", "interp_order must be a whole number in 0..5, got -1"),
    ("extrapolation:interp_order=true", "interp_order must be a whole number in 0..5, got True"),
])
def test_check_refuses_model_arguments_pysteps_would_fail_on(spec, expected):
    """pysteps refused them only in the first forecast, with a traceback; every command checks a spec."""
    with pytest.raises(ModelArgumentError) as err:
        ModelSpec.parse(spec).check()
    assert expected in str(err.value)


def test_the_bounds_of_model_arguments_are_taken():
    for spec in ("steps:ar_order=1,n_cascade_levels=3", "extrapolation:interp_order=0",
                 "extrapolation:interp_order=5"):
        ModelSpec.parse(spec).check()
