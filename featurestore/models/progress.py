"""Training progress on the terminal: a rich bar (stderr) with the latest validation AUC."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightgbm as lgb


class TrainingProgress:
    """A rich progress bar on stderr showing the round and the latest validation AUC."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[Any], None]:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
        return self._advance

    def _advance(self, env: lgb.callback.CallbackEnv) -> None:
        if self._progress is None:
            return
        scores = {r[1]: r[2] for r in env.evaluation_result_list or []}
        auc = scores.get("auc")
        description = f"valid auc {auc:.4f}" if auc is not None else ""
        self._progress.update(
            self._task,
            completed=env.iteration - env.begin_iteration + 1,
            description=description,
        )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
