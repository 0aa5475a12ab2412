"""The pinned lock files in installer/locks/ agree with pyproject.toml and with each other.

No network: the locks are read as they are committed (``installer/make_locks.py`` makes them).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from installer_scripts import load, sibling
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "installer" / "locks"


make_locks = load("make_locks")
bootstrap_locks = sibling("bootstrap_locks")
bootstrap_torch = sibling("bootstrap_torch")
Log = sibling("bootstrap_log").Log
ALL_LOCKS = [(target, platform) for target in make_locks.TARGETS
             for platform in make_locks.PLATFORMS]


def parse_lock(path: Path) -> dict[str, Version]:
    """name -> pinned version; fails on any line that is not a comment or ``name==version``."""
    pins = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", "%s:%d" % (path, number)
        assert requirement.marker is None and not requirement.url, "%s:%d" % (path, number)
        name = canonicalize_name(requirement.name)
        assert name not in pins, "%s:%d: %s pinned twice" % (path, number, name)
        pins[name] = Version(specifiers[0].version)
    return pins


def direct_requirements(extra: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in
            project["dependencies"] + project["optional-dependencies"][extra]]


@pytest.mark.parametrize("target, platform", ALL_LOCKS)
def test_every_direct_dependency_is_pinned_within_its_range(target, platform):
    extra = make_locks.TARGETS[target][0]
    pins = parse_lock(make_locks.lock_path(target, platform))
    for requirement in direct_requirements(extra):
        if requirement.marker is not None and not requirement.marker.evaluate(
                {"sys_platform": "win32" if platform == "windows" else "linux",
                 "platform_system": "Windows" if platform == "windows" else "Linux",
                 "python_version": make_locks.PYTHON_VERSION}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, "%s-%s.txt does not pin %s: run python installer/make_locks.py" % (
            target, platform, requirement)
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            "%s-%s.txt pins %s==%s, outside pyproject's %s: regenerate the locks"
            % (target, platform, name, pins[name], requirement))


@pytest.mark.parametrize("platform", make_locks.PLATFORMS)
@pytest.mark.parametrize("build", make_locks.ENGINE_BUILDS)
def test_engine_locks_pin_the_bootstraps_torch_and_leave_its_cuda_libraries(platform, build):
    pins = parse_lock(make_locks.lock_path("engine-" + build, platform))
    assert pins["torch"] == Version(bootstrap_torch.TORCH_VERSION)  # no +cuXXX: the index adds it
    assert not [name for name in pins if make_locks.TORCH_OWNED.match(name + "==")]


@pytest.mark.parametrize("platform", make_locks.PLATFORMS)
def test_locks_installed_together_never_contradict_each_other(platform):
    seen: dict[str, tuple[str, Version]] = {}
    for target in make_locks.TARGETS:
        for name, version in parse_lock(make_locks.lock_path(target, platform)).items():
            first = seen.setdefault(name, (target, version))
            assert first[1] == version, "%s: %s in %s, %s in %s" % (
                name, first[1], first[0], version, target)


def test_every_lock_the_bootstrap_can_choose_exists():
    for platform, system in (("linux", "linux"), ("windows", "win32")):
        for build in make_locks.ENGINE_BUILDS:
            for extras in bootstrap_locks.EXTRAS.values():
                chosen = bootstrap_locks.chosen_locks(
                    Log(), extras, bootstrap_torch.make_build(build, ""), system=system,
                    machine="x86_64")
                assert all(path.parent == LOCKS for path in chosen)
    assert sorted(p.name for p in LOCKS.glob("*.txt")) == sorted(
        make_locks.lock_path(t, p).name for t, p in ALL_LOCKS)


def test_compile_command_resolves_against_the_shared_locks(tmp_path):
    argv = make_locks.compile_command("uv", "dev", "windows", tmp_path / "out.txt",
                                      tmp_path / "torch.txt")
    assert argv[:5] == ["uv", "pip", "compile", "pyproject.toml", "--extra"] and "dev" in argv
    assert argv[argv.index("--python-platform") + 1] == "x86_64-pc-windows-msvc"
    constraints = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--constraint"]
    assert [Path(c).name for c in constraints] == ["gui-windows.txt", "engine-cpu-windows.txt"]
    engine = make_locks.compile_command("uv", "engine-cu126", "linux", tmp_path / "o.txt",
                                        tmp_path / "torch.txt")
    assert str(tmp_path / "torch.txt") in engine


def test_torch_owned_pins_are_dropped_with_their_comments():
    text = ("# header\nfilelock==3\n    # via torch\nnvidia-cublas==13.1\n    # via\n"
            "    #   torch\nnvidia-ml-py==13\ntriton==3.7.1\n    # via torch\nxxhash==4\n")
    assert make_locks.without_torch_owned(text) == (
        "# header\nfilelock==3\n    # via torch\nnvidia-ml-py==13\nxxhash==4\n")
