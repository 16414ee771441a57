"""The pytest11 entry point (`archbench = "bench.pytest_plugin"`), kept at this name for
installed environments; the plugin lives in `bench.pytest.plugin`."""

from bench.pytest.plugin import archbench, pytest_addoption, pytest_collect_file, pytest_configure

__all__ = ["archbench", "pytest_addoption", "pytest_collect_file", "pytest_configure"]
