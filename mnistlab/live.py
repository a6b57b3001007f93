"""Training as a learner watches it in a notebook: one figure of loss and accuracy redrawn in place
after every epoch, and a progress bar with the time elapsed and left (tqdm's notebook bar). The
console keeps its epoch lines (mnistlab.callbacks.EpochLogs); in a notebook this replaces them."""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import pandas as pd


class LiveTraining(keras.callbacks.Callback):
    """A Keras callback for notebooks: after each epoch the figure of train and validation loss
    and accuracy is drawn anew in the same output (IPython's display handle), and a progress bar
    counts the training steps with the time left. `title` heads the figure. A run resumed from a
    backup starts the bar where the backup left off."""

    replaces_epoch_lines = True  # mnistlab.train.fit prints no epoch lines beside it

    def __init__(self, title: str = ""):
        super().__init__()
        self.title = title
        self.rows: list[dict] = []
        self.steps_per_epoch: int | None = None  # set by mnistlab.train.fit (Keras does not know a tf.data length)

    def on_train_begin(self, logs=None):
        from IPython.display import display
        from tqdm.auto import tqdm

        epochs, steps = self.params.get("epochs") or 1, self.steps_per_epoch or self.params.get("steps") or 1
        self._steps, self._done = steps, 0
        self.bar = tqdm(total=epochs * steps, unit="step", desc="training", leave=True)
        self.handle = display(self._placeholder(), display_id=True)

    def on_epoch_begin(self, epoch, logs=None):
        if self._done < epoch * self._steps:  # resumed: the epochs before ran in an earlier process
            self.bar.update(epoch * self._steps - self._done)
            self._done = epoch * self._steps
        self._epoch_start = self._done

    def on_train_batch_end(self, batch, logs=None):
        # Keras counts in executions of steps_per_execution steps, which can overshoot a short epoch.
        done = min(self._epoch_start + batch + 1, self._epoch_start + self._steps)
        self.bar.update(done - self._done)
        self._done = done

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(self._epoch_start + self._steps - self._done)
        self._done = self._epoch_start + self._steps
        logs = dict(logs or {})
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()
                                                 if isinstance(v, (int, float)) or hasattr(v, "__float__")}})
        if "val_accuracy" in logs:
            self.bar.set_postfix(val_accuracy=f"{float(logs['val_accuracy']):.4f}")
        self._redraw()

    def on_train_end(self, logs=None):
        self.bar.close()

    def _placeholder(self):
        from IPython.display import Markdown

        return Markdown("*The curves appear after the first epoch.*")

    def _redraw(self):
        from mnistlab.plots import plot_curves

        history = pd.DataFrame(self.rows)
        fig = plot_curves(history, title=f"{self.title}  (epoch {len(self.rows)})" if self.title else "")
        self.handle.update(fig)
        plt.close(fig)  # shown once, through the handle: the inline backend must not show it again


def live_callbacks(live: bool, title: str = "") -> list[keras.callbacks.Callback]:
    """[LiveTraining(title)] when `live` (an interactive notebook), else [] (the epoch lines stay)."""
    return [LiveTraining(title)] if live else []
