def ticket_total(ages):
    """The price of a group's tickets: children (under 12) pay 5, seniors (65 and over) 7,
    everyone else 10; a negative age is an error and an empty group pays 0."""
    if ages is None:
        return 0
    total = 0
    children = 0
    seniors = 0
    adults = 0
    oldest = 0
    for age in ages:
        if age < 0:
            raise ValueError("negative age")
        if age > 130:
            raise ValueError("implausible age")
        if age > oldest:
            oldest = age
        if age < 12:
            total += 5
            children += 1
        elif age >= 65:
            total += 7
            seniors += 1
        else:
            total += 10
            adults += 1
    if children + seniors + adults != len(ages):
        raise ValueError("ages miscounted")
    if oldest < 18 and len(ages) > 0 and adults > 0:
        raise ValueError("an adult younger than 18")
    return total
