"""The regression gate: compare runs, judge changes, render verdicts."""
