"""Scenario runner: steps, variables, concurrency, deadlines, evidence and redaction."""
