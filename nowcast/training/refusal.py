"""Inputs that training refuses before its first step, said the way every ``nowcast`` command says
them: one line on stderr and exit 2 (:func:`nowcast.cli.fail`).

Everything checked before the first batch runs (the task's and the data module's arguments when
they are built, the stores, the splits a stage reads, the checkpoint a task starts from and the
data it must fit, in ``setup``; ``--ckpt_path last``) raises one of :data:`REFUSED`. ``nowcast
train`` reports such an error in one line while :class:`FirstBatch` has seen no batch; once a batch
has run, an error keeps its traceback: it is a bug to fix, not an input to correct.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

#: the errors that name a refused input when raised before the first batch (ValueError covers the
#: checkpoint, store, split and model-spec errors; FileNotFoundError a missing store or file;
#: KeyError a store or name that is not there, as ``nowcast evaluate`` refuses them)
REFUSED = (ValueError, FileNotFoundError, KeyError)


class TrainingInputError(ValueError):
    """A training input (option, data, checkpoint) refused before the first step; the message says
    what is wrong and how to fix it."""


def raised_by_jsonargparse(err: BaseException) -> bool:
    """Whether ``err`` was raised inside jsonargparse (its innermost frame is there)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "jsonargparse" in Path(tb.tb_frame.f_code.co_filename).parts


def innermost_error(err: BaseException) -> BaseException:
    """``err`` without jsonargparse's wrapping: it re-raises a class's own refusal as "Does not
    validate against any of the Union subtypes" with a dump of the whole config, caused by it."""
    while isinstance(err.__cause__, REFUSED) and raised_by_jsonargparse(err):
        err = err.__cause__
    return err


class FirstBatch(L.Callback):
    """Whether the trainer has started a batch (training, sanity check, validation, test or
    predict): before it, an error is a refused input; after it, a failure of the run."""

    def __init__(self) -> None:
        self.seen = False

    def _seen(self, *args: Any, **kwargs: Any) -> None:
        self.seen = True

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = on_predict_batch_start = _seen
