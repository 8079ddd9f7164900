"""The one exception type for user mistakes (the CLI prints it as one line and exits 2), and the one wording of an
OS error the library did not name itself."""


class VaelabError(Exception):
    """A problem the user can fix (bad input, missing data, wrong run folder)."""


def os_error(exc: OSError) -> str:
    """An OS error the library did not name itself, as one line: what failed and where."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
