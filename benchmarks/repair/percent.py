def percent(part, whole):
    """part as a percentage of whole, rounded to 1 decimal (0 when whole is 0)."""
    return round(part / whole * 10, 1)
