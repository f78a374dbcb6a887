"""Experiment grids that reproduce a paper's tables (``emorec reproduce NAME``; ``reproduce/NAME.yaml``).

:mod:`emorec.reproduce.grid` reads a grid and resolves its runs against a
dataset, :mod:`emorec.reproduce.runner` trains and evaluates them (parallel,
resumable) and fuses where a table asks, :mod:`emorec.reproduce.tables`
writes the tables with the paper's numbers beside emorec's.
"""
