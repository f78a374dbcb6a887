"""``python -m emorec.train``: the same command as ``emorec train`` (see :mod:`emorec.commands.train`)."""

from emorec.cli import module_main

if __name__ == "__main__":
    module_main("train", "python -m emorec.train")
