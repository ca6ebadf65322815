"""The one-host release engine: blue-green and canary through HAProxy, judged by Prometheus, rolled back on failure.

Sequence of `start`: pick the colour that serves (the one HAProxy gives weight) as old, the other as new; start the
new colour's process group on its port (HAProxy weight 0); wait for ``/api/ready``; smoke it directly; run the spec's
steps (setWeight read back from HAProxy, pause, analysis); promote (old colour at weight 0, drained, kept warm for
the bake period so a rollback is one weight flip); stop the old colour with SIGTERM. Any failure: the new colour's
weight goes to 0 first, then it is drained and stopped, the reason recorded, and the command exits non-zero.

Every transition is written to the state file before the next action, so `status`, `promote`, `abort` and
`rollback` work from another shell, and after the deploy command itself died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tradestack.deploy.analysis import Prometheus, run_analysis
from tradestack.deploy.haproxy import HAProxy, HAProxyError
from tradestack.deploy.spec import ReleaseSpec, Step
from tradestack.deploy.state import DeployState, StateStore, now_iso

COLOURS = ("blue", "green")
POLL_SECONDS = 0.2


class DeployError(Exception):
    """The deploy cannot go on (or cannot start); `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class OperatorRequest(Exception):  # noqa: N818 - a control-flow signal carrying the request
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


@dataclass
class Outcome:
    state: DeployState

    @property
    def ok(self) -> bool:
        return self.state.phase == "completed"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    return True


def listener_pids(port: int) -> list[int]:
    """Processes holding a listening TCP socket on `port` (Linux /proc), parents first."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    pids: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.append(int(proc.name))
                    break
    return sorted(pids)


def _topmost(pids: list[int]) -> int | None:
    for pid in pids:
        with contextlib.suppress(OSError):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent not in pids:
                return pid
    return pids[0] if pids else None


class Engine:
    def __init__(self, spec: ReleaseSpec, spec_path: str, *, audit: Callable[[str, str, dict[str, Any]], None] | None = None):
        self.spec = spec
        self.spec_path = spec_path
        target = spec.target
        self.haproxy = HAProxy(target.haproxy_socket, target.backend)
        self.prometheus = Prometheus(target.prometheus)
        self.store = StateStore(Path(target.state_dir))
        self.audit = audit or (lambda action, outcome, detail: None)
        self.log: Callable[[str], None] = lambda message: None

    # -- helpers -------------------------------------------------------------------------------------

    def _save(self, state: DeployState) -> None:
        self.store.save(state)
        self.store.write_metrics(state)

    def _colour_url(self, colour: str) -> str:
        c = self.spec.target.colours[colour]  # type: ignore[index]
        return f"http://{c.host}:{c.port}"

    def _set_weights(self, state: DeployState, new_weight: int) -> dict[str, int]:
        """new colour at `new_weight`, old at the rest (weight 0 takes a server out of the balancing); read back."""
        old_weight = 100 - new_weight
        # Raise before lowering, so the backend never has every server at 0.
        order = [(state.new, new_weight), (state.old, old_weight)]
        if new_weight < 50:
            order.reverse()
        for server, weight in order:
            if weight > 0:
                self.haproxy.set_state(server, "ready")
            self.haproxy.set_weight(server, weight)
        weights = self.haproxy.weights()
        if weights.get(state.new) != new_weight or weights.get(state.old) != old_weight:
            raise DeployError("weight_mismatch", f"HAProxy reports {weights} after setting {state.new}={new_weight}")
        state.weight = new_weight
        state.weight_set_at = time.monotonic()
        state.event("weights", **{state.new: weights[state.new], state.old: weights[state.old]})
        self._save(state)
        self.log(f"weights {state.new}={weights[state.new]} {state.old}={weights[state.old]} (read back)")
        return weights

    def _check_requests(self) -> None:
        what = self.store.take_request()
        if what:
            raise OperatorRequest(what)

    def _wait(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: until an operator request), raising OperatorRequest when one arrives."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            self._check_requests()
            time.sleep(POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
        self._check_requests()

    def _migrate(self, state: DeployState) -> None:
        """The new version's migrations, before it starts, while the old colour serves: expand-only or refused."""
        release = self.spec.release
        if release.migrate is None:
            state.event("migrate", skipped=True)
            self._save(state)
            return
        command = [*release.migrate]
        for revision in release.allow_contract:
            command += ["--allow-contract", revision]
        log_path = self.store.directory / f"migrate-{state.id}.log"
        self.log(f"migrations: {' '.join(command)}")
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own release command
                command, env={**os.environ, **release.env, "COLUMNS": "200"}, cwd=release.workdir, capture_output=True,
                text=True, timeout=self.spec.target.migrate_timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:  # killed: what it said so far tells what it was doing (or waiting for)
            said = _text(exc.stdout) + _text(exc.stderr)
            log_path.write_text(said)
            last = [" ".join(line.split()) for line in said.splitlines() if line.strip()][-3:]
            limit = self.spec.target.migrate_timeout
            raise DeployError(
                "migration_failed",
                f"migrations still running after {limit:g}s, stopped: {' | '.join(last) or 'nothing printed'} (log {log_path})",
            ) from None
        except OSError as exc:
            raise DeployError("migration_failed", f"cannot run {command[0]}: {exc.strerror}") from None
        output = done.stdout + done.stderr
        log_path.write_text(output)
        lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
        if done.returncode != 0:
            refused = " ".join(" ".join(output.split()).partition("migration refused:")[1:]).strip()
            if refused:
                steps = "; ".join(line.lstrip("✗ ") for line in lines if line.startswith("✗"))
                raise DeployError("migration_refused", f"{refused} [{steps}] (log {log_path})")
            raise DeployError("migration_failed", f"exit {done.returncode}: {' | '.join(lines[-5:])} (log {log_path})")
        state.event("migrated", output=" | ".join(lines[-3:]))
        self._save(state)

    def _start_colour(self, state: DeployState) -> subprocess.Popen[bytes]:
        colour = self.spec.target.colours[state.new]  # type: ignore[index]
        if listener_pids(colour.port):
            raise DeployError("port_busy", f"port {colour.port} of {state.new} is in use: stop what listens there first")
        release = self.spec.release
        env = {**os.environ, **release.env}
        log_path = self.store.directory / f"{state.new}-{state.id}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - the operator's own release command
                [*release.command, "--host", colour.host, "--port", str(colour.port)],
                env=env,
                cwd=release.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command: a crashed deploy must not take the colour with it
            )
        state.new_pid = process.pid
        state.event("started", colour=state.new, pid=process.pid, log=str(log_path))
        self._save(state)
        return process

    def _wait_ready(self, state: DeployState, process: subprocess.Popen[bytes]) -> None:
        url = f"{self._colour_url(state.new)}/api/ready"
        deadline = time.monotonic() + self.spec.target.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_requests()
            if process.poll() is not None:
                raise DeployError("not_ready", f"{state.new} exited with {process.returncode} before it was ready")
            try:
                response = httpx.get(url, timeout=2)
                if response.status_code == 200 and self.haproxy.servers()[state.new].operational == 2:
                    state.event("ready", colour=state.new)
                    self._save(state)
                    return
                if response.status_code == 200:
                    last = "ready, waiting for HAProxy's health check to see it up"
                else:
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(POLL_SECONDS)
        raise DeployError("not_ready", f"{state.new} not ready within {self.spec.target.ready_timeout:g}s ({last})")

    def _smoke(self, state: DeployState) -> None:
        settings = self.spec.target.smoke
        if not settings.enabled:
            return
        from tradestack.deploy.smoke import Credentials, run_smoke

        credentials = Credentials(email=os.environ.get(settings.email_env), password=os.environ.get(settings.password_env))
        if not (credentials.email and credentials.password):
            raise DeployError("smoke_failed", f"smoke needs {settings.email_env} and {settings.password_env} in the environment")
        report = run_smoke(self._colour_url(state.new), credentials, symbol=settings.symbol)
        state.event("smoke", ok=report.ok, failed=report.failed)
        self._save(state)
        if not report.ok:
            details = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if c.status == "failed")
            raise DeployError("smoke_failed", f"smoke of {state.new} failed: {details}")

    def _step(self, state: DeployState, step: Step) -> None:
        if step.set_weight is not None:
            self._set_weights(state, step.set_weight)
        elif step.pause is not None:
            if step.pause.duration is None:
                state.phase = "paused"
                state.event("paused", why="pause step without duration: waiting for promote")
                self._save(state)
                self.log("paused: `tradestack deploy promote` to go on, `abort` to roll back")
            try:
                self._wait(step.pause.duration)
            except OperatorRequest as request:
                if request.what != "promote" or step.pause.duration is not None:
                    raise
            state.phase = "running"
        else:
            self._analyse(state, step)

    def _analyse(self, state: DeployState, step: Step) -> None:
        analysis = self.spec.analysis_of(step)
        pending: list[str] = []

        def should_stop() -> bool:
            what = self.store.take_request()
            if what:
                pending.append(what)
            return bool(what)

        def seen(measurement: Any) -> None:
            state.event("measurement", metric=measurement.metric, phase=measurement.phase, detail=measurement.detail)
            if measurement.phase == "failed" and state.first_bad_at is None:
                state.first_bad_at = time.monotonic()
                state.bad_step_at = state.weight_set_at
            self._save(state)
            self.log(f"  {measurement.phase}: {measurement.detail}")

        result = run_analysis(self.prometheus, analysis, state.new, on_measurement=seen, should_stop=should_stop)
        if pending:
            raise OperatorRequest(pending[0])
        state.event("analysis", phase=result.phase, reason=result.reason)
        self._save(state)
        if result.phase in {"failed", "error"}:
            if state.first_bad_at is None:
                state.first_bad_at = time.monotonic()
                state.bad_step_at = state.weight_set_at
            raise DeployError("analysis_failed" if result.phase == "failed" else "analysis_error", result.reason)
        if result.phase == "inconclusive":
            if analysis.inconclusive == "abort":
                raise DeployError("analysis_inconclusive", result.reason)
            state.phase = "paused"
            state.event("paused", why=f"inconclusive analysis: {result.reason}")
            self._save(state)
            self.log(f"analysis inconclusive ({result.reason}): holding; `promote` to go on, `abort` to roll back")
            try:
                self._wait(None)
            except OperatorRequest as request:
                if request.what != "promote":
                    raise
            state.phase = "running"

    # -- the sequence --------------------------------------------------------------------------------

    def start(self) -> Outcome:
        existing = self.store.load()
        if existing is not None and existing.active:
            running = f"running (pid {existing.engine_pid})" if _alive(existing.engine_pid) else "whose command died"
            raise DeployError(
                "in_progress",
                f"deploy {existing.id} of {existing.version} is {existing.phase}, {running}: "
                "see `tradestack deploy status`, then `promote`, `abort` or `rollback`",
            )
        weights = self.haproxy.weights()
        missing = [c for c in COLOURS if c not in weights]
        if missing:
            raise DeployError("bad_target", f"HAProxy backend {self.spec.target.backend!r} has no server {missing}")
        old = max(COLOURS, key=lambda c: weights[c])
        if weights[old] == 0:
            raise DeployError("bad_target", "no colour has traffic in HAProxy: set one to weight 100 first")
        new = "green" if old == "blue" else "blue"
        state = DeployState(
            id=uuid.uuid4().hex[:12], version=self.spec.release.version, spec=self.spec_path, old=old, new=new,
            engine_pid=os.getpid(), started_monotonic=time.monotonic(),
        )  # fmt: skip
        state.old_pid = _topmost(listener_pids(self.spec.target.colours[old].port))  # type: ignore[index]
        self.store.take_request()  # a stale request must not steer this deploy
        state.event("start", old=old, new=new, weights=weights)
        self._save(state)
        self.audit("deploy.start", "success", {"id": state.id, "version": state.version, "old": old, "new": new})
        self.log(f"deploy {state.id}: {state.version} to {new} (serving: {old})")
        try:
            if weights[new] != 0:
                self.haproxy.set_weight(new, 0)
            self._migrate(state)
            process = self._start_colour(state)
            self._wait_ready(state, process)
            self._smoke(state)
            state.phase = "running"
            for index, step in enumerate(self.spec.effective_steps):
                state.step = index
                self._save(state)
                self._check_requests()
                self._step(state, step)
            self._promote(state)
        except OperatorRequest as request:
            # "promote-full" anywhere; "promote" only when it meets a step that is no pause or hold (a race with the
            # command's check of the phase): both finish the release at once.
            if request.what in {"promote", "promote-full"}:
                self._set_weights(state, 100)
                self._promote(state)
            else:
                self._roll_back(state, "aborted", "aborted by an operator")
        except (DeployError, HAProxyError) as exc:
            reason = exc.reason if isinstance(exc, DeployError) else "haproxy_error"
            self._roll_back(state, reason, str(exc))
        return Outcome(state)

    def _promote(self, state: DeployState) -> None:
        """New colour at 100; old colour drained but warm for the bake period, then stopped."""
        state.phase = "baking"
        state.event("promoted", bake_seconds=self.spec.target.bake)
        self._save(state)
        self.log(f"promoted {state.new}; {state.old} kept warm for {self.spec.target.bake:g}s")
        with contextlib.suppress(HAProxyError):
            self.haproxy.set_state(state.old, "drain")
        try:
            self._wait(self.spec.target.bake)
        except OperatorRequest as request:
            if request.what in {"abort", "rollback"}:
                self._roll_back(state, "rolled_back_in_bake", "rolled back by an operator during the bake period")
                return
        self._stop_colour(state.old, state.old_pid)
        self._finish(state, "completed", None)

    def _roll_back(self, state: DeployState, reason: str, message: str) -> None:
        """New colour to weight 0 first (old to 100), then drain and stop it."""
        self.log(f"rolling back: {message}")
        state.reason = reason
        state.event("rollback", reason=reason, detail=message)
        self.haproxy.set_state(state.old, "ready")
        self._set_weights(state, 0)
        if state.first_bad_at is not None:
            state.rollback_seconds = round(time.monotonic() - state.first_bad_at, 3)
        if state.bad_step_at is not None:
            state.bad_step_seconds = round(time.monotonic() - state.bad_step_at, 3)
        self._save(state)
        self._stop_colour(state.new, state.new_pid)
        self._finish(state, "rolled_back", message)

    def _stop_colour(self, colour: str, pid: int | None) -> None:
        """Wait until HAProxy has no request in flight on `colour` (bounded), then SIGTERM its process group."""
        deadline = time.monotonic() + self.spec.target.drain_timeout
        with contextlib.suppress(HAProxyError):
            while self.haproxy.sessions(colour) > 0 and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        pid = pid or _topmost(listener_pids(self.spec.target.colours[colour].port))  # type: ignore[index]
        if pid is None or not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        while _alive(pid) and time.monotonic() < deadline + self.spec.target.drain_timeout:
            time.sleep(POLL_SECONDS)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    def _finish(self, state: DeployState, phase: str, reason: str | None) -> None:
        state.phase = phase
        state.finished_at = now_iso()
        if state.started_monotonic:
            state.duration_seconds = round(time.monotonic() - state.started_monotonic, 3)
        state.event(phase, reason=reason)
        self._save(state)
        self.store.append_history(state)
        self.store.write_metrics(state)
        detail = {"id": state.id, "version": state.version, "new": state.new, "reason": state.reason}
        if phase == "completed":
            self.audit("deploy.complete", "success", detail)
        else:
            self.audit("deploy.rollback", "failure", {**detail, "rollback_seconds": state.rollback_seconds})
        self.log(f"deploy {state.id} {phase}" + (f": {reason}" if reason else ""))

    # -- commands from another shell -----------------------------------------------------------------

    def _current(self) -> DeployState:
        state = self.store.load()
        if state is None:
            raise DeployError("no_deploy", f"no deploy recorded in {self.store.directory}")
        return state

    def request(self, what: str, wait: float = 60.0) -> DeployState:
        """promote / promote-full / abort: handed to the running deploy command, or done here when that command is gone.

        ``promote`` resumes an untimed pause or an inconclusive hold (the next step runs, with its analysis), like
        Argo Rollouts' ``promote``; ``promote-full`` skips every remaining step (new colour at 100 % now), like
        ``promote --full``. When the deploy command died, both finish the release here at once.
        """
        state = self._current()
        if not state.active:
            raise DeployError("not_active", f"deploy {state.id} is {state.phase}: nothing to {what}")
        promoting = what in {"promote", "promote-full"}
        if promoting and state.phase == "baking":
            raise DeployError("not_active", f"deploy {state.id} is already promoted (baking): nothing to {what}")
        if _alive(state.engine_pid) and state.engine_pid != os.getpid():
            if what == "promote" and state.phase != "paused":
                raise DeployError(
                    "not_paused",
                    f"deploy {state.id} is {state.phase} at step {state.step}: `promote` resumes a pause or a hold; "
                    "`promote --full` skips the remaining steps",
                )
            self.store.request(what)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                current = self._current()
                if not current.active or (what == "promote-full" and current.phase in {"baking", "completed"}):
                    return current
                if what == "promote" and (current.step != state.step or current.phase != "paused"):
                    return current
                time.sleep(POLL_SECONDS)
            current = self._current()
            if self.store.has_request():  # not taken: the command has not looked since (or it is stuck)
                raise DeployError(
                    "not_taken",
                    f"the running deploy command (pid {current.engine_pid}) has not taken `{what}` within {wait:g}s; it is "
                    f"{current.phase} at step {current.step}. The request stays for it: it looks between steps and "
                    "measurements and while paused, not while migrating or starting the new colour. "
                    "`tradestack deploy status` shows when it has",
                )
            return current
        # The deploy command died: act here, from the recorded state.
        state.engine_pid = os.getpid()
        state.event("resumed_by", command=what)
        if promoting:
            self._set_weights(state, 100)
            self._promote(state)
        else:
            self._roll_back(state, "aborted" if what == "abort" else "rolled_back", f"{what} after the deploy command stopped")
        return state

    def rollback(self) -> DeployState:
        """Old colour back to 100 %: the running deploy is aborted; a baking one is flipped back."""
        state = self._current()
        if state.active:
            return self.request("rollback" if state.phase == "baking" else "abort")
        raise DeployError(
            "not_active",
            f"deploy {state.id} is {state.phase}: "
            + (
                "nothing to roll back"
                if state.phase == "rolled_back"
                else f"{state.old} was stopped; deploy the previous version"
            ),
        )


def _text(output: str | bytes | None) -> str:
    """What a timed-out `subprocess.run` had captured (bytes on POSIX even in text mode), as text."""
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output
