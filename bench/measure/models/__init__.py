"""Model builders, run in the worker: the zoo, user factories, and seeded inputs. Which
models exist (and which axes they take) is `bench.suite.models`, readable without torch."""
