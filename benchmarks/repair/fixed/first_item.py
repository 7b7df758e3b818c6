def first_item(xs):
    """The first item, or None for an empty list."""
    if not xs:
        return None
    return xs[0]
