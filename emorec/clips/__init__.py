"""Clip classification data (Pini et al., EmotiW): clip sources, the clip record schema, the clip build and tf.data."""
