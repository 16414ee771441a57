"""`best`: the configuration that answers the architect's question, with its confidence.

A layer above the gate (it reuses its rank test) and below the report (which shows the
answer). Pure functions of `bench.load()` frames.
"""

from __future__ import annotations

from bench.decide.answer import Answer, answer, best, decide
from bench.decide.constraints import Constraint, parse_constraint, parse_constraints
from bench.decide.metrics import OBJECTIVES, DecideError
from bench.suite.question import Question

__all__ = ["OBJECTIVES", "Answer", "Constraint", "DecideError", "Question", "answer", "best",
           "decide", "parse_constraint", "parse_constraints"]
