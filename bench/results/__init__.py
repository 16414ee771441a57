"""Results: the record schema, the run-folder store, and loading runs into pandas.

`bench.results.load(path)` is the public reader; the submodules are `record` (schema),
`store` (run folders on disk), `frame` (DataFrame view), `repeats` (pooling a case's
workers), `baselines` (named runs) and `pytest_benchmark` (export). Nothing here imports torch.
"""

from bench.results.frame import INFO_COLUMNS, flatten, load
from bench.results.record import FAILURE_STATUSES, SCHEMA_VERSION, STATUSES, Record, Status
from bench.results.store import (
    RESULTS_FILE,
    RUN_FILE,
    ResultsStore,
    RunData,
    load_records,
    load_run,
    read_records,
    read_run,
    run_folder,
    write_json_atomic,
)

__all__ = [
    "FAILURE_STATUSES", "INFO_COLUMNS", "RESULTS_FILE", "RUN_FILE", "SCHEMA_VERSION",
    "STATUSES", "Record", "ResultsStore", "RunData", "Status", "flatten", "load",
    "load_records", "load_run", "read_records", "read_run", "run_folder", "write_json_atomic",
]
