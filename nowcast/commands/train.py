"""``nowcast train``: Lightning's CLI over any :class:`ForecastTask` and the radar data module.

    nowcast train fit --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml
                      [--trainer.max_steps 2000] [--ckpt_path last]

(Later arguments win: the data file first, then the training config's ``data:`` overrides.)

The model is any subclass of ForecastTask chosen by ``model.class_path`` (diffusion, ConvLSTM,
SimVP, cGAN, ...); the data are :class:`nowcast.data.datamodule.NowcastDataModule`, whose typed
``__init__`` is the schema of ``data``. Scaling out (DDP over GPUs and nodes), precision,
gradient clipping and checkpointing are the trainer's options, set in the YAML.

Refused input (a bad option, store, split or checkpoint to start from, data the model does not fit)
is said in one line on stderr with exit 2 before the first step (:mod:`nowcast.training.refusal`);
a failure once training runs keeps its traceback.
"""

from __future__ import annotations

import logging
import warnings

log = logging.getLogger(__name__)

HELP = "train a learned forecaster (LightningCLI: fit / validate; --config configs/train/*.yaml)"


#: what ``nowcast train --help`` prints without importing Lightning (its CLI builds the full help
#: of a subcommand from the imported classes, which takes seconds)
USAGE = """usage: nowcast train [-c CONFIG] {fit,validate,test,predict} ...

subcommands (each lists every option, trainer, model and data, with --help; that imports
Lightning and takes several seconds):
  fit        train (resume a killed run with --ckpt_path last)
  validate   score a checkpoint on the validation split
  test       score a checkpoint on the test split
  predict    run a checkpoint on the test windows
"""


def main(argv: list[str]) -> int:
    if list(argv) in (["--help"], ["-h"]):
        print(USAGE + "\n" + (__doc__ or "").strip())
        return 0
    from lightning.pytorch.cli import LightningCLI

    from nowcast.cli import fail
    from nowcast.data.datamodule import NowcastDataModule
    from nowcast.training.refusal import REFUSED, FirstBatch, innermost_error
    from nowcast.training.resume import resolve_last
    from nowcast.training.task import ForecastTask

    # sys.argv stays the user's command: Lightning's DDP launcher re-runs it for the other ranks.
    # The args warning is about running from Python with both; here args is the command's own tail.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")

    class NowcastCLI(LightningCLI):
        def resolve_ckpt_path(self) -> None:
            """``--ckpt_path last`` of every subcommand: this configuration's newest training state."""
            resolve_last(self.config_init[self.subcommand], self.trainer.default_root_dir,
                         self.model.hparams, type(self.model), self.subcommand)

        before_fit = before_validate = before_test = before_predict = resolve_ckpt_path

    first_batch = FirstBatch()
    try:
        NowcastCLI(
            ForecastTask,
            NowcastDataModule,
            subclass_mode_model=True,
            args=argv,
            parser_kwargs={"prog": "nowcast train"},
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [first_batch]},
            auto_configure_optimizers=False,
        )
    except REFUSED as err:
        if first_batch.seen:  # the run went ahead and failed: a bug, with its traceback
            raise
        log.debug("refused input", exc_info=True)
        return fail("train", innermost_error(err))
    return 0
