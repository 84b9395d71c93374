"""The results file: a JSON document rewritten atomically after every finished (case, kernel)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"meta": {}, "results": []}


def save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def done_pairs(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(case, kernel) pairs that finished (passed or failed); errored ones are retried on resume."""
    return {(r["case"], r["kernel"]) for r in doc["results"] if r.get("status") in ("pass", "fail", "info", "known-bias")}
