"""Decisions: the plan search (`plan_experiment`), what one replica serves at the SLO
(`capacity`), named price lists (`prices`), and break-even against the API (`breakeven`)."""

from sim.planning.decide import Candidate, MonthChoice
from sim.planning.search import Plan, plan_experiment

__all__ = ["Candidate", "MonthChoice", "Plan", "plan_experiment"]
