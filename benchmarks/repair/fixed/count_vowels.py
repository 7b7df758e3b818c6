def count_vowels(text):
    """Number of vowels (a, e, i, o, u) in text, case-insensitive."""
    return sum(1 for ch in text.lower() if ch in "aeiou")
