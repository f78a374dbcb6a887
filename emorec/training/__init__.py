"""Training: the loop, its steps and callbacks, strategy selection and run-directory checkpoints."""

from emorec.training.callbacks import TrainingDivergedError
from emorec.training.engine import TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "train"]
