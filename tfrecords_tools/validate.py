"""``python -m tfrecords_tools.validate OUT``: the same command as ``emorec validate``."""

from emorec.cli import module_main

if __name__ == "__main__":
    module_main("validate", "python -m tfrecords_tools.validate")
