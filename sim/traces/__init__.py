"""Real traces: readers (→ polars, located errors), statistics, fitting, replay inputs.

- `read_trace(path, format=None)` reads any supported format (`FORMATS`, detected when not
  named) into a `RequestTrace` (one row per request: `arrival_s, input_tokens, output_tokens`,
  plus `tenant` / `hash_ids` when the format has them) or a `RateTrace` (mean req/s per fixed
  window: ServeGen, generic rate CSV). Malformed files raise `TraceError` naming file, row,
  column and value; rows a reader skips are counted in `.skipped`, never dropped silently.
- `describe(trace)` → `TraceStats`: per-minute rates, inter-arrival CV, bursts, hour-of-week
  profile, token quantiles and correlation.
- `fit_workload(trace)` → a generated workload (weekly profile, burst model, lengths) whose
  statistics match the trace's; `workload_toml` writes it as a `[workload]` section.
- (the files a `WorkloadSpec` names are loaded by `sim.experiment`)

The historical names `read_azure_trace` (a frame), `read_weekly_profile` and
`empirical_lengths` are kept.
"""

import polars as pl

from sim.traces.formats import FORMATS, detect_format, read_trace
from sim.traces.model import RATE_SCHEMA, REQUEST_SCHEMA, RateTrace, RequestTrace, Trace
from sim.traces.profile import PROFILE_COLUMNS, read_weekly_profile, write_weekly_profile
from sim.traces.rates import superposed_interarrival_cv, write_rate_csv
from sim.traces.readers import AZURE_COLUMNS, AZURE_TIMESTAMP_FORMAT, read_azure_trace
from sim.workload import EmpiricalLengths


def empirical_lengths(requests: pl.DataFrame, name: str = "") -> EmpiricalLengths:
    """The joint (input, output) token distribution of a request frame, for resampling."""
    return EmpiricalLengths(
        requests["input_tokens"].to_numpy(), requests["output_tokens"].to_numpy(), name
    )


__all__ = [
    "AZURE_COLUMNS",
    "AZURE_TIMESTAMP_FORMAT",
    "FORMATS",
    "PROFILE_COLUMNS",
    "RATE_SCHEMA",
    "REQUEST_SCHEMA",
    "RateTrace",
    "RequestTrace",
    "Trace",
    "detect_format",
    "empirical_lengths",
    "read_azure_trace",
    "read_trace",
    "read_weekly_profile",
    "superposed_interarrival_cv",
    "write_rate_csv",
    "write_weekly_profile",
]
