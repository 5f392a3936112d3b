from sentinel_usage.stream.budget import DeadLetterBudget, DeadLetterBudgetPolicy


def test_the_share_is_over_the_recent_records_of_each_partition() -> None:
    budget = DeadLetterBudget(DeadLetterBudgetPolicy(share=0.1, records=100))
    assert budget.observe(0, records=50, dead=0) == 0.0
    share = budget.observe(0, records=50, dead=20)
    assert share == 0.2
    assert budget.exceeded(share)
    assert budget.observe(1, records=10, dead=0) == 0.0  # partitions apart

    # 100 clean records later, the garbage has left the window
    assert budget.observe(0, records=100, dead=0) == 0.0
    assert not budget.exceeded(0.1)  # at the budget is within it


def test_a_producer_sending_only_garbage_exceeds_the_budget() -> None:
    budget = DeadLetterBudget()
    share = 0.0
    for _ in range(20):
        share = budget.observe(3, records=100, dead=100)
    assert share == 1.0
    assert budget.exceeded(share)
