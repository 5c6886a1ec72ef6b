"""The trainer every training method shares: distillation, fine-tuning, recovery.

It owns the parts that are easy to get subtly wrong and dull to repeat:
AdamW with linear warm-up and decay, gradient accumulation, bf16 autocast
where the device supports it, evaluation every N steps on held-out data,
keeping the best weights (ties of the score broken by the lower validation
loss, see :func:`better`), and checkpoints that let an interrupted run resume
at the same step with the same result. What is trained and how its loss is
computed are the caller's: a module and a ``loss_fn(batch)``.

Data order is a pure function of the seed: epoch ``e`` visits the items in
``randperm(n)`` drawn from a generator seeded with ``(seed, e)``, so the
position in the stream is one integer (micro-batches consumed), and a resumed
run recomputes the order instead of storing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from slimformer.errors import SlimformerError
from slimformer.training.checkpoint import (
    BEST,
    LAST,
    check_same_settings,
    load_checkpoint,
    rng_states,
    save_atomic,
    set_rng_states,
)
from slimformer.training.order import epoch_order
from slimformer.training.precision import autocast
from slimformer.training.schedule import warmup_then
from slimformer.training.settings import TrainSettings


class TrainConfig(TrainSettings):
    """:class:`TrainSettings` plus where and how loudly this run trains (not recipe settings)."""

    device: str = "cpu"
    progress: bool = True

    @classmethod
    def of(cls, settings: TrainSettings, device: str = "cpu", progress: bool = True) -> TrainConfig:
        """A stage's ``train:`` settings, run on ``device``."""
        return cls(**settings.model_dump(), device=device, progress=progress)

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share (not where or how loudly it runs).

        Settings added after checkpoints existed are left out while at their
        defaults, so those checkpoints still resume.
        """
        key = self.model_dump(exclude={"checkpoint_dir", "progress", "device"})
        for name in ("schedule", "shuffle"):
            if key[name] == TrainSettings.model_fields[name].default:
                del key[name]
        return key


@dataclass
class Evaluation:
    """A held-out score: ``name`` for the progress bar, ``value`` to rank checkpoints by.

    ``loss`` is the validation loss (lower is better) measured in the same pass; it
    breaks ties of ``value``, which a coarse score on a small split has often
    (accuracy on 50 examples moves in steps of 2%). None when ``value`` is a loss.
    """

    name: str
    value: float
    higher_is_better: bool = True
    loss: float | None = None


#: One evaluation as recorded: (step, value, validation loss or None).
Record = tuple[int, float, float | None]


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    evaluations: list[Record]
    best: float | None
    best_step: int | None
    best_loss: float | None = None


#: ``callback(trainer)`` runs after each optimizer step (after any checkpoint).
Callback = Callable[["Trainer"], None]


class Trainer:
    """Trains ``module`` on ``n_items`` items that ``collate(indices)`` turns into a batch."""

    def __init__(
        self,
        module: nn.Module,
        loss_fn: Callable[[Any], torch.Tensor],
        n_items: int,
        collate: Callable[[Sequence[int]], Any],
        config: TrainConfig,
        *,
        evaluate: Callable[[], Evaluation] | None = None,
        callbacks: Sequence[Callback] = (),
        fingerprint: dict[str, Any] | None = None,
        desc: str = "train",
        param_groups: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        if n_items < 1:
            raise SlimformerError("the training data is empty", "pass a dataset with examples")
        self.module, self.loss_fn, self.collate = module, loss_fn, collate
        self.n_items, self.config = n_items, config
        self.evaluate, self.callbacks, self.desc = evaluate, list(callbacks), desc
        self.settings = {**config.resume_key(), "n_items": n_items, **(fingerprint or {})}
        self.params = [p for p in module.parameters() if p.requires_grad and p.is_floating_point()]
        if not self.params:
            raise SlimformerError(
                "the model has no trainable float weights (all layers are compressed)",
                "train before quantizing",
            )
        # param_groups: optimizer groups with their own lr / weight decay (for
        # instance movement-pruning scores); the schedule scales every group alike.
        groups = list(param_groups) if param_groups is not None else [{"params": self.params}]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.total_steps = self._total_steps()
        self.scheduler = warmup_then(
            config.schedule,
            self.optimizer,
            self.total_steps,
            round(config.warmup * self.total_steps),
        )
        self.step = 0
        self.losses: list[float] = []
        self.evaluations: list[Record] = []
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_loss: float | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        #: Training seconds so far, carried across a resume (for max_minutes).
        self.elapsed = 0.0

    # -- sizes ---------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.n_items / self.config.batch_size)

    def _total_steps(self) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        return math.ceil(self.config.epochs * self.batches_per_epoch / self.config.grad_accum)

    def _micro_batch(self, position: int) -> list[int]:
        """The item indices of micro-batch ``position`` in the seeded stream."""
        epoch, within = divmod(position, self.batches_per_epoch)
        order = epoch_order(self.config.shuffle, self.config.seed, epoch, self.n_items)
        size = self.config.batch_size
        return list(order[within * size : (within + 1) * size])

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to the end (resuming from ``checkpoint_dir`` if a checkpoint is there)."""
        config = self.config
        if not self._resume():
            torch.manual_seed(config.seed)
        self.module.to(config.device).train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.desc,
            unit="step",
            disable=not config.progress,
        )
        started = time.perf_counter() - self.elapsed
        try:
            while self.step < self.total_steps and not self._out_of_time():
                loss = self._optimizer_step()
                self.losses.append(loss)
                self.step += 1
                self.elapsed = time.perf_counter() - started
                self._after_step()
                bar.update(1)
                bar.set_postfix(self._postfix())
        finally:
            bar.close()
        evaluated_last = bool(self.evaluations) and self.evaluations[-1][0] == self.step
        if self.evaluate is not None and not evaluated_last:
            self._evaluate()
        self._finish()
        return TrainResult(
            self.step, self.losses, self.evaluations, self.best, self.best_step, self.best_loss
        )

    def _optimizer_step(self) -> float:
        config = self.config
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(config.grad_accum):
            indices = self._micro_batch(self.step * config.grad_accum + micro)
            with autocast(config.precision, config.device):
                loss = self.loss_fn(self.collate(indices))
            if not torch.isfinite(loss):
                raise SlimformerError(
                    f"the training loss became {float(loss)} at step {self.step + 1}",
                    "lower lr, or train in fp32 (precision: fp32)",
                )
            (loss / config.grad_accum).backward()
            total += float(loss.detach()) / config.grad_accum
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return total

    def _out_of_time(self) -> bool:
        budget = self.config.max_minutes
        return budget is not None and self.elapsed >= 60.0 * budget

    def _after_step(self) -> None:
        config = self.config
        if self.evaluate is not None and config.eval_every and self.step % config.eval_every == 0:
            self._evaluate()
        if config.checkpoint_every and self.step % config.checkpoint_every == 0:
            self.save_checkpoint()
        for callback in self.callbacks:
            callback(self)

    def _postfix(self) -> dict[str, str]:
        recent = self.losses[-20:]
        postfix = {"loss": f"{sum(recent) / len(recent):.4f}"}
        if self.evaluations:
            postfix[self._metric_name] = f"{self.evaluations[-1][1]:.4f}"
        return postfix

    # -- evaluation and the best weights ---------------------------------------------------
    _metric_name = "eval"

    def _evaluate(self) -> None:
        was_training = self.module.training
        self.module.eval()
        with torch.no_grad():
            result = self.evaluate()
        self.module.train(was_training)
        self._metric_name = result.name
        self.evaluations.append((self.step, result.value, result.loss))
        if self.best is None or better(result, self.best, self.best_loss):
            self.best, self.best_step, self.best_loss = result.value, self.step, result.loss
            self._keep_best()

    def _keep_best(self) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()}
        folder = self._checkpoint_dir()
        if folder is None:
            self._best_state = state
            return
        payload = {"state": state, "step": self.step, "value": self.best, "loss": self.best_loss}
        save_atomic(payload, folder / BEST)

    def _finish(self) -> None:
        if not (self.config.load_best and self.best_step is not None):
            return
        if self.best_step == self.step:
            return  # the last weights are the best ones
        state = self._best_state
        if state is None:
            state = load_checkpoint(self._checkpoint_dir() / BEST)["state"]
        self.module.load_state_dict(state)

    # -- checkpoints -------------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path | None:
        if self.config.checkpoint_dir is None:
            return None
        folder = Path(self.config.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_checkpoint(self) -> None:
        """Write everything a resumed run needs (atomically; needs ``checkpoint_dir``)."""
        folder = self._checkpoint_dir()
        if folder is None:
            raise SlimformerError(
                "checkpoint_every is set but checkpoint_dir is not",
                "set checkpoint_dir to a folder for the checkpoints",
            )
        payload = {
            "settings": self.settings,
            "step": self.step,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(),
            "losses": self.losses,
            "evaluations": self.evaluations,
            "best": self.best,
            "best_step": self.best_step,
            "best_loss": self.best_loss,
            "elapsed": self.elapsed,
        }
        save_atomic(payload, folder / LAST)

    def _resume(self) -> bool:
        folder = self._checkpoint_dir()
        path = None if folder is None else folder / LAST
        if path is None or not path.is_file():
            return False
        saved = load_checkpoint(path)
        check_same_settings(saved["settings"], self.settings, path)
        self.module.load_state_dict(saved["module"])
        self.module.to(self.config.device)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        set_rng_states(saved["rng"])
        self.step, self.losses = saved["step"], list(saved["losses"])
        self.evaluations = [_record(e) for e in saved["evaluations"]]
        self.best, self.best_step = saved["best"], saved["best_step"]
        self.best_loss = saved.get("best_loss")
        self.elapsed = float(saved.get("elapsed", 0.0))
        if self.best_step is not None and folder is not None and not (folder / BEST).is_file():
            self.best_step = None  # the best weights are gone: keep the last ones
        return True


def better(result: Evaluation, best: float, best_loss: float | None) -> bool:
    """Whether ``result`` beats the best so far: a better score, or the same with less loss.

    Keeping the first of equal scores froze students early: on a saturated split
    many evaluations tie, and the later ones usually generalise better (plain
    fine-tuning of the same student beat the first-best checkpoint by 10/193).
    The validation loss is the finer measurement of the same held-out data.
    """
    if math.isclose(result.value, best, rel_tol=1e-12, abs_tol=1e-12):
        return result.loss is not None and best_loss is not None and result.loss < best_loss
    return result.value > best if result.higher_is_better else result.value < best


def _record(saved: Sequence) -> Record:
    """An evaluation from a checkpoint (older ones stored no loss)."""
    step, value, *rest = saved
    return (int(step), float(value), rest[0] if rest else None)
