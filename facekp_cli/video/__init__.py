"""Video: OpenCV I/O, the face tracker, smoothing, per-frame pipeline, outputs."""
