"""How many worker processes: the container's CPU quota, not the host's core count."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.workers import SharedText, cpu_quota, worker_count


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_cgroup_v2_quota_is_read_from_the_process_own_cgroup(tmp_path: Path) -> None:
    write(tmp_path / "proc-cgroup", "0::/kubepods/pod-a/container-b\n")
    write(tmp_path / "cgroup/kubepods/pod-a/container-b/cpu.max", "250000 100000\n")
    write(tmp_path / "cgroup/cpu.max", "max 100000\n")

    assert cpu_quota(tmp_path / "cgroup", tmp_path / "proc-cgroup") == 2.5


def test_a_cgroup_v1_quota_is_read_from_the_cpu_controller(tmp_path: Path) -> None:
    write(tmp_path / "proc-cgroup", "4:memory:/pod\n2:cpu,cpuacct:/pod\n")
    write(tmp_path / "cgroup/cpu,cpuacct/pod/cpu.cfs_quota_us", "150000\n")
    write(tmp_path / "cgroup/cpu,cpuacct/pod/cpu.cfs_period_us", "100000\n")

    assert cpu_quota(tmp_path / "cgroup", tmp_path / "proc-cgroup") == 1.5


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"cgroup/cpu.max": "max 100000\n"}, "cgroup v2 without a limit"),
        (
            {"cgroup/cpu/cpu.cfs_quota_us": "-1\n", "cgroup/cpu/cpu.cfs_period_us": "100000\n"},
            "cgroup v1 without a limit",
        ),
        ({}, "no cgroup files at all"),
    ],
)
def test_no_quota_is_none(tmp_path: Path, files: dict[str, str], why: str) -> None:
    write(tmp_path / "proc-cgroup", "0::/\n")
    for relative, text in files.items():
        write(tmp_path / relative, text)

    assert cpu_quota(tmp_path / "cgroup", tmp_path / "proc-cgroup") is None, why


@pytest.mark.parametrize(
    ("setting", "quota", "cpus", "expected"),
    [
        (3, 1.0, 64, 3),  # an explicit count wins
        (0, 2.0, 64, 2),  # a 2-CPU pod on a 64-core node runs 2, not 64
        (0, 2.5, 64, 2),  # a fraction of a CPU is not worth a process
        (0, 0.5, 64, 1),  # at least one
        (0, None, 4, 4),  # no quota: the CPUs the process may run on
        (0, 8.0, 2, 2),  # a quota above the CPUs available does not add any
    ],
)
def test_worker_count(setting: int, quota: float | None, cpus: int, expected: int) -> None:
    assert worker_count(setting, quota=quota, cpus=cpus) == expected


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        worker_count(-1)


def test_shared_text_moves_its_generation_on_every_publish() -> None:
    shared = SharedText(size_bytes=16)
    assert shared.read() == (0, "")

    shared.publish("1.0.1")
    shared.publish("1.0.1")

    assert shared.read() == (2, "1.0.1")
    with pytest.raises(ValueError, match="at most 15 bytes"):
        shared.publish("a version far too long")
    assert shared.read() == (2, "1.0.1")
