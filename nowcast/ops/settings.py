"""The settings of one operational job (``configs/operate.yaml``); no heavy imports, so the
command refuses a bad configuration at once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nowcast.types import check_counts, check_seed

if TYPE_CHECKING:
    from nowcast.models.spec import ModelSpec


@dataclass
class OperateSettings:
    """Everything one operational job needs (``configs/operate.yaml`` documents each key).

    Paths: ``incoming`` raw radar files arrive here; ``store`` the operational rain store;
    ``output`` forecast files; ``state`` lock, cycle log and status; ``quarantine`` bad input
    files; ``processed`` ingested raw files (None: delete them once stored).
    Times are in minutes (``interval_minutes``), seconds (the rest) or hours (retention).
    """

    incoming: Path
    store: Path
    output: Path
    state: Path
    quarantine: Path
    processed: Path | None = None
    source: str | None = None
    coarsen: int = 1
    max_rain_rate: float = 500.0
    models: list[str | dict[str, Any]] = field(default_factory=lambda: ["extrapolation", "persistence"])
    members: int = 8
    n_out: int = 12
    crop: str | None = None
    product: str = "nowcast"
    format: str = "nc"
    quicklook: str = "none"
    seed: int = 0
    interval_minutes: float = 5.0
    offset_seconds: float = 60.0
    grace_seconds: float = 120.0
    poll_seconds: float = 5.0
    settle_seconds: float = 5.0
    latency_budget_seconds: float = 240.0
    retention_hours: float = 24.0

    def __post_init__(self) -> None:
        for key in ("incoming", "store", "output", "state", "quarantine"):
            setattr(self, key, Path(getattr(self, key)))
        self.processed = Path(self.processed) if self.processed else None
        if not self.models:
            raise ValueError("models: give at least one model (the fallback chain, first choice first)")
        names = [str(spec) for spec in self.chain]  # a bad spec is refused here, at once
        if len(set(names)) < len(names):
            raise ValueError(f"models: the chain names a model twice: {names}")
        if self.format not in ("nc", "zarr"):
            raise ValueError(f"format must be nc or zarr, got {self.format!r}")
        if self.interval_minutes <= 0 or self.latency_budget_seconds <= 0:
            raise ValueError("interval_minutes and latency_budget_seconds must be > 0")
        check_counts("", members=self.members, n_out=self.n_out, coarsen=self.coarsen)
        check_counts("", minimum=0, grace_seconds=self.grace_seconds, poll_seconds=self.poll_seconds,
                     settle_seconds=self.settle_seconds)
        check_seed(self.seed, "seed")

    @property
    def chain(self) -> list[ModelSpec]:
        """``models`` read as model specs (:class:`~nowcast.models.spec.ModelSpecError` for a bad one)."""
        from nowcast.models.spec import ModelSpec

        return [ModelSpec.parse(m) for m in self.models]

    @property
    def interval(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.interval_minutes)

    @property
    def offset(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.offset_seconds)
