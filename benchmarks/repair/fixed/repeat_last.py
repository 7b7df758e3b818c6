def repeat_last(xs, n):
    """xs followed by n more copies of its last item (xs itself when empty)."""
    if not xs:
        return xs
    return xs + [xs[-1]] * n
