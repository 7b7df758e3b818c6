def clamp(x, low, high):
    """x limited to the interval [low, high]."""
    return max(low, min(x, high))
