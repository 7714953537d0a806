"""The waiver's rules as pure functions: policies, the decision, the order's life."""
