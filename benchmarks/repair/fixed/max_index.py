def max_index(xs):
    """Index of the largest item (the first one on ties)."""
    best = 0
    for i in range(1, len(xs)):
        if xs[i] > xs[best]:
            best = i
    return best
