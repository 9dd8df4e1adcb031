"""QEMU processes, their monitors, and the agent in the guest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common import AGENT_PORT, GUEST_IP
from lab.hostclock import WallClock
from migmon.parse import json_objects_in
from migmon.switchover.record import TRACE_EVENTS


def accel_choice() -> tuple[str, str]:
    """KVM where it can boot a stock guest kernel, else TCG; and why."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no /dev/kvm"
    flags = Path("/proc/cpuinfo").read_text()
    if not re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M):
        # KVM-PVM: /dev/kvm is there, but a stock guest kernel hangs at boot.
        return "tcg", "/dev/kvm without vmx/svm (KVM-PVM: a stock kernel hangs at boot)"
    return "kvm", "/dev/kvm with vmx/svm"


@dataclass
class Qemu:
    """One QEMU process and its QMP connection, with the events it sent."""

    tag: str
    tap: str
    proc: subprocess.Popen[bytes]
    qmp: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None
    #: A second monitor, for mig_mon's QMP recorder.
    rec_sock: Path | None = None
    #: QEMU's log with the downtime trace points (QEMU 8.2 and later).
    trace_log: Path | None = None

    async def run(self, cmd: str, **args: Any) -> Any:
        return await self.qmp.execute(cmd, args or None)

    def event_time(self, name: str, after: float = 0.0) -> float | None:
        for e in self.events:
            ts = e["timestamp"]
            t = ts["seconds"] + ts["microseconds"] / 1e6
            if e["event"] == name and t >= after:
                return float(t)
        return None


class Lab:
    def __init__(
        self,
        lab: Path,
        x: Path,
        kernel: Path,
        initrd: Path,
        image: Path,
        accel: str,
        mem_mb: int,
        trace: bool,
    ) -> None:
        self.lab, self.x, self.trace = lab, x, trace
        self.kernel, self.initrd, self.image = kernel, initrd, image
        self.accel, self.mem_mb = accel, mem_mb
        self.serial: list[Path] = []
        self.started: list[Qemu] = []
        self.count = 0
        #: The host's wall clock against its monotonic one, through the run.
        self.wall = WallClock().start()

    async def start(self, tap: str, incoming: bool, extra_trace: tuple[str, ...] = ()) -> Qemu:
        from qemu.qmp import QMPClient
        from qemu.qmp.protocol import ConnectError

        self.count += 1
        tag = f"q{self.count}"
        sock = self.lab / f"{tag}.qmp"
        sock.unlink(missing_ok=True)
        serial = self.lab / f"{tag}.serial.log"
        self.serial.append(serial)
        argv = [
            str(self.x / "usr/bin/qemu-system-x86_64"),
            "-name",
            f"mmlab-{tag}",
            "-L",
            str(self.x / "usr/share/qemu"),
            "-L",
            str(self.x / "usr/share/seabios"),
            "-machine",
            "pc",
            "-accel",
            self.accel,
            "-smp",
            "1",
            "-m",
            str(self.mem_mb),
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{serial}",
            "-kernel",
            str(self.kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4",
            "-drive",
            f"file={self.image},if=virtio,format=raw,readonly=on",
            "-netdev",
            f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02,romfile=",
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ]
        rec = self.lab / f"{tag}.rec.qmp"
        rec.unlink(missing_ok=True)
        argv += ["-qmp", f"unix:{rec},server=on,wait=off"]
        trace_log = None
        if self.trace:
            trace_log = self.lab / f"{tag}.trace.log"
            trace_log.unlink(missing_ok=True)
            argv += ["-msg", "timestamp=on", "-D", str(trace_log)]
            for name in (*TRACE_EVENTS, *extra_trace):
                argv += ["-trace", name]
        if incoming:
            argv += ["-incoming", "defer"]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=open(  # noqa: SIM115
                self.lab / f"{tag}.stderr", "wb"
            ),
        )
        for _ in range(200):
            if sock.exists() or proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        if proc.poll() is not None:
            err = (self.lab / f"{tag}.stderr").read_text()
            raise RuntimeError(f"QEMU {tag} exited: {err.strip()}")
        qmp = QMPClient(tag)
        # The socket file exists from QEMU's bind(), a moment before its
        # listen(): on a busy machine a connect lands in between (refused).
        for attempt in range(100):
            try:
                await qmp.connect(str(sock))
                break
            except ConnectError:
                if attempt == 99 or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
        vm = Qemu(tag, tap, proc, qmp, rec_sock=rec, trace_log=trace_log)
        self.started.append(vm)

        async def pump() -> None:
            async for ev in qmp.events:
                vm.events.append(dict(ev))

        vm.pump = asyncio.create_task(pump())
        return vm

    async def stop(self, vm: Qemu) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(vm.run("quit"), 5)
        with contextlib.suppress(Exception):
            await vm.qmp.disconnect()
        if vm.pump:
            vm.pump.cancel()
        try:
            vm.proc.wait(10)
        except subprocess.TimeoutExpired:
            vm.proc.kill()
            vm.proc.wait()


async def agent(req: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    r, w = await asyncio.wait_for(
        asyncio.open_connection(GUEST_IP, AGENT_PORT, limit=256 * 2**20), 10
    )
    try:
        w.write(json.dumps(req).encode() + b"\n")
        await w.drain()
        line = await asyncio.wait_for(r.readline(), timeout)
    finally:
        w.close()
    if not line:
        raise RuntimeError(f"the guest agent closed the connection on {req.get('op')}")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise RuntimeError(f"guest agent: {reply['error']} ({req})")
    return reply


async def wait_agent(vm: Qemu, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if vm.proc.poll() is not None:
            raise RuntimeError(f"QEMU {vm.tag} exited while the guest booted")
        try:
            await agent({"op": "time"}, timeout=5)
            return time.monotonic() - t0
        except (OSError, asyncio.TimeoutError, RuntimeError):
            await asyncio.sleep(1)
    raise TimeoutError(f"the guest did not answer within {limit:.0f} s")


async def clock_offset() -> tuple[float, float]:
    """Guest wall clock minus host wall clock, and its uncertainty (half the
    round trip), the best of ten."""
    best = (0.0, math.inf)
    for _ in range(10):
        t0 = time.time()
        g = (await agent({"op": "time"}))["unix_s"]
        t1 = time.time()
        if (t1 - t0) / 2 < best[1]:
            best = (g - (t0 + t1) / 2, (t1 - t0) / 2)
    return best


#: The JSON objects of a tool's output (the text lines between passed over).
json_objs = json_objects_in
