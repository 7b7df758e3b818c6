def gcd(a, b):
    """Greatest common divisor of two non-negative integers."""
    while b > 1:
        a, b = b, a % b
    return b
