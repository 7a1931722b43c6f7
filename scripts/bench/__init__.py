"""Timings: the host's networks, a training run, and what MS-PE costs per step."""
