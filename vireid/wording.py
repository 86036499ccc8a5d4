"""Words for numbers in what vireid prints: "1 trial", "3 trials"."""


def counted(count: int, singular: str, plural: str) -> str:
    """``count`` followed by the noun in the number it takes: ``counted(1, "query", "queries")`` is "1 query"."""
    return f"{count} {singular if count == 1 else plural}"
