"""GPU scripts: run on a machine with an NVIDIA GPU, never in CI."""
