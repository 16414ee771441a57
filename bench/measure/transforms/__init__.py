"""Model transforms, each Module -> Module and each returning what it really applied:
`pruning` (masked, structured, 2:4), `precision` (casts, autocast, quantisation, TF32),
`compile` (torch.compile with cold caches and recompile detection) and `training` (the
timed training step). `bench.measure.stages` applies them in order inside the worker."""
