"""Training: the loop (``loop.train``), checkpoints, the optimizer and the run folder."""

from domainfit.training.loop import train

__all__ = ["train"]
