"""Where and how cases run: isolation backends, the runner, A/B interleaving."""
