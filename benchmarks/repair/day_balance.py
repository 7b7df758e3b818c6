def day_balance(temps, hot, cold):
    """Hot days (at least hot) minus cold days (at most cold); None readings are skipped and
    a month without readings scores 0."""
    hot_days = 0
    cold_days = 0
    readings = 0
    for t in temps:
        if t is None:
            continue
        readings += 1
        if t > hot:
            hot_days += 1
        if t <= cold - 1:
            cold_days += 1
    if readings == 0:
        return 0
    return hot_days - cold_days
