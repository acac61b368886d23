"""GPU sessions: inventory (NVML), the fractional-GPU scheduler and its trace replay."""
