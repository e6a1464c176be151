"""The `sim` command: one module per command group, each command parse → call the library →
print → exit code (SALib's `cli_action`).

- `common`: the `main` group and `user_errors` (one located line per bad input, exit 2).
- `run`: `sim check`, `sim run`.
- `trace`: `sim trace inspect|fit|compare`.
- `calibrate`: `sim calibrate profiles|runs`, `sim validate`.
- `plan`: `sim plan`; `breakeven`: `sim breakeven`.
- `bench`: `sim bench` (what `vllm bench serve` would report).
"""

from sim.cli import bench, breakeven, calibrate, plan, run, trace
from sim.cli.common import main, user_errors

main.add_command(run.check)
main.add_command(run.run)
main.add_command(trace.trace)
main.add_command(calibrate.calibrate)
main.add_command(calibrate.validate)
main.add_command(plan.plan)
main.add_command(breakeven.breakeven_command)
main.add_command(bench.bench)

__all__ = ["main", "user_errors"]
