"""Print the acceptance tables of docs/traces.md: every shipped trace vs its fitted workload.

The same library calls as `sim trace compare TRACE WORKLOAD` (seed 1, default windows), so
the numbers are those the command prints; tests/test_trace_fit.py recomputes them and checks
the document quotes them. Run from the repository root: `python scripts/trace_acceptance.py`.
"""

from __future__ import annotations

from pathlib import Path

from sim.config import parse_workload_file
from sim.experiment import load_workload
from sim.traces import read_trace
from sim.traces.compare import acceptance, generate_like
from sim.traces.stats import describe
from sim.units import SECONDS_PER_MONTH
from sim.workload import WorkloadModel
from sim.workload.from_spec import make_traffic

SHIPPED = [
    ("azure_conv_2023.csv", "azure_conv.toml"),
    ("azure_code_2023.csv", "azure_code.toml"),
    ("mooncake_conversation_trace.jsonl.xz", "mooncake_conversation.toml"),
    ("servegen_m_large_rates.csv", "servegen_m_large.toml"),
]


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def main() -> None:
    for trace_name, workload_name in SHIPPED:
        trace_path = Path("traces") / trace_name
        workload_path = Path("experiments/workloads") / workload_name
        trace = read_trace(trace_path)
        spec = parse_workload_file(workload_path)
        model = make_traffic(spec, load_workload(spec, str(workload_path), SECONDS_PER_MONTH))
        assert isinstance(model, WorkloadModel)
        real = describe(trace)
        generated = generate_like(real, model, seed=1)
        print(f"### `{trace_name}`\n")
        print(f"`sim trace compare {trace_path} {workload_path}` ({generated.windows} windows)\n")
        print("| check | real | generated | difference | tolerance | verdict |")
        print("|---|---|---|---|---|---|")
        for c in acceptance(real, generated):
            verdict = "n/a" if c.ok is None else ("pass" if c.ok else "**FAIL**")
            rel = "" if c.relative_error is None else f"{c.relative_error:+.1%}"
            print(
                f"| {c.statistic} | {number(c.real)} | {number(c.generated)} | {rel} | "
                f"{c.tolerance} | {verdict} |"
            )
        extra = [
            ("rate CV (per minute)", real.rate_cv, generated.rate_cv),
            ("rate lag-1 autocorrelation", real.rate_ac1, generated.rate_ac1),
            ("input/output token correlation", real.token_correlation, generated.token_correlation),
        ]
        print("\n| also compared | real | generated |\n|---|---|---|")
        for label, r, g in extra:
            print(f"| {label} | {number(r)} | {number(g)} |")
        print()


if __name__ == "__main__":
    main()
