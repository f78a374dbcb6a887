"""The task contract: one place knows how a kind of problem is read, trained, scored, evaluated and exported.

A model names its task in the registry (``ModelSpec.task``); the trainer,
the evaluator and the exporter ask the task rather than branching on the kind
of model. emorec's first task is continuous arousal/valence per 40 ms frame
(:mod:`emorec.tasks.frame_regression`); clip classification and
feature-sequence regression are other implementations of the same contract
(see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable


class Task:
    """Base class of a task; subclasses fill in every method.

    Attributes:
        name: the registry name (``ModelSpec.task``).
        loss_config_class: the ``loss:`` section of models that bring no objective of their own.
        score_name: the validation metric that picks the best epoch (higher is better).
        protocol: the default evaluation protocol's name (``evaluate/<protocol>.yaml``), or None.
    """

    name: str = ""
    loss_config_class: type
    score_name: str = "score"
    # The evaluation protocol (evaluate/<protocol>.yaml) used when none is given; None = AVEC 2016's.
    protocol: str | None = None

    # -- data --------------------------------------------------------------------------------

    def configure(self, config, data, spec):
        """The config completed from the dataset before the model is built (default: unchanged).

        E.g. the feature sets a model reads and their dimensions; the trainer
        saves the completed config as ``config.yaml``.
        """
        return config

    def demo_dataset_options(self, config) -> dict:
        """Extra arguments of :func:`emorec.demo.cache.ensure_demo_dataset` for this config (default none)."""
        return {}

    def modalities(self, spec, config) -> tuple[str, ...]:
        """The dataset modalities a run reads (the config's, else the model's)."""
        return tuple(config.data.modalities or spec.modalities)

    def check_data(self, data, spec, config) -> None:
        """Raise an EmorecError if the dataset cannot serve this model and config."""
        raise NotImplementedError

    def train_dataset(self, data, config, modalities, epoch: int, skip: int):
        """Epoch ``epoch``'s global training batches, the first ``skip`` already trained on left out."""
        raise NotImplementedError

    def batches_per_epoch(self, data, config) -> int | None:
        """Batches in one epoch when known in advance (for progress bars), else None."""
        raise NotImplementedError

    def dev_dataset(self, data, config, modalities):
        """The validation batches, or None when there is nothing to validate on."""
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------

    def objective(self, spec, loss_config) -> Callable:
        """``objective(batch, outputs, reduce_fn) -> (loss, terms)`` with the run's loss settings."""
        raise NotImplementedError

    def make_step(self, config, context):
        """The :class:`~emorec.training.steps.TrainStep` for this config."""
        raise NotImplementedError

    def validator(self, model, step, dev) -> Callable[[], dict]:
        """A callable (made once per run) returning the validation metrics of the current weights.

        The metrics include ``score_name``; ``dev`` comes from :meth:`dev_dataset`.
        """
        raise NotImplementedError
