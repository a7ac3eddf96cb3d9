"""Coordinate descent over the space, within a time budget, then re-measurement of the best.

Why coordinate descent (and not Bayesian optimisation, e.g. Optuna's TPE): a 20-minute budget
on a small machine buys about ten candidates, each a rate search of a few real load tests.
TPE spends its first ten or so trials sampling at random before its model guides it, so it
would stop where it starts to pay. Descent from the base profile spends every candidate on a
one-key change of the best so far, tries the keys that matter most first, and its log says
what each change did and which SLO limit bound, which is what a user needs to trust the
result. Its weakness, interactions between keys, is met by a second pass over the keys while
the budget lasts.

Rules:
- The base profile is measured first; then, key by key, each value other than the current
  one. The best value of a key is adopted when its goodput beats the current best by more than
  ``min_gain`` (noise must not move the search).
- A candidate starts when the budget, less what the final re-measurement needs, has room for
  one more (estimated from the candidates so far).
- At the end the base and the ``top`` best candidates are measured ``repeats`` more times at
  their highest passing rate; they are ranked by their mean goodput, and the spread is reported.
  The base profile stays the winner unless the best beats it by more than ``min_gain`` and
  more than the spread of either one's runs.
- Every probe goes through the journal: a probe already there is not run again, and the budget
  counts its recorded time, so a resumed run continues the same search.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tritonllm.build.profile import BuildProfile
from tritonllm.tune.journal import Journal
from tritonllm.tune.probe import Probe
from tritonllm.tune.rate_search import RateResult, RateSearch, find_max_rate
from tritonllm.tune.space import (Dimension, candidate_key, candidate_profile, current_value,
                                  label, rebuild_stages)

WARM_FACTOR = 1.25  # the rate step when starting from the best rate found so far


class Measurer(Protocol):
    """Runs one candidate at a time: ``start`` it (ValueError: it cannot run, with the reason),
    ``probe`` it at a rate, ``stop`` it."""

    def start(self, profile: BuildProfile) -> None: ...

    def probe(self, rate: float, tag: str) -> Probe: ...

    def stop(self) -> None: ...


@dataclass
class Candidate:
    overrides: dict
    stages: tuple[str, ...] = ()  # build stages it re-runs (empty: runtime settings only)
    search: RateResult | None = None
    repeats: list[Probe] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> str:
        return candidate_key(self.overrides)

    @property
    def label(self) -> str:
        return label(self.overrides)

    @property
    def goodputs(self) -> list[float]:
        best = [self.search.best.goodput] if self.search and self.search.best else []
        return best + [p.goodput for p in self.repeats]

    @property
    def goodput(self) -> float:
        """Mean goodput (req/s) over the search's best probe and the repeats at its rate."""
        return statistics.fmean(self.goodputs) if self.goodputs else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / mean of the goodputs measured at the candidate's rate."""
        values = self.goodputs
        return (max(values) - min(values)) / self.goodput if len(values) > 1 and self.goodput \
            else 0.0


@dataclass
class TuneResult:
    candidates: list[Candidate]
    ranking: list[Candidate]
    log: list[str]
    used_s: float

    @property
    def base(self) -> Candidate:
        return self.candidates[0]

    @property
    def winner(self) -> Candidate:
        return self.ranking[0]


class Tuner:
    def __init__(self, base: BuildProfile, space: list[Dimension], measurer: Measurer,
                 journal: Journal, *, budget_s: float, rates: RateSearch = RateSearch(),
                 min_gain: float = 0.05, top: int = 3, repeats: int = 1, passes: int = 2,
                 log: Callable[[str], None] = print) -> None:
        self.base, self.space, self.measurer, self.journal = base, space, measurer, journal
        self.budget_s, self.rates, self.min_gain = budget_s, rates, min_gain
        self.top, self.repeats, self.passes = top, repeats, passes
        self.log = log
        self.used_s = 0.0
        self.candidates: dict[str, Candidate] = {}
        self.notes: list[str] = []

    # ---- the descent --------------------------------------------------------------------

    def run(self) -> TuneResult:
        best = self.evaluate({})
        if best.error:
            raise ValueError(f"the base profile cannot be measured: {best.error}")
        for _ in range(self.passes):
            moved = False
            for dim in self.space:
                winner = self._best_of_key(dim, best)
                if winner is None:
                    continue
                if winner is not best:
                    self._note_adopted(dim.key, best, winner)
                    best, moved = winner, True
            if not moved or self._out_of_budget():
                break
        ranking = self._remeasure(best)
        return TuneResult(list(self.candidates.values()), ranking, self.notes, self.used_s)

    def _best_of_key(self, dim: Dimension, best: Candidate) -> Candidate | None:
        """The best candidate for ``dim`` (``best`` if no value beats it); None when the budget
        ran out first."""
        current = current_value(candidate_profile(self.base, best.overrides), dim.key)
        winner = best
        for value in dim.values:
            if value == current:
                continue
            overrides = {**best.overrides, dim.key: value}
            if value == current_value(self.base, dim.key):
                overrides.pop(dim.key)
            if candidate_key(overrides) not in self.candidates and self._out_of_budget():
                return None
            result = self.evaluate(overrides, start=best.search.max_rate or None)
            if result.goodput > winner.goodput * (1 + self.min_gain) and result.goodput:
                winner = result
        return winner

    def _note_adopted(self, key: str, old: Candidate, new: Candidate) -> None:
        binding = new.search.above.binding if new.search.above else None
        gain = new.goodput / old.goodput - 1 if old.goodput else float("inf")
        note = (f"{key}: {old.label} -> {new.label}: goodput {old.goodput:.2f} -> "
                f"{new.goodput:.2f} req/s ({gain:+.0%}); above {new.search.max_rate:g} req/s "
                f"the binding limit is {binding or 'none found'}")
        self.notes.append(note)
        self.log(f"[tune] adopted {note}")

    # ---- one candidate ------------------------------------------------------------------

    def evaluate(self, overrides: dict, start: float | None = None) -> Candidate:
        key = candidate_key(overrides)
        if key in self.candidates:
            return self.candidates[key]
        candidate = Candidate(overrides)
        self.candidates[key] = candidate
        candidate.error = self.journal.error(key)
        if candidate.error is None:
            try:
                profile = candidate_profile(self.base, overrides)
                candidate.stages = rebuild_stages(self.base, profile)
                rates = dataclasses.replace(self.rates, start=start, factor=WARM_FACTOR) \
                    if start else self.rates
                with _Session(self, candidate, profile) as session:
                    candidate.search = find_max_rate(session.measure("search"), rates)
            except ValueError as exc:
                candidate.error = str(exc)
                self.journal.add_error(key, candidate.error)
        if candidate.error:
            self.log(f"[tune] {candidate.label}: not measured: {candidate.error}")
        else:
            self.log(f"[tune] {candidate.label}: max {candidate.search.max_rate:g} req/s within "
                     f"the SLO, goodput {candidate.goodput:.2f} req/s "
                     f"({self.used_s:.0f} of {self.budget_s:.0f} s used)")
        return candidate

    def _out_of_budget(self) -> bool:
        measured = [c for c in self.candidates.values() if c.search]
        if not measured:
            return False
        per_candidate = self.used_s / len(measured)
        probe_s = statistics.fmean(p.seconds for c in measured for p in c.search.probes)
        # The finalists' re-runs, each on a server started again (counted as one more probe).
        reserve = (self.top + 1) * (self.repeats + 1) * probe_s if self.repeats else 0.0
        return self.used_s + per_candidate + reserve > self.budget_s

    # ---- the end ------------------------------------------------------------------------

    def _remeasure(self, best: Candidate) -> list[Candidate]:
        measured = sorted((c for c in self.candidates.values() if c.goodput > 0),
                          key=lambda c: c.goodput, reverse=True)
        finalists = measured[:self.top]
        base = self.candidates[candidate_key({})]
        if base not in finalists and base.goodput > 0:
            finalists.append(base)
        for candidate in finalists:
            profile = candidate_profile(self.base, candidate.overrides)
            try:
                with _Session(self, candidate, profile) as session:
                    for i in range(self.repeats):
                        candidate.repeats.append(
                            session.measure(f"repeat-{i + 1}")(candidate.search.max_rate))
            except ValueError as exc:
                self.log(f"[tune] {candidate.label}: re-measurement failed: {exc}")
            self.log(f"[tune] {candidate.label}: goodput {candidate.goodput:.2f} req/s over "
                     f"{len(candidate.goodputs)} runs (spread {candidate.spread:.0%})")
        rest = [c for c in self.candidates.values() if c not in finalists]
        ranked = sorted(finalists, key=lambda c: c.goodput, reverse=True)
        top = ranked[0] if ranked else None
        if top is not None and top is not base and base in ranked:
            # A gain within the noise (min_gain, or the spread of either one's runs) does not
            # change the profile.
            margin = max(self.min_gain, top.spread, base.spread)
            if top.goodput <= base.goodput * (1 + margin):
                ranked.remove(base)
                ranked.insert(0, base)
                self.notes.append(f"after re-measurement {top.label} is {top.goodput:.2f} against "
                                  f"the base's {base.goodput:.2f} req/s, within the noise "
                                  f"({margin:.0%}): the base profile stays")
        return ranked + sorted(rest, key=lambda c: c.goodput, reverse=True)


class _Session:
    """A candidate's server, started on the first probe the journal does not already hold."""

    def __init__(self, tuner: Tuner, candidate: Candidate, profile: BuildProfile) -> None:
        self.tuner, self.candidate, self.profile = tuner, candidate, profile
        self.started = False

    def __enter__(self) -> "_Session":
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.tuner.measurer.stop()

    def measure(self, tag: str) -> Callable[[float], Probe]:
        tuner, key = self.tuner, self.candidate.key

        def one(rate: float) -> Probe:
            probe = tuner.journal.probe(key, tag, rate)
            if probe is None:
                if not self.started:
                    tuner.measurer.start(self.profile)
                    self.started = True
                probe = tuner.measurer.probe(rate, tag)
                tuner.journal.add_probe(key, tag, probe)
                tuner.log(f"[tune]   {self.candidate.label} @ {rate:g} req/s: "
                          f"{'pass' if probe.passed else 'FAIL'} (attainment "
                          f"{probe.attainment:.0%}, goodput {probe.goodput:.2f} req/s"
                          f"{_broke(probe)}) in {probe.seconds:.0f} s")
            tuner.used_s += probe.seconds
            return probe

        return one


def _broke(probe: Probe) -> str:
    return f", most broke {probe.binding}" if probe.binding and not probe.passed else ""
