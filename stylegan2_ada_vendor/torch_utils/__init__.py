"""torch_utils: PyTorch helpers of the host (persistent pickles, training statistics, plugin
builds, misc checks) and its custom ops (torch_utils.ops)."""
