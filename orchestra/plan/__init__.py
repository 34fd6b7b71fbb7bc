"""Planning: what the specs want (desired), what the storage says (observed), and the pure
function from both to a :class:`~orchestra.plan.planner.Plan`."""
