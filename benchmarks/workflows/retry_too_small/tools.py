def get_exchange_rate(base, quote):
    """The rate from the rates provider (a rate-limited API that refuses most calls)."""
    import random

    if random.random() < 0.6:
        raise RuntimeError("429 Too Many Requests")
    rates = {"USD": 1.08, "GBP": 0.86, "JPY": 161.2, "CHF": 0.95, "SEK": 11.4, "EUR": 1.0}
    if base != "EUR":
        raise ValueError(f"unsupported base currency {base}")
    return rates[quote]


def convert(amount, rate):
    """The amount in the other currency, rounded to cents."""
    return round(amount * rate, 2)
