"""The regression gate: compare a baseline run with a candidate, case by case and metric by
metric (`compare`), with the tests (`significance`), the threshold language (`thresholds`)
and the verdicts rendered for terminals and CI (`render`)."""
