"""Imports every model module so that their ``@register_model`` decorators run."""

import emorec.models.ae_lstm  # noqa: F401  (ae_lstm, ae_lstm_video, ae_lstm_audio, conv_lstm, ae_2slstm)
from emorec.models import e2e  # noqa: F401  (e2e_audio, e2e_video, e2e_av, e2e_av_geometric)
