"""qmo: the Quantized Model Operator."""

__version__ = "0.1.0"
