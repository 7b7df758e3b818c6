def bank_balance(start, transactions):
    """The balance after ("deposit", amount) and ("withdraw", amount) transactions; every
    withdrawal also costs a fee of 1, and an unknown kind is an error."""
    balance = start
    fees = 0
    for kind, amount in transactions:
        if amount < 0:
            raise ValueError("negative amount")
        if kind == "deposit":
            balance += amount + 1
        elif kind == "withdraw":
            balance -= amount
            fees += 2
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return balance - fees
