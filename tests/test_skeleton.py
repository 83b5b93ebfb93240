import pytest
import torch

from nowcast.data.transforms import TRANSFORMS, build_transform, pixel_scale
from nowcast.registry import Registry, UnknownNameError


def test_registry_unknown_name_lists_known():
    reg = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(UnknownNameError, match="known: a"):
        reg.get("b")


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transform_roundtrip_on_store_values(name):
    t = build_transform(name)
    rain = torch.tensor([0.0, 0.1, 0.37, 1.0, 4.2, 33.0, 180.0])
    back = t.inverse(t.forward(rain))
    torch.testing.assert_close(back, rain, rtol=1e-4, atol=1e-6)
    assert build_transform(t.to_dict()) == t


def test_pixel_scale_closed_form():
    # 1 mm/h -> 10 log10(200) = 23.01 dBZ -> 0.3835; R=0 -> 0; NaN stays NaN
    p = pixel_scale(torch.tensor([1.0, 0.0, float("nan")]))
    assert abs(float(p[0]) - 10 * torch.log10(torch.tensor(200.0)).item() / 60) < 1e-6
    assert p[1] == 0 and torch.isnan(p[2])
