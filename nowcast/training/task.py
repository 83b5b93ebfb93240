"""The shared base of every learned forecaster's training: one validation metric for all.

Subclasses (diffusion, ConvLSTM, SimVP, cGAN, the adversarial sampler stage) implement

- ``training_loss(batch) -> Tensor`` (or override ``training_step`` for GAN-style manual
  optimisation), and
- ``to_forecaster() -> Forecaster``: the current weights behind the Forecaster contract,
- ``checkpoint_payload() -> dict``: what :func:`nowcast.models.checkpoint.save_checkpoint`
  stores (hparams, state_dict, transform, window, grid),

and may override ``forecast_batch(batch, batch_idx)`` when validation needs more of the
batch than ``past`` (e.g. the diffusion model's precomputed motion).

Validation is identical for every model: the forecaster predicts ``n_out`` frames from
``past`` in mm/h and :class:`CategoricalScores` accumulates contingency tables over the
whole validation split; ``val/csi_1`` is CSI at 1 mm/h averaged over lead times (the
monitored quantity), ``val/mse`` the masked MSE in mm/h of the ensemble mean.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch

from nowcast.data.datamodule import PIXEL_SIZE_TOLERANCE
from nowcast.evaluation.categorical import CategoricalScores
from nowcast.models.base import Forecaster, refuse_unknown_arguments
from nowcast.models.checkpoint import (
    CheckpointMismatchError,
    check_compatible,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from nowcast.models.spec import ModelSpec
from nowcast.types import FUTURE, MASK, MOTION, PAST, GridSpec, WindowSpec, check_counts

#: checkpoint ``hparams`` keys that may differ when fine-tuning (provenance, not architecture)
PROVENANCE_KEYS = ("base_checkpoint",)
#: the time step (min) and pixel size (m) a task assumes until it is bound to its data (a task
#: built in Python without a data module); a fit takes the data module's (:meth:`ForecastTask.setup`)
ASSUMED_TIMESTEP_MINUTES = 5.0
ASSUMED_PIXEL_SIZE_M = 2000.0
#: what the data may fix: the time step and the pixel size
DATA_QUANTITIES = ("timestep_minutes", "pixel_size_m")

T = TypeVar("T")


def trained_model(model: ModelSpec | Mapping[str, Any] | str, task: str, names: Collection[str]) -> ModelSpec:
    """The spec a task trains (a :class:`ModelSpec`, or its mapping or short form when a task is
    built in Python), refusing a model the task cannot train (``ValueError`` naming both)."""
    spec = ModelSpec.parse(model)
    if spec.name not in names:
        raise ValueError(f"{task} trains {' or '.join(sorted(names))}, not {spec.name!r}")
    return spec


def typed_args(spec: ModelSpec, settings: type[T]) -> T:
    """``spec.args`` as the dataclass ``settings``, refusing a key it does not have (``ValueError``
    naming it, the closest known one and every known one)."""
    refuse_unknown_arguments(settings, spec.args, what=f"model {spec.name!r}", noun="setting")
    return settings(**spec.args)


def setting_differences(ckpt: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Setting -> (the checkpoint's value, the task's) for each network setting (``hparams``, less
    :data:`PROVENANCE_KEYS`) and the frame count (``n_out``) in which two checkpoint payloads differ."""
    built, given = ckpt["hparams"], expected["hparams"]
    keys = (set(built) | set(given)) - set(PROVENANCE_KEYS)
    differs = {k: (built.get(k), given.get(k)) for k in keys if built.get(k) != given.get(k)}
    frames = (ckpt["window"]["n_out"], expected["window"]["n_out"])
    if frames[0] != frames[1]:
        differs.setdefault("n_out", frames)
    return differs


def declared_data(n_in: int, n_out: int, timestep_minutes: float | None,
                  pixel_size_m: float | None) -> tuple[WindowSpec, GridSpec, dict[str, str]]:
    """What a task whose arguments are ``timestep_minutes`` and ``pixel_size_m`` is built for
    (:meth:`ForecastTask.expect_data`): the window, the grid and the quantities its arguments fix
    (None: the data module's, assumed :data:`ASSUMED_TIMESTEP_MINUTES` / :data:`ASSUMED_PIXEL_SIZE_M`
    until the task is bound to it)."""
    given = {"timestep_minutes": timestep_minutes, "pixel_size_m": pixel_size_m}
    step = ASSUMED_TIMESTEP_MINUTES if timestep_minutes is None else timestep_minutes
    window = WindowSpec(n_in=n_in, n_out=n_out, timestep_minutes=step)
    grid = GridSpec(pixel_size_m=ASSUMED_PIXEL_SIZE_M if pixel_size_m is None else pixel_size_m)
    return window, grid, {k: f"its {k} argument" for k, v in given.items() if v is not None}


def data_problems(window: WindowSpec, grid: GridSpec, fixed: Collection[str], data: WindowSpec,
                  data_grid: GridSpec) -> list[str]:
    """Why a model built for ``window`` and ``grid`` cannot train on ``data`` and ``data_grid``:
    another number of past frames, fewer future frames than it predicts, or another time step or
    pixel size among the ``fixed`` quantities (:data:`DATA_QUANTITIES`)."""
    problems = []
    if data.n_in != window.n_in:
        problems.append(f"the model takes {window.n_in} past frames, the data give {data.n_in} (data n_in)")
    if data.n_out < window.n_out:
        problems.append(f"the model predicts {window.n_out} frames, the data's windows have {data.n_out} "
                        "(data n_out)")
    if "timestep_minutes" in fixed and abs(data.timestep_minutes - window.timestep_minutes) > 1e-6:
        problems.append(f"built for a {window.timestep_minutes:g}-min time step, "
                        f"the data have {data.timestep_minutes:g} min")
    if "pixel_size_m" in fixed and (abs(data_grid.pixel_size_m - grid.pixel_size_m)
                                    > PIXEL_SIZE_TOLERANCE * grid.pixel_size_m):
        problems.append(f"built for {grid.pixel_size_m:g} m pixels, "
                        f"the data have {data_grid.pixel_size_m:g} m")
    return problems


class ForecastTask(L.LightningModule):
    """Args: ``n_out`` frames predicted; ``val_members`` per validation window; ``lr`` and
    ``weight_decay`` of the optimiser; ``init_from``: a nowcast checkpoint of the same model
    and setup whose weights start the fit (fine-tuning, e.g. continuing a shipped model on
    another machine) or are scored by ``nowcast train validate`` (the training-time metric of
    a shipped file); ``--ckpt_path`` resumption still wins over it.

    What a task is built for (``window``: frames and time step; ``grid``: pixel size; what its
    exports record) comes from its data: ``setup`` binds it to the data module's stores
    (:meth:`bind_to_data`), so a model trained on a 1 km store is a 1 km model, and a checkpoint
    it starts from must have been built for them. Quantities fixed before (``fixed_by``: an
    explicit argument, or the adversarial stage's base checkpoint) are what the data must have.

    Subclasses take what they train as ``model``, a :class:`~nowcast.models.spec.ModelSpec`
    (``{name, args, checkpoint}``, the spec ``nowcast forecast`` and ``evaluate`` read): ``args``
    are what its network is built with, ``checkpoint`` is their ``init_from``, so
    ``--model.init_args.model.args.<setting>`` and ``--model.init_args.model.checkpoint F`` work
    on the command line."""

    def __init__(self, n_out: int = 12, val_members: int = 1, lr: float = 2e-4,
                 weight_decay: float = 0.0, init_from: str | None = None) -> None:
        super().__init__()
        check_counts(type(self).__name__, n_out=n_out, val_members=val_members)
        self.n_out = n_out
        self.init_from = init_from
        self._init_record: dict[str, Any] | None = None
        self.val_members = val_members
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_scores = CategoricalScores(n_lead=n_out, thresholds=(1.0,))
        self.register_buffer("_val_se", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("_val_n", torch.zeros((), dtype=torch.float64), persistent=False)

    # --- to implement -------------------------------------------------------------------
    @abstractmethod
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def to_forecaster(self) -> Forecaster: ...

    @abstractmethod
    def checkpoint_payload(self) -> dict[str, Any]: ...

    def init_targets(self) -> dict[str, list[torch.nn.Module]]:
        """Checkpoint ``state_dict`` name -> the modules whose weights it initialises."""
        raise NotImplementedError(f"{type(self).__name__} cannot start from a checkpoint (init_from)")

    # --- shared -------------------------------------------------------------------------
    def save_settings(self, spec: ModelSpec) -> None:
        """Lightning's ``hparams`` (saved in its checkpoints): the calling subclass's ``__init__``
        arguments, with the model spec as a plain mapping."""
        self.save_hyperparameters(ignore=["model"], frame=inspect.currentframe().f_back)
        self.hparams["model"] = spec.to_dict()

    def expect_data(self, window: WindowSpec, grid: GridSpec, fixed_by: Mapping[str, str]) -> None:
        """Set what the task is built for until :meth:`bind_to_data`: ``window`` and ``grid``, of
        which the quantities in ``fixed_by`` (:data:`DATA_QUANTITIES` -> who fixed them) are what
        the data must have; the others are the data's."""
        self.window, self.grid, self.fixed_by = window, grid, dict(fixed_by)

    def bind_to_data(self, data: WindowSpec, data_grid: GridSpec) -> None:
        """Build the task for the data served as ``data`` and ``data_grid``: take their time step
        and pixel size (what exports record and a checkpoint to start from must have been built
        for), after refusing data the task cannot train on (``ValueError`` naming each problem)."""
        problems = data_problems(self.window, self.grid, self.fixed_by, data, data_grid)
        if problems:
            by = "; ".join(dict.fromkeys(self.fixed_by.values()))
            raise ValueError(f"{type(self).__name__} cannot train on this data: {'; '.join(problems)}"
                             + (f" (fixed by {by})" if by else ""))
        if "timestep_minutes" not in self.fixed_by:
            self.window = replace(self.window, timestep_minutes=data.timestep_minutes)
        if "pixel_size_m" not in self.fixed_by:
            self.grid = replace(self.grid, pixel_size_m=data_grid.pixel_size_m)

    def setup(self, stage: str) -> None:
        """Bind to the trainer's data module (one that says what it serves: ``served()``, see
        :meth:`nowcast.data.datamodule.NowcastDataModule.served`), then load ``init_from``: before
        Lightning restores a ``--ckpt_path``, so a resumed run keeps its own weights."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if callable(getattr(datamodule, "served", None)):
            self.bind_to_data(*datamodule.served())
        if stage in ("fit", "validate") and self.init_from:
            self.load_init_weights(self.init_from)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning's training state records the data it was trained for."""
        checkpoint["nowcast_data"] = {"window": self.window.to_dict(), "grid": self.grid.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume training state of other data (:class:`CheckpointMismatchError`)."""
        saved = checkpoint.get("nowcast_data")
        if saved is None:  # states saved before it was recorded are taken as they are
            return
        try:
            check_compatible(saved, self.window, self.grid)
        except CheckpointMismatchError as err:
            where = getattr(self._trainer, "ckpt_path", None) or "the training state"
            raise CheckpointMismatchError(f"{where}: {err}") from err

    def load_init_weights(self, path: str | Path) -> None:
        """Copy the weights of ``path`` into this task, refusing a checkpoint built for another
        model, network size, window, grid or transform (:class:`CheckpointMismatchError`)."""
        expected = self.checkpoint_payload()
        ckpt = load_checkpoint(path, forecaster=expected["forecaster"])
        check_compatible(ckpt, WindowSpec(**expected["window"]), GridSpec(**expected["grid"]),
                         expected["transform"])
        differs = setting_differences(ckpt, expected)
        if differs:
            raise CheckpointMismatchError(
                f"{path} was built with other {sorted(differs)}: "
                + "; ".join(f"{k} {built!r} in the checkpoint, {given!r} in this config"
                            for k, (built, given) in sorted(differs.items())))
        targets = self.init_targets()
        missing = sorted(set(targets) - set(ckpt["state_dict"]))
        if missing:
            raise CheckpointMismatchError(f"{path} holds no weights for {missing}")
        for name, modules in targets.items():
            for module in modules:
                module.load_state_dict(ckpt["state_dict"][name])
        parent = ckpt.get("training") or {}
        # the parent's whole record (device, steps, wall time, its own init_from): a continued
        # file then carries the training budget of every stage that led to it
        self._init_record = {"path": str(path), "sha256": file_sha256(path),
                             "global_step": parent.get("global_step"),
                             "metrics": ckpt.get("metrics", {}), "training": parent}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[MASK].shape[0])
        return loss

    def forecast_batch(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Validation forecast (B, M, T_out, H, W) mm/h; seeded per batch so epochs compare.
        The batch's motion (motion cache; the GPU machine has no pysteps) goes to models that advect."""
        gen = torch.Generator(device=self.device).manual_seed(batch_idx)
        return self.to_forecaster().forecast(batch[PAST], self.n_out, self.val_members, gen,
                                             motion=batch.get(MOTION))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mean = self.forecast_batch(batch, batch_idx).mean(dim=1)
        target, mask = batch[FUTURE][:, : self.n_out], batch[MASK]
        self.val_scores.update(mean, target, mask)
        m = mask[:, None].expand_as(target)
        self._val_se += ((mean - target) ** 2)[m].double().sum()
        self._val_n += m.sum().double()

    def on_validation_epoch_end(self) -> None:
        csi = self.val_scores.compute()["csi"][:, 0]
        self.log("val/csi_1", torch.nan_to_num(csi, nan=0.0).mean(), prog_bar=True, sync_dist=True)
        se = self.all_gather(self._val_se).sum()
        n = self.all_gather(self._val_n).sum()
        # already gathered over ranks: sync_dist only averages identical values
        self.log("val/mse", se / n.clamp(min=1), sync_dist=True)
        self.val_scores.reset()
        self._val_se.zero_()
        self._val_n.zero_()

    def validation_metrics(self) -> dict[str, float]:
        """The ``val/`` metrics of the latest validation (empty before any, or without a trainer),
        recorded in every exported checkpoint."""
        trainer = self._trainer
        return {k: float(v) for k, v in (trainer.callback_metrics.items() if trainer else [])
                if k.startswith("val/")}

    def data_description(self) -> dict[str, Any]:
        """What the model was trained on, for checkpoints: the data module's init arguments."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return {}
        return {k: v for k, v in dict(getattr(datamodule, "hparams", {})).items()
                if isinstance(v, str | int | float | bool | list | dict | type(None))}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def export(self, path: str | Path, weights_dtype: str = "float32", **extra: Any) -> Path:
        """Write a shippable nowcast checkpoint (not a Lightning one) of the current weights.

        ``weights_dtype="float16"`` halves the file; weights are cast back to the module's
        dtype when loaded (``load_state_dict`` copies with conversion).
        """
        payload = {**self.checkpoint_payload(), **extra}
        if self._init_record is not None:  # what this fit continued from
            payload["training"] = {**payload.get("training", {}), "init_from": self._init_record}
        dtype = getattr(torch, weights_dtype)
        payload["state_dict"] = {
            name: {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
            for name, sd in payload["state_dict"].items()
        }
        payload["weights_dtype"] = weights_dtype
        return save_checkpoint(path, payload)
