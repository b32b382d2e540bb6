"""Side-by-side runs of every funcgrad example and its PyTorch twin: ``python -m compare``."""
