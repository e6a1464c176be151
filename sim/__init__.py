"""sim: Monte Carlo capacity planner for self-hosted LLM inference."""
