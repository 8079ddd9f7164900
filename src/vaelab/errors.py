"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class VaelabError(Exception):
    """A problem the user can fix (bad input, missing data, wrong run folder)."""
