"""Model builders, registered by name (see :mod:`emorec.models.registry`).

Importing this package imports every model module, which registers its
models and the custom layers that ``.keras`` files need to reload.
"""

import emorec.models.feature_lstm  # noqa: F401  (registers feature_lstm)
from emorec.models import ae_lstm, e2e, emotiw  # noqa: F401  (register their models)
from emorec.models.registry import available_models, build_model, get_model_spec, register_model

__all__ = ["available_models", "build_model", "get_model_spec", "register_model"]
