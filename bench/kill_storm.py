"""
A kill storm: a master and two slaves (real C{twist gridregistry} processes
with SQLite data directories, mutual TLS) while a writer adds well-known
objects and applications through the master and a killer SIGKILLs replicas
at random moments and restarts them with the same roles:

  - C{master}: the master, in the middle of whatever it was writing;
  - C{slave}: a slave, restarted on its database (it syncs by changes);
  - C{slave-wipe}: a slave, restarted on an empty data directory (it needs
    a snapshot);
  - C{slave-in-sync}: a slave restarted (on a wiped directory half of the
    time), then killed again while it syncs;
  - C{master-in-sync}: a slave wiped and restarted, then the master killed
    while it sends the snapshot.

The writer records every write the master acknowledged. At the end
everything is healed (every replica running, no more faults), and once
every slave is live again the run checks that (a) every acknowledged write
is on every replica (each replica's own C{object list} and C{application
list}, read through C{--replica}) and (b) every replica reports the same
digest (C{registry describe}). It prints the fault matrix and exits 1 if a
check failed.

Some applications are large (C{--objects-per-large} well-known objects,
about 155 kB of XML for 2,000) unless C{--no-large}.

    python -m bench.kill_storm [--seconds 120] [--no-large] [--seed N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)

from bench._grid import MASTER, Grid, remove_tree
from gridreg.admin.session import (
    REFUSALS,
    AdminSession,
    AdminSessionError,
    open_admin_session,
)
from gridreg.config.properties import Properties
from tests._lineprocess import ProcessError
from tests._processes import RunningRegistry

SLAVES = ("Replica1", "Replica2")
NAMES = (MASTER, *SLAVES)
TARGET = "tcp -h 127.0.0.1 -p 10000"
FAULTS = ("master", "slave", "slave-wipe", "slave-in-sync", "master-in-sync")
#: relative weights of the faults
WEIGHTS = (3, 3, 2, 2, 2)
#: the master's log line for a dropped slave (diagnostics only)
_DROPPED = re.compile(r"dropping slave `[^']*': (.*)$")
_SERIAL = re.compile(r"\d+")


def application_xml(name: str, objects: int) -> str:
    """An IceGrid descriptor: one replica group with C{objects} well-known objects."""
    lines = "".join(
        f'      <object identity="{name}/object-{i:05d}" type="::Storm::Object{i % 7}"/>\n'
        for i in range(objects)
    )
    return (
        "<icegrid>\n"
        f'  <application name="{name}">\n'
        f"    <description>kill storm application with {objects} objects</description>\n"
        f'    <replica-group id="{name}-group">\n'
        '      <load-balancing type="round-robin" n-replicas="0"/>\n'
        f"{lines}"
        "    </replica-group>\n"
        "  </application>\n"
        "</icegrid>\n"
    )


class StormGrid(Grid):
    """The storm's grid: short replica session timeout, replica tracing on."""

    session_timeout = 2

    def properties(self, name: str) -> dict[str, str]:
        props = super().properties(name)
        props["IceGrid.Registry.ReplicaSessionTimeout"] = str(self.session_timeout)
        props["IceGrid.Registry.Trace.Replica"] = "1"
        return props

    def admin_properties(self) -> Properties:
        properties = Properties()
        for key, value in {
            "Ice.Default.Locator": self.locator(),
            "IceSSL.DefaultDir": str(self.certs),
            "IceSSL.CAs": "ca.pem",
            "IceSSL.CertFile": "admin-admin.pem",
            "IceSSL.KeyFile": "admin-admin.key",
        }.items():
            properties.set(key, value)
        return properties


@attrs.define
class StormResult:
    """What a storm did and found."""

    seconds: float
    large: bool
    seed: int
    faults: Counter[str] = attrs.Factory(Counter)
    attempted: Counter[str] = attrs.Factory(Counter)
    acknowledged: Counter[str] = attrs.Factory(Counter)
    failed: Counter[str] = attrs.Factory(Counter)
    errors: Counter[str] = attrs.Factory(Counter)
    error_seconds: float = 0.0
    longest_error: float = 0.0
    #: what the killer had just done when the longest error window began
    longest_error_after: str = ""
    #: (seconds into the storm, fault) for every fault
    timeline: list[tuple[float, str]] = attrs.Factory(list)
    #: per replica: acknowledged writes it does not have
    lost: dict[str, list[str]] = attrs.Factory(dict)
    digests: dict[str, str] = attrs.Factory(dict)
    slaves_live: bool = False
    live_after: float | None = None
    same_digest_after: float | None = None
    problems: list[str] = attrs.Factory(list)
    #: why the master dropped slaves or failed syncs, from its log
    drop_reasons: Counter[str] = attrs.Factory(Counter)

    @property
    def lost_count(self) -> int:
        return len({w for missing in self.lost.values() for w in missing})

    @property
    def same_digest(self) -> bool:
        return len(self.digests) == len(NAMES) and len(set(self.digests.values())) == 1

    @property
    def ok(self) -> bool:
        return self.slaves_live and self.lost_count == 0 and self.same_digest

    def report(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        rows = [
            f"kill storm: {self.seconds:.0f} s, large descriptors {'on' if self.large else 'off'}"
            f", seed {self.seed}",
            "faults injected: "
            + ", ".join(f"{f} {self.faults[f]}" for f in FAULTS)
            + f" (total {sum(self.faults.values())})",
            "writes:          "
            + ", ".join(
                f"{kind} {self.acknowledged[kind]}/{self.attempted[kind]} acknowledged"
                for kind in ("object", "application", "large-application")
                if self.attempted[kind]
            )
            + f"; failed {sum(self.failed.values())}",
            "writer errors:   "
            + (", ".join(f"{k} {v}" for k, v in self.errors.most_common(4)) or "none")
            + f"; writers saw errors for {self.error_seconds:.1f} s in all, "
            f"longest {self.longest_error:.1f} s"
            + (f" (after {self.longest_error_after})" if self.longest_error_after else ""),
            f"healed:          slaves live {'yes' if self.slaves_live else 'NO'} after "
            f"{fmt(self.live_after)}; same digest {'yes' if self.same_digest else 'NO'} after "
            f"{fmt(self.same_digest_after)}",
            "lost:            "
            + (
                ", ".join(f"{n} {len(self.lost.get(n, []))}" for n in NAMES)
                + f" (distinct {self.lost_count})"
            ),
            "digests:         " + ", ".join(f"{n} {self.digests.get(n, '?')[:12]}" for n in NAMES),
            f"result:          {'PASS' if self.ok else 'FAIL'}",
        ]
        rows.append(
            "slaves dropped:  "
            + ("; ".join(f"{n}x {why}" for why, n in self.drop_reasons.most_common(4)) or "never")
        )
        rows += [f"  problem: {p}" for p in self.problems[:10]]
        return "\n".join(rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "large": self.large,
            "seed": self.seed,
            "faults": dict(self.faults),
            "attempted": dict(self.attempted),
            "acknowledged": dict(self.acknowledged),
            "failed": dict(self.failed),
            "errors": dict(self.errors),
            "error_seconds": self.error_seconds,
            "longest_error_seconds": self.longest_error,
            "longest_error_after": self.longest_error_after,
            "timeline": self.timeline,
            "lost": {n: len(v) for n, v in self.lost.items()},
            "lost_distinct": self.lost_count,
            "digests": self.digests,
            "slaves_live": self.slaves_live,
            "live_after": self.live_after,
            "same_digest_after": self.same_digest_after,
            "ok": self.ok,
            "problems": self.problems,
            "drop_reasons": dict(self.drop_reasons),
        }


class Storm:
    """One kill storm on a fresh grid under C{root}."""

    def __init__(
        self,
        reactor: Any,
        root: Path,
        seconds: float,
        large: bool = True,
        seed: int | None = None,
        interval: tuple[float, float] = (0.5, 3.0),
        large_every: int = 25,
        objects_per_large: int = 2000,
        heal_timeout: float = 60.0,
        verbose: bool = False,
        every_fault: bool = False,
        min_faults: int = 0,
    ) -> None:
        """
        @param interval: the bounds of the random pause between two faults.
        @param every_fault: inject the faults in rounds of every kind (in a
            random order each round) instead of drawing each by weight, so
            that even a short storm has each kind.
        @param min_faults: go on past C{seconds} until this many faults were
            injected (on a slow machine), for at most C{2 * seconds} more.
        """
        self.reactor = reactor
        self.grid = StormGrid(reactor, "gridreg", root.resolve(), NAMES)
        self.seconds = seconds
        self.large = large
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.rng = random.Random(self.seed)
        self.interval = interval
        self.large_every = large_every
        self.objects_per_large = objects_per_large
        self.heal_timeout = heal_timeout
        self.verbose = verbose
        self.every_fault = every_fault
        self.min_faults = min_faults
        self._round: list[str] = []
        self.result = StormResult(seconds, large, self.seed)
        #: what the master acknowledged: ("object", identity) or ("application", name)
        self.acked: list[tuple[str, str]] = []
        self.stopping = False
        #: every replica process started, for the reasons in their logs
        self.processes: list[RunningRegistry] = []
        self._error_since: float | None = None
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        if self.verbose:
            elapsed = time.monotonic() - self._started
            sys.stderr.write(f"[{elapsed:7.2f}] {text}\n")

    # -- replicas ----------------------------------------------------------------------

    async def start(self, name: str) -> None:
        why = ""
        for attempt in range(5):
            try:
                self.processes.append(await self.grid.start(name))
                return
            except ProcessError as e:  # e.g. its port still held for a moment
                self.grid.running.pop(name, None)
                why = str(e)
                self.say(f"start of {name} failed ({attempt + 1}): {why.splitlines()[0]}")
                await deferLater(self.reactor, 0.5)
        raise RuntimeError(f"cannot start {name}: {why}")

    async def kill(self, name: str) -> None:
        registry = self.grid.running.pop(name, None)
        if registry is not None:
            await registry.kill("KILL")

    async def pause(self, low: float, high: float) -> None:
        await deferLater(self.reactor, self.rng.uniform(low, high))

    async def fault(self, fault: str) -> None:
        self.result.faults[fault] += 1
        self.result.timeline.append((round(time.monotonic() - self._started, 2), fault))
        slave = self.rng.choice(SLAVES)
        self.say(f"fault {fault}" + ("" if fault == "master" else f" ({slave})"))
        if fault == "master":
            await self.kill(MASTER)
            await self.pause(0.1, 1.5)
            await self.start(MASTER)
        elif fault in ("slave", "slave-wipe"):
            await self.kill(slave)
            if fault == "slave-wipe":
                self.grid.wipe(slave)
            await self.pause(0.1, 1.5)
            await self.start(slave)
        elif fault == "slave-in-sync":
            await self.kill(slave)
            if self.rng.random() < 0.5:
                self.grid.wipe(slave)
            await self.start(slave)
            await self.pause(0.0, 0.5)
            await self.kill(slave)
            await self.pause(0.1, 1.0)
            await self.start(slave)
        elif fault == "master-in-sync":
            await self.kill(slave)
            self.grid.wipe(slave)
            await self.start(slave)
            await self.pause(0.0, 0.4)
            await self.kill(MASTER)
            await self.pause(0.1, 1.0)
            await self.start(MASTER)

    async def killer(self, deadline: float) -> None:
        """Inject faults until C{deadline} and L{min_faults}, but at most thrice as long."""
        limit = deadline + 2 * self.seconds

        def more() -> bool:
            now = time.monotonic()
            if now < deadline:
                return True
            return now < limit and sum(self.result.faults.values()) < self.min_faults

        while more():
            await self.pause(*self.interval)
            if not more():
                break
            await self.fault(self._next_fault())

    def _next_fault(self) -> str:
        if not self.every_fault:
            return self.rng.choices(FAULTS, WEIGHTS)[0]
        if not self._round:
            self._round = self.rng.sample(FAULTS, len(FAULTS))
        return self._round.pop()

    # -- writing -----------------------------------------------------------------------

    def _error(self, what: str) -> None:
        if self._error_since is None:
            self._error_since = time.monotonic()
        self.result.errors[what] += 1

    def _success(self) -> None:
        if self._error_since is not None:
            window = time.monotonic() - self._error_since
            self.result.error_seconds += window
            if window > self.result.longest_error:
                self.result.longest_error = window
                began = self._error_since - self._started
                before = [(t, f) for t, f in self.result.timeline if t <= began + 0.01]
                if before:
                    t, f = before[-1]
                    self.result.longest_error_after = (
                        f"fault {f} at {t:.1f} s; errors from {began:.1f} s"
                    )
            self._error_since = None

    async def writer(self) -> None:
        session: AdminSession | None = None
        properties = self.grid.admin_properties()
        number = 0
        try:
            while not self.stopping:
                if session is None:
                    try:
                        session = await open_admin_session(self.reactor, properties, None, 5.0)
                    except (AdminSessionError, *REFUSALS) as e:
                        self._error(f"connect: {type(e).__name__}")
                        await deferLater(self.reactor, 0.1)
                        continue
                number += 1
                kind, key, write = self._next_write(number)
                self.result.attempted[kind] += 1
                try:
                    await write(session)
                except REFUSALS as e:
                    self.result.failed[kind] += 1
                    self._error(f"refused: {type(e).__name__}")
                    self.say(f"write {key} refused: {e}")
                except AdminSessionError as e:
                    self.result.failed[kind] += 1
                    self._error(f"{kind}: {type(e).__name__}")
                    await session.close()
                    session = None
                else:
                    self.result.acknowledged[kind] += 1
                    self.acked.append(("object" if kind == "object" else "application", key))
                    self._success()
        finally:
            if session is not None:
                await session.close()
            self._success()

    def _next_write(self, number: int) -> tuple[str, str, Any]:
        if self.large and number % self.large_every == 0:
            name = f"StormLarge{number}"
            xml = application_xml(name, self.objects_per_large)
            return "large-application", name, self._application(xml)
        if number % 5 == 0:
            name = f"StormApp{number}"
            return "application", name, self._application(application_xml(name, 5))
        identity = f"storm/object-{number}"

        async def add_object(session: AdminSession) -> None:
            await session.add_object(f"{identity}:{TARGET}", "::Storm::Object")

        return "object", identity, add_object

    @staticmethod
    def _application(xml: str) -> Any:
        async def add(session: AdminSession) -> None:
            await session.upload_and_add_application(xml, update=False)

        return add

    # -- healing and checking --------------------------------------------------------------

    async def session(self, replica: str | None) -> AdminSession:
        return await open_admin_session(self.reactor, self.grid.admin_properties(), replica, 10.0)

    async def _master_lists_slaves_live(self) -> bool:
        try:
            session = await self.session(None)
        except AdminSessionError:
            return False
        try:
            replicas = await session.list("registry")
        except AdminSessionError:
            return False
        finally:
            await session.close()
        live = {r["name"] for r in replicas if r["alive"]}
        return live >= set(NAMES)

    async def _digests(self) -> dict[str, str]:
        digests = {}
        for name in NAMES:
            try:
                session = await self.session(None if name == MASTER else name)
            except AdminSessionError as e:
                self.say(f"no session with {name}: {e}")
                continue
            try:
                digests[name] = (await session.describe("registry", name))["digest"]
            except AdminSessionError as e:
                self.say(f"no digest from {name}: {e}")
            finally:
                await session.close()
        return digests

    async def heal(self) -> None:
        """Every replica running; wait (bounded) for live slaves, then one digest."""
        for name in NAMES:
            if name not in self.grid.running:
                await self.start(name)
        healed = time.monotonic()
        deadline = healed + self.heal_timeout
        while time.monotonic() < deadline:
            if await self._master_lists_slaves_live():
                self.result.slaves_live = True
                self.result.live_after = time.monotonic() - healed
                break
            await deferLater(self.reactor, 0.5)
        if not self.result.slaves_live:
            self.result.problems.append(
                f"slaves not all live {self.heal_timeout:.0f} s after healing"
            )
        # live slaves may still be applying the last changes: wait for one digest
        while True:
            self.result.digests = await self._digests()
            if self.result.same_digest:
                self.result.same_digest_after = time.monotonic() - healed
                break
            if time.monotonic() >= deadline or not self.result.slaves_live:
                break
            await deferLater(self.reactor, 0.5)

    async def check(self) -> None:
        """Is every acknowledged write on every replica?"""
        wanted: dict[str, set[str]] = {"object": set(), "application": set()}
        for kind, key in self.acked:
            wanted[kind].add(key)
        for name in NAMES:
            try:
                session = await self.session(None if name == MASTER else name)
                try:
                    objects = {o["identity"] for o in await session.list("object", "storm/*")}
                    apps = {a["name"] for a in await session.list("application")}
                finally:
                    await session.close()
            except AdminSessionError as e:
                self.result.problems.append(f"cannot read {name}: {e}")
                self.result.lost[name] = sorted(wanted["object"] | wanted["application"])
                continue
            missing = sorted(wanted["object"] - objects) + sorted(wanted["application"] - apps)
            self.result.lost[name] = missing
            if missing:
                self.result.problems.append(
                    f"{name} lacks {len(missing)} acknowledged writes, e.g. {missing[:3]}"
                )

    def read_logs(self) -> None:
        """Collect why slaves were dropped, from every master's log."""
        for registry in self.processes:
            for line in registry.process.lines:
                try:  # twist logs JSON text sequences: RS, an event, LF
                    event = json.loads(line.lstrip("\x1e"))
                except ValueError:
                    continue
                match = _DROPPED.search(formatEvent(event) or "")
                if match:
                    self.result.drop_reasons[_SERIAL.sub("N", match.group(1)).strip()] += 1

    async def run(self) -> StormResult:
        self.say(f"seed {self.seed}")
        try:
            for name in NAMES:
                await self.start(name)
            self._started = time.monotonic()
            deadline = self._started + self.seconds
            writing = Deferred.fromCoroutine(self.writer())
            try:
                await self.killer(deadline)
            finally:
                self.stopping = True
                await writing
            self.result.seconds = time.monotonic() - self._started
            self.say("healing")
            await self.heal()
            await self.check()
        finally:
            await self.grid.stop_all()
            self.read_logs()
        return self.result


async def run_storm(
    reactor: Any, root: Path, seconds: float, large: bool, seed: int | None = None, **options: Any
) -> StormResult:
    """Run one storm in C{root} (kept), see L{Storm}."""
    return await Storm(reactor, root, seconds, large, seed, **options).run()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.kill_storm", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long faults go on")
    parser.add_argument("--no-large", action="store_true", help="no large application descriptors")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--large-every", type=int, default=25, help="every Nth write is large")
    parser.add_argument("--objects-per-large", type=int, default=2000)
    parser.add_argument("--heal-timeout", type=float, default=60.0)
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the replicas' directories")
    parser.add_argument("--verbose", action="store_true", help="say each fault on stderr")
    return parser.parse_args(argv)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="kill-storm-"))
    reactor.addSystemEventTrigger("after", "shutdown", remove_tree, root, args.keep)
    storm = Storm(
        reactor,
        root,
        args.seconds,
        large=not args.no_large,
        seed=args.seed,
        large_every=args.large_every,
        objects_per_large=args.objects_per_large,
        heal_timeout=args.heal_timeout,
        verbose=args.verbose,
    )
    result = await storm.run()
    print(f"directory {root}{'' if args.keep else ' (removed)'}")
    print(result.report())
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_json(), indent=2, sort_keys=True) + "\n")
    if not result.ok:
        raise SystemExit(1)


def run(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    level = LogLevel.warn if args.verbose else LogLevel.critical
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))


if __name__ == "__main__":
    run(sys.argv[1:])
