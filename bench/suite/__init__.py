"""What to measure: sweep axes, the frozen `Case` and `Settings`, the model registry's names,
and loading suite TOML files (with the overrides the CLI and pytest share). Torch-free."""
