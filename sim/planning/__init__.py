"""Decisions: the plan search (`plan_experiment`), what one replica serves at the SLO
(`capacity`), named price lists (`prices`), and break-even against the API (`breakeven`)."""

from sim.planning.search import Candidate, MonthChoice, Plan, plan_experiment

__all__ = ["Candidate", "MonthChoice", "Plan", "plan_experiment"]
