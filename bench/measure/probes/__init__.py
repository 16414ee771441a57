"""What the worker measures besides time: CUDA allocator peaks and host memory per phase,
the bytes-moved estimate, and the operator profile (driven from `bench.measure.worker`)."""
