"""Pod lifecycle: volumes set up and torn down, hooks, rollback."""
