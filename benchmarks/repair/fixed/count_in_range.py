def count_in_range(xs, lo, hi):
    """How many items x of xs satisfy lo <= x <= hi."""
    count = 0
    for x in xs:
        if lo <= x and x <= hi:
            count += 1
    return count
