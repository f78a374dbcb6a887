"""Model builders (see :mod:`emorec.models.registry`)."""

from emorec.models.registry import available_models, build_model, get_model_spec, register_model

__all__ = ["available_models", "build_model", "get_model_spec", "register_model"]
