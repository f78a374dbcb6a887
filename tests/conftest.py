"""Shared pytest set-up: quiet TensorFlow and make the tests' helper modules importable."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pytest swaps file descriptor 2 around every test; emorec's command filter must leave it alone.
os.environ["EMOREC_STDERR_FILTER"] = "0"
# Helper modules (media_samples, dataset_factory) live beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
