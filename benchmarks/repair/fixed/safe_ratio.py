def safe_ratio(a, b):
    """a / b, or 0 when b is zero."""
    if not b:
        return 0
    return a / b
