"""facekp: facial keypoint detection, from data to deployed model, on one command line."""

__version__ = "0.1.0"
