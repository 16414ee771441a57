"""The pytest front end: suite files as tests, the `archbench` fixture, and the gate at the end
of a session (entry point `bench.pytest_plugin`)."""
