"""Hand-crafted features on emorec's 40 ms frame grid (Chen & Jin's ``feature_lstm`` inputs).

* :mod:`emorec.features.audio_lld`: emorec's own (numpy/scipy) implementation
  of the 38 IS10 / emobase2010 paralinguistic low-level descriptors and their
  deltas, one row per 40 ms frame.
* :mod:`emorec.features.functionals`: statistical functionals of those tracks
  over 3 s windows shifted by one frame (the AVEC 2015 "long-time" features).
* :mod:`emorec.features.opensmile_lld`: the same 76 LLDs computed by the
  ``opensmile`` package (optional extra ``emorec[opensmile]``; research /
  non-commercial licence, never part of the default install).
* :mod:`emorec.features.landmarks68` and :mod:`emorec.features.geometric`:
  dlib's 68 landmarks and the geometric shape features built on them.
* :mod:`emorec.features.lgbp_top`: LGBP-TOP appearance features and their PCA.
* :mod:`emorec.features.arff`: feature sets released as ARFF (RECOLA / AVEC 2016).
"""

from emorec.features.audio_lld import LLD_NAMES, AudioLLDExtractor, extract_audio_lld
from emorec.features.functionals import FUNCTIONALS, audio_functionals, functional_names

__all__ = [
    "FUNCTIONALS",
    "LLD_NAMES",
    "AudioLLDExtractor",
    "audio_functionals",
    "extract_audio_lld",
    "functional_names",
]
