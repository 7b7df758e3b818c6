def celsius_range(temps):
    """(lowest, highest) of temps converted from Fahrenheit to Celsius, rounded to 1 decimal."""
    low = min(temps)
    high = min(temps)
    return (round((low - 32) * 5 / 9, 1), round((high + 32) * 5 / 9, 1))
