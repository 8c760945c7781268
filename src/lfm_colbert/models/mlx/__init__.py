"""The MLX backend: `lfm2.py` (the model, mirroring `models/torch/lfm2.py`) and `backend.py` (the runner)."""
