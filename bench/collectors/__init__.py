"""Parent-side collectors: samplers that watch a case's worker from outside it (RSS, NVML,
energy), their types (`base`), which apply to a case (`registry`), and the figures derived
from them (timeline, roofline, the calibration cache). Never imports torch."""
