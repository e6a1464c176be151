"""The `sim` command: one module per command group, each command parse → call the library →
print → exit code (SALib's `cli_action`). `common.COMMANDS` names them; each module is imported
only when its command runs (`common.LazyGroup`).

- `common`: the `main` group and `user_errors` (one located line per bad input, exit 2).
- `run`: `sim check`, `sim run`.
- `trace`: `sim trace inspect|fit|compare`.
- `calibrate`: `sim calibrate profiles|runs`; `validate`: `sim validate`.
- `plan`: `sim plan`; `breakeven`: `sim breakeven`.
- `bench`: `sim bench` (what `vllm bench serve` would report).
"""

from sim.cli.common import COMMANDS, main, user_errors

__all__ = ["COMMANDS", "main", "user_errors"]
