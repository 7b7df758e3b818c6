def first_item(xs):
    """The first item, or None for an empty list."""
    return xs[0]
