"""kjs: the command line (``kjs``) and the Python client (``kjs.client``)."""

from core import __version__

__all__ = ["__version__"]
