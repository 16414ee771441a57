"""The worker: everything that runs inside a case's process and the only layer that imports
torch. Build (models) -> transforms (pruning, precision, compile, training) -> timing (clock,
adaptive stop) -> fidelity and model statistics -> the final message to the parent.

`protocol` (the messages) and `entry` (what the parent hands a worker) are torch-free: the
parent imports those two and nothing else from here.
"""
