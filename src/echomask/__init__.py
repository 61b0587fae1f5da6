from echomask._version import __version__
