"""Reading and writing media: audio, video frames on the 40 ms grid, labels, faces."""
