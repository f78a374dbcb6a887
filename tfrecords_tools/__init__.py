"""Corpus -> TFRecord commands: ``python -m tfrecords_tools.build`` and ``python -m tfrecords_tools.validate`` (the library code is in ``emorec.corpus``)."""
