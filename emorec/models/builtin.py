"""Imports every model module so that their ``@register_model`` decorators run."""

from emorec.models import e2e  # noqa: F401  (e2e_audio, e2e_video, e2e_av, e2e_av_geometric)
