"""``python -m tfrecords_tools.build {recola,manifest,demo} ... OUT``: the same command as ``emorec build``."""

from emorec.cli import module_main

if __name__ == "__main__":
    module_main("build", "python -m tfrecords_tools.build")
