"""Training: the distributed custom loop, strategy selection and run-directory checkpoints."""

from emorec.training.engine import TrainingDivergedError, TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "train"]
