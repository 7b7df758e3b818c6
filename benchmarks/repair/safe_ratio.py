def safe_ratio(a, b):
    """a / b, or 0 when b is zero."""
    return a / b
