"""The parent side of measuring: where each case runs (forkserver, spawn or inline worker),
the runner that plans a run and writes its folder, and the samplers that watch a worker while
it runs. Torch-free: the worker's side is `bench.measure`."""
