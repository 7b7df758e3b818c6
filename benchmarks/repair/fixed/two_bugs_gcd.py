def gcd(a, b):
    """Greatest common divisor of two non-negative integers."""
    while b > 0:
        a, b = b, a % b
    return a
