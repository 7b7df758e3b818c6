def count_above(xs, threshold):
    """How many items are strictly greater than threshold."""
    count = 0
    for x in xs:
        if x > threshold:
            count += 1
    return count
