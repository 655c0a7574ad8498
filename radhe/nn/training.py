"""The one training loop of radhe's networks, and the losses they share.

Each estimator says what an epoch's batches are and what a batch's loss is; :func:`train_network`
does the rest the same way for all of them: AdamW, an optional cosine schedule, per-epoch history,
early stopping on a validation score with the best weights kept, a time budget, progress lines.

Why not skorch: its ``NeuralNet`` iterates a fixed dataset of ``(X, y)`` samples through a
``DataLoader``. Our epochs are re-drawn (every haematoma slice plus a fresh sample of empty ones),
masks are augmented together with their images, the segmenter stops on the Dice of whole held-out
*patients'* volumes, and multi-task losses mix a segmentation and a classification term on a subset
of the batch. Each of these needs a skorch callback or a subclass overriding ``train_step``, and
the estimators would then wrap a second scikit-learn estimator with its own ``clone`` semantics and
``module__`` parameters; the loop itself is forty lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from radhe._log import console_if_unconfigured, get_logger

log = get_logger(__name__)

__all__ = ["train_network", "TrainingResult", "minibatches", "soft_dice_loss", "cpu_state"]


@dataclass
class TrainingResult:
    """What :func:`train_network` returns: the kept weights, the per-epoch history, the kept epoch."""

    state: dict
    history: list = field(default_factory=list)
    best_epoch: int = 0


def cpu_state(net) -> dict:
    """A detached CPU copy of ``net``'s ``state_dict``."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def minibatches(order: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    """Consecutive chunks of ``order``; a lone last sample is dropped (BatchNorm needs two) unless it is all."""
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        if len(chunk) < 2 and len(order) > 1:
            continue
        yield chunk


def train_network(
    net,
    *,
    epoch_batches: Callable[[int], Iterable],
    batch_loss: Callable[[object, object], tuple],
    epochs: int,
    learning_rate: float,
    weight_decay: float,
    lr_schedule: str = "constant",
    validate: Callable[[object], float] | None = None,
    score_name: str = "val_score",
    patience: int | None = None,
    max_fit_time: float | None = None,
    start_time: float | None = None,
    validate_start: bool = False,
    name: str = "network",
    verbose: bool = False,
) -> TrainingResult:
    """Train ``net`` (already on its device) and return the weights to keep.

    Parameters
    ----------
    epoch_batches : callable
        ``epoch_batches(epoch)`` yields the epoch's batches (any objects ``batch_loss`` understands).
    batch_loss : callable
        ``batch_loss(net, batch)`` returns ``(loss, logs)``: the scalar tensor to minimise and a dict
        of floats recorded per epoch as the mean over the batches that reported them.
    epochs : int
        Maximum epochs.
    learning_rate, weight_decay : float
        AdamW settings.
    lr_schedule : {"constant", "cosine"}
        "cosine": annealed to a tenth of ``learning_rate`` over ``epochs``.
    validate : callable or None
        ``validate(net)`` → a score (higher is better) after each epoch, recorded as ``score_name``;
        the best epoch's weights are kept and training stops after ``patience`` epochs without an
        improvement. None: the last epoch's weights are kept.
    max_fit_time : float or None
        Seconds since ``start_time`` after which training stops (the kept weights so far are returned).
    validate_start : bool
        Score the starting weights too (epoch 0): fine-tuning from pretrained weights then returns
        them unchanged when no epoch improves on them.
    name : str
        Prefix of the per-epoch progress messages (logger ``radhe.nn.training``: INFO with ``verbose``,
        else DEBUG).

    Returns
    -------
    TrainingResult
    """
    import torch

    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    epochs = max(1, int(epochs))
    scheduler = None
    if lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=learning_rate / 10)
    start_time = time.perf_counter() if start_time is None else start_time
    with console_if_unconfigured(verbose):
        return _train(net, optimizer, scheduler, epoch_batches, batch_loss, epochs, validate, score_name, patience,
                      max_fit_time, start_time, name, verbose, validate_start)


def _train(net, optimizer, scheduler, epoch_batches, batch_loss, epochs, validate, score_name, patience,
           max_fit_time, start_time, name, verbose, validate_start=False) -> TrainingResult:
    best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
    history = []
    if validate is not None and validate_start:
        t0 = time.perf_counter()
        net.eval()
        start_score = float(validate(net))
        history.append({"epoch": 0, score_name: start_score, "seconds": time.perf_counter() - t0})
        log.log(20 if verbose else 10, "%s epoch   0 (start)  %s %.4f", name, score_name, start_score)
        if np.isfinite(start_score):
            best_score, best_state = start_score, cpu_state(net)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        logs: dict[str, list[float]] = {}
        for batch in epoch_batches(epoch):
            loss, batch_logs = batch_loss(net, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in batch_logs.items():
                logs.setdefault(key, []).append(float(value))
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch, **{k: float(np.mean(v)) for k, v in logs.items()}}
        if validate is not None:
            net.eval()
            record[score_name] = float(validate(net))
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
        log.log(20 if verbose else 10, "%s epoch %3d/%d  %s  (%.1f s)", name, epoch, epochs, shown, record["seconds"])
        if validate is not None:
            score = record[score_name]
            if score > best_score + 1e-4:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = cpu_state(net)
            else:
                stale += 1
            if patience is not None and stale >= patience:
                break
        if max_fit_time is not None and time.perf_counter() - start_time > max_fit_time:
            break
    if best_state is None:  # no validation, or a validation score that was never finite
        best_state, best_epoch = cpu_state(net), history[-1]["epoch"] if history else 0
    return TrainingResult(best_state, history, best_epoch)


def soft_dice_loss(logits, target, eps: float = 1.0):
    """1 − soft Dice of ``sigmoid(logits)`` against a 0/1 (or soft) ``target``, over the whole batch."""
    import torch

    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + target.sum() + eps)
