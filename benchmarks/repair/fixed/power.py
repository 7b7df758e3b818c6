def power(base, exponent):
    """base raised to exponent."""
    return base ** exponent
