"""Tests for installer/gpu_probe.py: the torch build chosen from recorded nvidia-smi outputs.

The probe runs real (fake) nvidia-smi programs: small scripts that print a recorded query
answer and header, fail, or sleep past the timeout.
"""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest
from installer_scripts import load

gpu_probe = load("gpu_probe")

# --------------------------------------------------------------------------- recorded outputs

# Query rows as nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
# prints them (Linux drivers have three parts, Windows drivers two), with the header's CUDA.
GTX_1080 = ("NVIDIA GeForce GTX 1080, 6.1, 580.95.05", "13.0")
V100 = ("Tesla V100-SXM2-16GB, 7.0, 570.133.20", "12.8")
T4 = ("Tesla T4, 7.5, 535.183.01", "12.2")
RTX_3090 = ("NVIDIA GeForce RTX 3090, 8.6, 580.82.09", "13.0")
RTX_3090_DRIVER_570 = ("NVIDIA GeForce RTX 3090, 8.6, 570.86.10", "12.8")
RTX_4090_WINDOWS = ("NVIDIA GeForce RTX 4090, 8.9, 581.57", "13.0")
H100 = ("NVIDIA H100 80GB HBM3, 9.0, 575.57.08", "12.9")
RTX_5090 = ("NVIDIA GeForce RTX 5090, 12.0, 580.95.05", "13.0")
RTX_5090_DRIVER_570 = ("NVIDIA GeForce RTX 5090, 12.0, 570.124.06", "12.8")
B200 = ("NVIDIA B200, 10.0, 580.65.06", "13.0")
T4_DRIVER_470 = ("Tesla T4, 7.5, 470.82.01", "11.4")
K80 = ("Tesla K80, 3.7, 470.82.01", "11.4")

HEADER = """\
Mon Nov 23 15:51:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.95.05              Driver Version: 580.95.05      CUDA Version: {cuda}     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
"""


def _fake_smi(folder: Path, rows=(), cuda="13.0", query_code=0, sleep=0.0, query_text=None,
               header=True) -> str:
    """Write a fake nvidia-smi (a Python script) answering the query and the plain call."""
    folder.mkdir(parents=True, exist_ok=True)
    query = query_text if query_text is not None else "".join(row + "\n" for row in rows)
    (folder / "query.txt").write_text(query, encoding="utf-8")
    (folder / "header.txt").write_text(HEADER.format(cuda=cuda) if header else "", "utf-8")
    script = folder / "nvidia-smi"
    script.write_text(
        "#!%s\nimport sys, time, pathlib\n"
        "here = pathlib.Path(__file__).parent\n"
        "time.sleep(%r)\n"
        "if len(sys.argv) > 1:\n"
        "    sys.stdout.write((here / 'query.txt').read_text()); sys.exit(%d)\n"
        "sys.stdout.write((here / 'header.txt').read_text())\n"
        % (sys.executable, sleep, query_code),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _choose(tmp_path, *gpus):
    rows = [row for row, _ in gpus]
    cuda = min((cuda for _, cuda in gpus), key=lambda text: tuple(map(int, text.split("."))))
    binary = _fake_smi(tmp_path / "smi", rows, cuda)
    found = gpu_probe.probe([binary], timeout=20)
    return gpu_probe.choose(found), found


# --------------------------------------------------------------------------- one GPU


@pytest.mark.parametrize(
    "gpu, build",
    [
        (GTX_1080, "cu126"),  # Pascal: cu130 has no kernels for it
        (V100, "cu126"),  # Volta: likewise
        (T4, "cu126"),  # Turing, but the driver only does CUDA 12.2
        (RTX_3090, "cu130"),
        (RTX_3090_DRIVER_570, "cu126"),
        (RTX_4090_WINDOWS, "cu130"),
        (H100, "cu126"),  # driver 575 (CUDA 12.9): cu130 needs 580+
        (RTX_5090, "cu130"),  # Blackwell: only cu130 has kernels
        (B200, "cu130"),
        (RTX_5090_DRIVER_570, "cpu"),  # Blackwell on a pre-580 driver: no build fits
        (T4_DRIVER_470, "cpu"),  # CUDA 11.4 driver
        (K80, "cpu"),  # Kepler: no kernels anywhere
    ],
    ids=["gtx1080", "v100", "t4-cuda12.2", "rtx3090", "rtx3090-driver570", "rtx4090-windows",
         "h100-driver575", "rtx5090", "b200", "rtx5090-driver570", "t4-driver470", "k80"],
)
def test_build_for_one_gpu(tmp_path, gpu, build):
    chosen, found = _choose(tmp_path, gpu)
    assert chosen.name == build
    expected_index = None if build == "cpu" else "https://download.pytorch.org/whl/" + build
    assert chosen.index_url == expected_index
    assert gpu[0].split(",")[0] in chosen.reason  # the user sees which GPU decided
    assert found.driver_cuda == tuple(int(part) for part in gpu[1].split("."))


def test_old_driver_message_says_what_to_update(tmp_path):
    chosen, _ = _choose(tmp_path, RTX_5090_DRIVER_570)
    assert "update the NVIDIA driver" in chosen.reason and "CUDA 13.0" in chosen.reason
    chosen, _ = _choose(tmp_path / "t4", T4_DRIVER_470)
    assert "CUDA 12.0" in chosen.reason and "CPU" in chosen.reason


def test_turing_on_a_cuda12_driver_is_told_about_the_newer_build(tmp_path):
    chosen, _ = _choose(tmp_path, RTX_3090_DRIVER_570)
    assert "cu130" in chosen.reason


# --------------------------------------------------------------------------- several GPUs


@pytest.mark.parametrize(
    "gpus, build, left_out",
    [
        ((RTX_4090_WINDOWS, GTX_1080), "cu126", None),  # both have kernels in cu126
        ((GTX_1080, RTX_3090), "cu126", None),  # order does not matter
        ((RTX_5090, RTX_3090), "cu130", None),
        ((RTX_3090, RTX_3090), "cu130", None),
        ((RTX_5090, GTX_1080), "cu130", "GTX 1080"),  # no build serves both
        ((RTX_3090, ("Tesla K40m, 3.5, 580.95.05", "13.0")), "cu130", "K40m"),
    ],
)
def test_several_gpus(tmp_path, gpus, build, left_out):
    chosen, found = _choose(tmp_path, *gpus)
    assert len(found.gpus) == len(gpus)
    assert chosen.name == build
    if left_out:
        assert "not usable" in chosen.reason and left_out in chosen.reason.split("not usable")[1]
    else:
        assert "not usable" not in chosen.reason


# --------------------------------------------------------------------------- failures


def test_missing_binary_means_cpu(tmp_path):
    found = gpu_probe.probe([str(tmp_path / "nowhere" / "nvidia-smi")])
    assert found.gpus == () and "no nvidia-smi" in found.problem
    chosen = gpu_probe.choose(found)
    assert (chosen.name, chosen.index_url) == ("cpu", None)
    assert "no nvidia-smi" in chosen.reason


def test_hanging_nvidia_smi_times_out_to_cpu(tmp_path):
    binary = _fake_smi(tmp_path, [RTX_3090[0]], sleep=30)
    started = time.monotonic()
    found = gpu_probe.probe([binary], timeout=1)
    assert time.monotonic() - started < 15
    assert "did not answer within 1 s" in found.problem
    assert gpu_probe.choose(found).name == "cpu"


@pytest.mark.parametrize(
    "text, code, words",
    [
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9,
         "couldn't communicate"),
        ('Field "compute_cap" is not a valid field to query.\n', 2, "driver is too old"),
        ("No devices were found\n", 6, "No devices"),
        ("", 0, "no GPU"),
        ("NVIDIA GeForce RTX 4090, [N/A], 570.86.10\n", 0, "no GPU"),
        ("\x00\xff garbage, , \n", 0, "no GPU"),
        ("NVIDIA GeForce RTX 4090, \u00b2.\u00b3, 570.86.10\n", 0, "no GPU"),
    ],
)
def test_unusable_answers_mean_cpu(tmp_path, text, code, words):
    binary = _fake_smi(tmp_path, query_text=text, query_code=code)
    found = gpu_probe.probe([binary], timeout=20)
    assert found.gpus == () and words in found.problem
    assert gpu_probe.choose(found).name == "cpu"


def test_warning_lines_around_a_gpu_row_are_skipped(tmp_path):
    text = "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n" + RTX_3090[0] + "\n"
    found = gpu_probe.probe([_fake_smi(tmp_path, query_text=text)], timeout=20)
    assert gpu_probe.choose(found).name == "cu130"


def test_unreadable_header_falls_back_to_the_driver_version(tmp_path):
    binary = _fake_smi(tmp_path, [RTX_3090_DRIVER_570[0]], header=False)
    found = gpu_probe.probe([binary], timeout=20)
    assert found.driver_cuda == (12, 8)
    assert gpu_probe.choose(found).name == "cu126"


@pytest.mark.parametrize(
    "driver, cuda",
    [((581, 57), (13, 0)), ((570, 86, 10), (12, 8)), ((525, 60, 13), (12, 0)),
     ((525, 53), (11, 8)), ((470, 82, 1), None)],
)
def test_driver_table(driver, cuda):
    assert gpu_probe.cuda_of_driver(driver) == cuda


def test_header_parsing():
    assert gpu_probe.parse_header_cuda(HEADER.format(cuda="12.8")) == (12, 8)
    assert gpu_probe.parse_header_cuda("CUDA Driver Version: 13.1") == (13, 1)
    assert gpu_probe.parse_header_cuda("CUDA Version: N/A") is None


# --------------------------------------------------------------------------- where to look


def test_known_install_paths_are_searched():
    linux = gpu_probe.candidate_binaries({"PATH": ""}, windows=False)
    assert linux == ["/usr/bin/nvidia-smi", "/usr/lib/wsl/lib/nvidia-smi"]
    windows = gpu_probe.candidate_binaries(
        {"PATH": "", "SystemRoot": r"C:\Windows", "ProgramFiles": r"C:\Program Files"},
        windows=True)
    assert windows == [r"C:\Windows\System32\nvidia-smi.exe",
                       r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"]


def test_path_comes_first(tmp_path):
    binary = _fake_smi(tmp_path / "bin", [RTX_3090[0]])
    found = gpu_probe.candidate_binaries({"PATH": str(tmp_path / "bin")}, windows=False)
    assert found[0] == binary
    assert gpu_probe.probe(found[:1], timeout=20).binary == binary


# --------------------------------------------------------------------------- override


def test_override_skips_the_probe(tmp_path):
    binary = _fake_smi(tmp_path, [RTX_3090[0]], sleep=30)
    started = time.monotonic()
    build = gpu_probe.pick("cu126", candidates=[binary], timeout=20)
    assert time.monotonic() - started < 5
    assert (build.name, build.index_url) == ("cu126", "https://download.pytorch.org/whl/cu126")
    assert build.cuda == "12.6"
    with pytest.raises(ValueError):
        gpu_probe.pick("cu128")


def test_auto_uses_the_probe(tmp_path):
    lines = []
    build = gpu_probe.pick("auto", log=lines.append, candidates=[_fake_smi(tmp_path, [B200[0]])])
    assert build.name == "cu130" and build.cuda == "13.0"
    assert any("NVIDIA B200" in line for line in lines)
