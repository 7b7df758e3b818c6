def is_palindrome(text):
    """True when text reads the same backwards, ignoring case."""
    text = text.lower()
    for i in range(len(text) // 2):
        if text[i] != text[len(text) - i - 1]:
            return False
    return True
