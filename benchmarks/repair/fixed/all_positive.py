def all_positive(xs):
    """True when every item is greater than zero."""
    return all(x > 0 for x in xs)
