"""Learning-rate schedules by name, as optax schedules `step -> lr` over a whole run."""

from __future__ import annotations

import optax

SCHEDULES = ("constant", "cosine", "onecycle", "step")


def make_schedule(
    name: str,
    learning_rate: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    step_boundaries: tuple[float, ...] = (0.5, 0.75),
    step_factor: float = 0.1,
) -> optax.Schedule:
    """The schedule `name` for a run of `total_steps` optimizer updates.

    constant: `learning_rate` throughout (after an optional linear warmup from 0).
    cosine: linear warmup over `warmup_steps`, then cosine decay to 0 at `total_steps`.
    onecycle: optax's cosine one-cycle: up from lr/25 to lr over the first 25% of the steps, then
        down to lr/25e4 (Smith's super-convergence schedule; warmup_steps is ignored).
    step: `learning_rate`, times `step_factor` at each fraction of the run in `step_boundaries`
        (default: x0.1 at 50% and again at 75%, the classic ResNet recipe). After a warmup,
        constant and step count their steps from the warmup's end.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    warmup_steps = max(0, min(warmup_steps, total_steps))
    if name == "onecycle":
        return optax.cosine_onecycle_schedule(total_steps, learning_rate, pct_start=0.25)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total_steps)
    if name == "step":
        scales = {round(f * total_steps): step_factor for f in step_boundaries}
        main = optax.piecewise_constant_schedule(learning_rate, scales)
    else:
        main = optax.constant_schedule(learning_rate)
    if not warmup_steps:
        return main
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])
