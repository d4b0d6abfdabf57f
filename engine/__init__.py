"""The gamma engine: per-underlying dealer-gamma state, numba kernels, levels, CLI."""
