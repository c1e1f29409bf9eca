"""The one error type for unusable data, so the CLI can map it to exit code 2."""


class DatasetError(ValueError):
    """Missing or malformed data; the message names the path or field and the expected layout."""
