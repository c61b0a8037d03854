"""The one place Vigil's version lives; pyproject.toml reads it (``[tool.setuptools.dynamic]``)
and both programs print it with ``--version``. Releases follow semantic versioning and are
recorded in CHANGELOG.md."""

__version__ = "0.2.0.dev0"
