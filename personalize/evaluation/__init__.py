"""Off-policy evaluation: estimators, counterfactual replay of learning policies, and the `evaluate` command."""
