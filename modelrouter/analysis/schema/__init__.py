"""The JSON Schema (draft 2020-12) of ``Analysis.to_dict()`` and ``GET {prefix}/stats``.

The schema ships in the package as ``analysis.v1.json`` (package data) so that clients can
validate what a service answers, e.g. with the ``jsonschema`` package::

    import jsonschema
    from modelrouter.analysis.schema import analysis_schema
    jsonschema.validate(router.analysis().to_dict(), analysis_schema())

Version 1 covers every ``schema_version`` "1.x" (minor versions only add keys).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

__all__ = ["SCHEMA_FILE", "analysis_schema"]

SCHEMA_FILE = "analysis.v1.json"
"""The schema's file name inside this package."""


@lru_cache(maxsize=1)
def _load() -> str:
    return files(__name__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def analysis_schema() -> dict[str, Any]:
    """The schema as a fresh dict (read once from the package, parsed per call so callers
    may change their copy)."""
    schema: dict[str, Any] = json.loads(_load())
    return schema
