"""The tune run's journal: every probe and every refused candidate, one JSON line each, written
as it happens, so an interrupted run resumes where it stopped.

The first line holds the run's settings; resuming with other settings is refused (their
probes would not be comparable). A probe is found again by (candidate, tag, rate).
"""

from __future__ import annotations

import json
from pathlib import Path

from tritonllm.tune.probe import Probe


class Journal:
    def __init__(self, path: Path, settings: dict) -> None:
        self.path = Path(path)
        self.settings = settings
        self._probes: dict[tuple[str, str, float], Probe] = {}
        self._errors: dict[str, str] = {}
        if self.path.is_file() and self.path.stat().st_size:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"settings": settings})

    @property
    def resumed_probes(self) -> int:
        return len(self._probes)

    def _load(self) -> None:
        lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        recorded = lines[0].get("settings") if lines else None
        if recorded != self.settings:
            differ = sorted(k for k in {**(recorded or {}), **self.settings}
                            if (recorded or {}).get(k) != self.settings.get(k))
            raise ValueError(f"journal: {self.path} was written by a tune run with other "
                             f"settings ({', '.join(differ)} differ); choose another --out, or "
                             "--fresh to start over")
        for entry in lines[1:]:
            if "probe" in entry:
                probe = Probe.from_dict(entry["probe"])
                self._probes[(entry["candidate"], entry["tag"], probe.rate)] = probe
            elif "error" in entry:
                self._errors[entry["candidate"]] = entry["error"]

    def probe(self, candidate: str, tag: str, rate: float) -> Probe | None:
        return self._probes.get((candidate, tag, rate))

    def error(self, candidate: str) -> str | None:
        return self._errors.get(candidate)

    def add_probe(self, candidate: str, tag: str, probe: Probe) -> None:
        self._probes[(candidate, tag, probe.rate)] = probe
        self._append({"candidate": candidate, "tag": tag, "probe": probe.to_dict()})

    def add_error(self, candidate: str, error: str) -> None:
        self._errors[candidate] = error
        self._append({"candidate": candidate, "error": error})

    def _append(self, entry: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
