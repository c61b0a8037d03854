"""detector.fleet.cores (serve --workers auto) on fake /proc and /sys trees, and
detector.fleet.layout: the state directory per worker and the guard on changing N."""

from pathlib import Path

import pytest

from detector.errors import ConfigError
from detector.fleet import layout
from detector.fleet.cores import available_cores, cgroup_quota


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


def test_layout_records_n_and_refuses_another(tmp_path):
    state = tmp_path / "state"
    layout.check(state, 2)
    assert (state / "workers").read_text() == "2\n"
    layout.check(state, 2)  # the same N again
    with pytest.raises(ConfigError, match=r"holds the checkpoints of 2 workers.*--workers 3"):
        layout.check(state, 3)
    with pytest.raises(ConfigError, match="Start with --workers 2"):
        layout.check(state, 1)


def test_layout_refuses_workers_on_a_single_process_checkpoint(tmp_path):
    (tmp_path / "CURRENT").write_text("ckpt-1\n")
    layout.check(tmp_path, 1)
    with pytest.raises(ConfigError, match="checkpoints of 1 worker, "):
        layout.check(tmp_path, 2)


def test_layout_reads_worker_dirs_without_the_marker(tmp_path):
    (tmp_path / "worker-0").mkdir()
    (tmp_path / "worker-2").mkdir()
    assert layout.recorded_workers(tmp_path) == 3
    assert layout.worker_dir(tmp_path, 1) == tmp_path / "worker-1"


def test_layout_names_a_damaged_marker(tmp_path):
    (tmp_path / "workers").write_text("two\n")
    with pytest.raises(ConfigError, match="workers: expected the number of workers"):
        layout.check(tmp_path, 2)


def test_an_empty_or_missing_state_dir_takes_any_n(tmp_path):
    layout.check(tmp_path / "new", 4)
    assert layout.recorded_workers(tmp_path / "new") == 4
    layout.check(tmp_path / "other", 1)
    assert not (tmp_path / "other").exists()
