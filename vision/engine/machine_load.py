"""Is a measurement worth keeping? The other processes' share of the CPUs, and the hypervisor's
steal, while `autotune` times the formats: above these the timings say more about the neighbours
than about the formats (a busy run can pick fp32 on a CPU where int8 is much faster, and a cached
verdict would keep that), so such a verdict is measured again and never cached."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_OTHERS = 0.15  # others' share of all CPU time during the measurement
BUSY_STEAL = 0.05  # share of CPU time stolen by the hypervisor


@dataclass
class MachineLoad:
    loadavg_1m: float = 0.0  # /proc/loadavg after the measurement
    others_cpu: float = 0.0  # fraction of all CPUs' time used by other processes meanwhile
    steal: float = 0.0  # fraction of CPU time stolen by the hypervisor meanwhile
    seconds: float = 0.0  # length of the window

    @property
    def calm(self) -> bool:
        return self.others_cpu <= BUSY_OTHERS and self.steal <= BUSY_STEAL


def _cpu_ticks() -> tuple[int, int, int, int] | None:
    """(total, busy, steal, ours) clock ticks from /proc/stat and /proc/self/stat; None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    total = sum(fields)
    busy = user + nice + system + irq + softirq
    ours = int(own[11]) + int(own[12])  # utime + stime (fields 14 and 15 of stat)
    return total, busy, steal, ours


class LoadProbe:
    """`with LoadProbe() as probe: ...` leaves the window's MachineLoad in `probe.load`."""

    def __enter__(self) -> LoadProbe:
        self._start = _cpu_ticks()
        self._t0 = time.perf_counter()
        self.load = MachineLoad()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_ticks()
        seconds = time.perf_counter() - self._t0
        loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if self._start is None or end is None or end[0] <= self._start[0]:
            self.load = MachineLoad(loadavg_1m=round(loadavg, 2), seconds=round(seconds, 2))
            return
        total, busy, steal, ours = (b - a for a, b in zip(self._start, end, strict=True))
        self.load = MachineLoad(
            loadavg_1m=round(loadavg, 2),
            others_cpu=round(max(0.0, busy - ours) / total, 3),
            steal=round(steal / total, 3),
            seconds=round(seconds, 2),
        )
