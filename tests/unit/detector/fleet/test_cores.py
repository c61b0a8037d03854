"""detector.fleet.cores: serve --workers auto, on fake /proc and /sys trees."""

from pathlib import Path

from detector.fleet.cores import available_cores, cgroup_quota, pin_worker


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_no_cgroup_files_means_the_affinity(tmp_path):
    assert cgroup_quota(tmp_path) == float("inf")
    assert available_cores(affinity=6, root=tmp_path) == 6


def test_cgroup_v2_quota_rounds_down_and_the_tightest_ancestor_wins(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
            "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "250000 100000\n",
            "sys/fs/cgroup/kubepods/cpu.max": "800000 100000\n",
        },
    )
    assert cgroup_quota(root) == 2.5
    assert available_cores(affinity=8, root=root) == 2
    assert available_cores(affinity=1, root=root) == 1


def test_cgroup_v1_quota(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert available_cores(affinity=16, root=root) == 3


def test_cgroup_v1_unlimited_and_a_quota_under_one_core(tmp_path):
    unlimited = _tree(
        tmp_path / "a",
        {
            "proc/self/cgroup": "1:cpu:/\n",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert available_cores(affinity=4, root=unlimited) == 4
    small = _tree(
        tmp_path / "b",
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "50000 100000\n"},
    )
    assert available_cores(affinity=4, root=small) == 1


def test_the_host_path_missing_in_a_container_falls_back_to_the_mount_root(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/host/path/not/mounted\n",
            "sys/fs/cgroup/cpu.max": "200000 100000\n",
        },
    )
    assert available_cores(affinity=4, root=root) == 2


def test_a_worker_is_pinned_only_with_one_cpu_per_worker():
    calls: list[set[int]] = []

    def record(pid: int, cpus: set[int]) -> None:
        calls.append(cpus)

    assert pin_worker(1, 2, affinity={4, 6}, set_affinity=record) == 6
    assert pin_worker(0, 2, affinity={4, 6}, set_affinity=record) == 4
    assert calls == [{6}, {4}]
    assert pin_worker(0, 2, affinity={0, 1, 2, 3}, set_affinity=record) is None
    assert calls == [{6}, {4}]
