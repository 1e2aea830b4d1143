"""netwarden: network security as code.

The package reads policy formats into one model (`dialects`), decides flows exactly as a
cluster would (`engine`), and exposes that through thin shells (`cli`).

    >>> from netwarden.dialects import load_paths
    >>> from netwarden.engine import decide
"""

__version__ = "0.1.0"
