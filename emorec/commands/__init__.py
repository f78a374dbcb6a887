"""The subcommands of the ``emorec`` command (see :mod:`emorec.cli`): each has ``DESCRIPTION``, ``add_arguments`` and ``run``."""
