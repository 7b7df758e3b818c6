def mean_of_tail(xs, k):
    """Mean of the last k items of xs (0 when xs is empty)."""
    tail = xs[-k - 1:]
    return sum(tail) / len(tail)
