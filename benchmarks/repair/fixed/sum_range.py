def sum_range(n):
    """Sum of the integers 1..n inclusive."""
    total = 0
    for i in range(1, n + 1):
        total += i
    return total
