"""Imported first by the forkserver: from then on it dies with the archbench process that
started it, and every worker it forks dies with it (see `bench.measure.lifeline`)."""

from bench.measure.lifeline import chain_children, die_with_parent, parent_from_env

die_with_parent(parent_from_env())
chain_children()
