"""``make_dataset(data, partition, **settings)`` for tests: the settings become the ReadSpec."""

from emorec import data as _data


def make_dataset(data, partition, **settings):
    """emorec.data.make_dataset with ``ReadSpec(**settings)``."""
    return _data.make_dataset(data, partition, _data.ReadSpec(**settings))
