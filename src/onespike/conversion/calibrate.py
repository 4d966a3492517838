"""Calibration (step 4 of the pipeline): the largest activation of every hidden population.

``X_p = max`` over the calibration set of the folded (and, for model A, scaled) network's
population-``p`` activations; the window of ``p`` is then ``B_p = (1 + zeta) X_p``.
Under ``torch.distributed`` each rank reads its shard and the maxima are all-reduced
(MAX), see :func:`calibrate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from onespike.conversion.fold import Folded
from onespike.data.batching import split_item
from onespike.distributed import Coordinator
from onespike.errors import ArgumentTypeError, CalibrationError

__all__ = ["calibrate", "iter_inputs"]


def iter_inputs(data: Any) -> Iterator[Tensor]:
    """Yield input batches from a tensor, or an iterable of tensors or of ``(input, label)``
    batches (a DataLoader works); a batch of another form is a :class:`CalibrationError`."""
    if isinstance(data, Tensor):
        yield data
        return
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, dict)):
        raise CalibrationError(
            f"calibration data must be a tensor or an iterable of batches, got "
            f"{type(data).__name__}"
        )
    for i, item in enumerate(data):
        try:
            x, _ = split_item(item, i, "calibration")
        except ArgumentTypeError as exc:
            raise CalibrationError(exc.message) from None
        yield x


def calibrate(
    folded: Folded,
    batches: Iterable[Tensor],
    encode: Any,
    *,
    progress: bool = True,
    total: int | None = None,
    coordinator: Coordinator | None = None,
) -> tuple[dict[str, float], int]:
    """Return ``(X, count)``: the maximum activation of every hidden population and the
    number of calibration samples. ``encode`` maps a raw batch to ``x̂`` (checks included);
    ``total``: the samples ``batches`` hold, for the progress bar (samples/s, ETA).

    With a ``coordinator`` of several ranks, ``batches`` is this rank's shard: the maxima are
    all-reduced with MAX (float64, exact) and the counts with SUM, so every rank gets the
    maxima over the union of the shards — bit-identical to one process reading it all. A
    failure on any rank raises :class:`~onespike.DistributedError` on every rank.
    """
    coord = coordinator if coordinator is not None else Coordinator("calibrate")
    maxima = {p.name: 0.0 for p in folded.populations}
    count = 0
    bar = tqdm(total=total, desc="calibrating", unit="sample", unit_scale=True, leave=False,
               disable=not progress or coord.rank != 0)
    with coord.loop(bar), torch.no_grad():
        for x in batches:
            coord.poll()
            xhat = encode(x, name="calibration batch")
            if xhat.shape[0] == 0:
                continue
            for name, v in folded.run(xhat):
                if name in maxima:
                    maxima[name] = max(maxima[name], float(v.max()))
            count += int(xhat.shape[0])
            bar.update(int(xhat.shape[0]))
    names = list(maxima)
    maxima = dict(zip(names, coord.max_floats([maxima[k] for k in names])))
    (count,) = coord.sum_ints([count])
    if count == 0:
        raise CalibrationError(
            "the calibration set is empty; pass a tensor or batches of representative inputs"
        )
    return maxima, count
