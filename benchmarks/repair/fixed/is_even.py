def is_even(n):
    """True for even integers."""
    return n % 2 == 0
