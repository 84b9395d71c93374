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


def load_for_resume(path: Path, *, profile: str, x64: bool) -> dict[str, Any]:
    """The results document to resume from; ValueError naming --resume if it is missing, unreadable,
    not a results document, or from another profile or precision (mixing them would be wrong)."""
    if not path.exists():
        raise ValueError(f"--resume: no results file at {path}; run without --resume to start a new run")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"--resume: cannot read {path} as JSON ({err}); move it away or run without --resume"
        ) from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("results"), list)
        or not all(isinstance(r, dict) and {"case", "kernel"} <= set(r) for r in doc["results"])
    ):
        raise ValueError(
            f"--resume: {path} is not a validation results file "
            '(expected {"meta": ..., "results": [{"case": ..., "kernel": ...}, ...]})'
        )
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    if "profile" in meta and meta["profile"] != profile:
        raise ValueError(f"--resume: {path} holds results of profile {meta['profile']!r}, not {profile!r}")
    if "x64" in meta and bool(meta["x64"]) != x64:
        had, want = ("float64", "float32") if meta["x64"] else ("float32", "float64")
        raise ValueError(f"--resume: {path} holds {had} results; this run is {want} (pass --x64 to match, or not)")
    return doc


def save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def done_pairs(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(case, kernel) pairs that finished (passed or failed); errored ones are retried on resume."""
    return {(r["case"], r["kernel"]) for r in doc["results"] if r.get("status") in ("pass", "fail", "info", "flagged")}
