def mean_of_tail(xs, k):
    """Mean of the last k items of xs (0 when xs is empty)."""
    if not xs:
        return 0
    tail = xs[-k:]
    return sum(tail) / len(tail)
