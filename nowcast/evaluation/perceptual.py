"""LPIPS and FID per lead time on the pixel scale, from offline weights only.

Weights come from a folder (``weights_dir`` argument, else :func:`nowcast.types.weights_dir`,
i.e. ``$NOWCAST_WEIGHTS`` or ``<shared>/weights``):

- ``lpips_alexnet_features.pth``: the AlexNet backbone of LPIPS-alex; the LPIPS linear layers
  are the ones torchmetrics ships (``torchmetrics/functional/image/lpips_models/alex.pth``).
- ``fid_inception_v3_features.pth``: the FID InceptionV3 (torch-fidelity layout, needs the
  ``torch-fidelity`` package).

A missing file raises :class:`MissingWeightsError` naming it; every tensor of both networks is
loaded strictly from those files, so neither metric can run on random weights, and nothing is
ever downloaded.

Frames: the pixel scale p in [0, 1] (masked pixels 0 in both forecast and observation) is
replicated to 3 channels. LPIPS gets it as [0, 1] images (mapped to [-1, 1] and LPIPS' own
scaling inside); FID gets uint8 images round(p*255) truncated as torchmetrics does, which
torch-fidelity resizes to 299 x 299. LPIPS is the mean over frames (windows) per lead time. FID
compares the Inception features of all forecast frames with those of all observed frames pooled
over windows and lead times (``all_leads``) and, with ``per_lead=True``, per lead time too
(costs 64 MB of state per lead time; FID from few frames is biased upwards, so compare models
only on the same windows).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torchmetrics import Metric

from nowcast.data.transforms import pixel_scale
from nowcast.evaluation.continuous import _PooledMean
from nowcast.evaluation.inputs import check_fields
from nowcast.types import weights_dir as default_weights_dir

LPIPS_FILE = "lpips_alexnet_features.pth"
FID_FILE = "fid_inception_v3_features.pth"
FID_FEATURES = 2048
_CHUNK = 32  # frames per network call, to bound memory


class MissingWeightsError(FileNotFoundError):
    """An offline weight file for LPIPS or FID is not there."""


def weight_file(name: str, weights_dir: str | Path | None = None) -> Path:
    """Path of weight file ``name``; raises MissingWeightsError naming it if absent."""
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / name
    if not path.is_file():
        raise MissingWeightsError(
            f"offline weights {path} not found: set NOWCAST_WEIGHTS (or weights_dir) to the folder "
            f"holding {name}, or skip perceptual metrics (ScoreSuite(perceptual=False))"
        )
    return path


def perceptual_weights_missing(weights_dir: str | Path | None = None) -> list[str]:
    """Messages for each missing LPIPS/FID weight file or package (empty if all are there)."""
    missing = []
    for name in (LPIPS_FILE, FID_FILE):
        try:
            weight_file(name, weights_dir)
        except MissingWeightsError as err:
            missing.append(str(err))
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        missing.append("FID needs the torch-fidelity package (pip install torch-fidelity)")
    return missing


def build_lpips_alex(weights_dir: str | Path | None = None) -> torch.nn.Module:
    """LPIPS-alex network (eval mode, frozen) with backbone and linear layers from local files.

    ``net(img0, img1, normalize=True)`` on (N, 3, H, W) images in [0, 1] -> (N, 1, 1, 1).
    """
    from torchmetrics.functional.image import lpips as tm_lpips

    features = torch.load(weight_file(LPIPS_FILE, weights_dir), map_location="cpu", weights_only=True)
    # pnet_rand: torchvision builds an untrained AlexNet (no download); every backbone tensor is
    # then overwritten strictly below. pretrained=False: the linear layers are loaded strictly too.
    net = tm_lpips._NoTrainLpips(net="alex", pretrained=False, pnet_rand=True)
    # file keys are torchvision's ("0.weight"); LPIPS nests them in slices ("slice1.0.weight")
    names = {name.split(".", 1)[1]: name for name, _ in net.net.named_parameters()}
    if set(features) != set(names):
        raise ValueError(f"{LPIPS_FILE} does not hold exactly the AlexNet feature tensors LPIPS needs "
                         f"(expected {sorted(names)}, got {sorted(features)})")
    net.net.load_state_dict({names[k]: v for k, v in features.items()}, strict=True)
    lin_path = Path(inspect.getfile(tm_lpips)).parent / "lpips_models" / "alex.pth"
    if not lin_path.is_file():
        raise MissingWeightsError(f"LPIPS linear layers {lin_path} (shipped with torchmetrics) not found")
    lins = torch.load(lin_path, map_location="cpu", weights_only=True)
    net.lins.load_state_dict({k.removeprefix("lin"): v for k, v in lins.items()}, strict=True)
    return net.eval()


def build_inception(weights_dir: str | Path | None = None) -> torch.nn.Module:
    """FID InceptionV3 (2048 pool features, eval mode) from the local file; uint8 (N,3,H,W) -> (N,2048)."""
    path = weight_file(FID_FILE, weights_dir)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        net = NoTrainInceptionV3("inception-v3-compat", [str(FID_FEATURES)], str(path))
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("FID needs the torch-fidelity package: pip install torch-fidelity") from err
    return net.requires_grad_(False)


def _frames(field: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) mm/h (masked pixels 0) -> (B*T, 3, H, W) pixel-scale images in [0, 1]."""
    b, t, h, w = field.shape
    return pixel_scale(field).reshape(b * t, 1, h, w).expand(-1, 3, -1, -1)


class LPIPS(_PooledMean):
    """``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T,) mean LPIPS-alex distance (0 = identical)."""

    def __init__(self, n_lead: int, weights_dir: str | Path | None = None) -> None:
        super().__init__(n_lead)
        self.net = build_lpips_alex(weights_dir)

    @torch.no_grad()
    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, _ = check_fields(forecast, target, mask, self.n_lead)
        img_f, img_o = _frames(fc), _frames(ob)
        dist = torch.cat([
            self.net(img_f[i:i + _CHUNK], img_o[i:i + _CHUNK], normalize=True).reshape(-1)
            for i in range(0, img_f.shape[0], _CHUNK)
        ])
        b, t = fc.shape[:2]
        self.window_sums = (dist.double().reshape(b, t), torch.ones(b, t, dtype=torch.float64))
        self.total += self.window_sums[0].sum(dim=0)
        self.count += b


def frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)).

    tr (cov1 cov2)^(1/2) = sum of sqrt(eigenvalues of the symmetric PSD cov1^(1/2) cov2 cov1^(1/2)),
    computed with two symmetric eigendecompositions (rounding negatives to 0).
    """
    lam, vec = torch.linalg.eigh(cov1)
    root1 = (vec * lam.clamp(min=0).sqrt()) @ vec.T
    root_trace = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    return (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * root_trace


class FID(Metric):
    """Frechet Inception distance of forecast frames to observed frames.

    ``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> dict ``all_leads`` (scalar) and, with ``per_lead``, ``per_lead`` (T,).
    Needs at least 2 frames per group.
    """

    full_state_update = False

    def __init__(self, n_lead: int, weights_dir: str | Path | None = None, per_lead: bool = False) -> None:
        super().__init__()
        self.n_lead = int(n_lead)
        self.per_lead = bool(per_lead)
        self.inception = build_inception(weights_dir)
        groups = 1 + (self.n_lead if self.per_lead else 0)  # group 0: all lead times
        shapes = {"sum": (groups, FID_FEATURES), "cov": (groups, FID_FEATURES, FID_FEATURES), "n": (groups,)}
        for side in ("fake", "real"):
            for stat, shape in shapes.items():
                zeros = torch.zeros(shape, dtype=torch.float64)
                self.add_state(f"{side}_{stat}", default=zeros, dist_reduce_fx="sum")

    @torch.no_grad()
    def _features(self, field: torch.Tensor) -> torch.Tensor:
        imgs = (_frames(field) * 255).byte()
        feats = [self.inception(imgs[i:i + _CHUNK]) for i in range(0, imgs.shape[0], _CHUNK)]
        return torch.cat(feats).double()

    def _add(self, side: str, group: int, feats: torch.Tensor) -> None:
        getattr(self, f"{side}_sum")[group] += feats.sum(dim=0)
        getattr(self, f"{side}_cov")[group] += feats.T @ feats
        getattr(self, f"{side}_n")[group] += feats.shape[0]

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, _ = check_fields(forecast, target, mask, self.n_lead)
        b, t = fc.shape[:2]
        for side, field in (("fake", fc), ("real", ob)):
            feats = self._features(field)
            self._add(side, 0, feats)
            if self.per_lead:
                per = feats.reshape(b, t, -1)
                for lead in range(t):
                    self._add(side, 1 + lead, per[:, lead])

    def _group(self, g: int) -> torch.Tensor:
        stats = []
        for side in ("fake", "real"):
            n = getattr(self, f"{side}_n")[g]
            if n < 2:
                return torch.tensor(float("nan"), dtype=torch.float64)
            mu = getattr(self, f"{side}_sum")[g] / n
            cov = (getattr(self, f"{side}_cov")[g] - n * torch.outer(mu, mu)) / (n - 1)
            stats += [mu, cov]
        return frechet_distance(*stats)

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"all_leads": self._group(0)}
        if self.per_lead:
            out["per_lead"] = torch.stack([self._group(1 + lead) for lead in range(self.n_lead)])
        return out
