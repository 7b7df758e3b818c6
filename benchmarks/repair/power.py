def power(base, exponent):
    """base raised to exponent."""
    return exponent ** base
