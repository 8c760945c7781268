"""PyTorch backend: CPU, CUDA and Apple MPS."""
