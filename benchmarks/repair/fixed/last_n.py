def last_n(xs, n):
    """The last n items of xs, in order."""
    return xs[-n:]
