"""convcost: per-convolution cost analysis and factorization what-ifs."""

__version__ = "0.1.0"
