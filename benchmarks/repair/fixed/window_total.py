def window_total(xs, start, stop):
    """Sum of xs[start:stop] (stop past the end is clipped; an empty or reversed window
    sums to 0)."""
    if not xs:
        return 0
    if stop > len(xs):
        stop = len(xs)
    if start < 0:
        start = 0
    if start >= stop:
        return 0
    window = xs[start:stop]
    total = 0
    count = 0
    for value in window:
        if value is None:
            continue
        total += value
        count += 1
    if count == 0:
        return 0
    return total
