def in_range(x, low, high):
    """True when low <= x <= high."""
    return low <= x and x <= high
