"""One fuzzing campaign on one target: the inputs it ran, how fast, the distinct crashes and
the slowest inputs, saved as files; shared by `run` (with libFuzzer or alone) and the CI slice.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import targets
from mutator import mutate_bytes

#: Slowest inputs kept per target.
SLOWEST = 5


@dataclass
class Crash:
    key: str
    count: int
    message: str
    file: str | None
    trace: str = ""


@dataclass
class Campaign:
    target: str
    engine: str
    out: Path | None = None  # where crashing and slow inputs are saved (None: not saved)
    inputs: int = 0
    seconds: float = 0.0
    crashes: dict[str, Crash] = field(default_factory=dict)
    slowest: list[tuple[float, int, str | None]] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)

    def one(self, data: bytes) -> None:
        """Run one input on the target, and note what came of it."""
        run = targets.TARGETS[self.target].run
        t0 = time.perf_counter()
        try:
            run(data)
        except Exception as exc:  # noqa: BLE001 - what the target let escape is the finding
            self._crash(exc, data)
        dt = time.perf_counter() - t0
        self.inputs += 1
        if len(self.slowest) < SLOWEST or dt > self.slowest[-1][0]:
            digest = hashlib.sha1(data).hexdigest()[:12]
            name = self._save(data, "slow", digest) if dt > 0.05 else None
            self.slowest.append((dt, len(data), name))
            self.slowest.sort(reverse=True)
            del self.slowest[SLOWEST:]
        self.seconds = time.perf_counter() - self._start

    def _crash(self, exc: Exception, data: bytes) -> None:
        key = targets.crash_key(exc)
        crash = self.crashes.get(key)
        if crash is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:120]
            crash = self.crashes[key] = Crash(
                key,
                0,
                f"{type(exc).__name__}: {exc}"[:300],
                self._save(data, "crashes", safe),
                "".join(traceback.format_exception(exc))[-3000:],
            )
        crash.count += 1
        as_capture = targets.TARGETS[self.target].as_capture
        if crash.count == 1 and as_capture is not None and crash.file is not None:
            cap = as_capture(data)
            if cap is not None:
                Path(crash.file).with_suffix(".pcap").write_bytes(cap)

    def _save(self, data: bytes, kind: str, name: str) -> str | None:
        if self.out is None:
            return None
        path = self.out / kind / self.target / f"{name}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "engine": self.engine,
            "inputs": self.inputs,
            "seconds": self.seconds,
            "crashes": [vars(c) for c in self.crashes.values()],
            "slowest": self.slowest,
        }

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


def random_inputs(target: str, seed: int):
    """The inputs of a campaign without libFuzzer: the structure-aware mutator's captures for
    a generated target, else the byte mutator on the target's seeds (the seeds first)."""
    t = targets.TARGETS[target]
    if t.generate is not None:
        n = seed
        while True:
            yield t.generate(n)
            n += 1
    seeds = t.seeds()
    yield from seeds
    rng = random.Random(seed)
    while True:
        yield mutate_bytes(rng, seeds, t.max_len)


def run_random(
    target: str, inputs: int, seconds: float | None, seed: int, out: Path | None = None
) -> Campaign:
    """Run a target on `inputs` inputs (or for `seconds`) from `random_inputs`."""
    c = Campaign(target, "random", out)
    deadline = None if seconds is None else time.perf_counter() + seconds
    for data in random_inputs(target, seed):
        c.one(data)
        if c.inputs >= inputs or (deadline is not None and time.perf_counter() > deadline):
            break
    return c
