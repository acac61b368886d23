"""Target environments: platform expansion, wheel preference, marker variables."""

from __future__ import annotations

import pytest
from packaging import tags
from packaging.markers import Marker
from packaging.tags import parse_tag

from downloader.pypi.targets import Target, check_platform, check_python, expand_platform, host_platform
from reservoir.errors import ConfigError


def wheel_tags(text: str) -> frozenset:  # type: ignore[type-arg]
    return frozenset(parse_tag(text))


def test_manylinux_expands_to_older_levels_legacy_aliases_and_linux() -> None:
    expanded = expand_platform("manylinux_2_28_x86_64")
    assert expanded[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(expanded)
    assert "manylinux_2_29_x86_64" not in expanded
    assert expand_platform("manylinux2014_aarch64")[0] == "manylinux_2_17_aarch64"
    assert "macosx_11_0_arm64" in expand_platform("macosx_14_0_arm64")
    assert expand_platform("win_amd64") == ["win_amd64"]


def test_wheel_rank_prefers_what_pip_prefers() -> None:
    target = Target("3.11", "manylinux_2_28_x86_64")
    native = target.wheel_rank(wheel_tags("cp311-cp311-manylinux_2_17_x86_64"))
    abi3 = target.wheel_rank(wheel_tags("cp38-abi3-manylinux_2_17_x86_64"))
    pure = target.wheel_rank(wheel_tags("py3-none-any"))
    assert native is not None and abi3 is not None and pure is not None
    assert native < abi3 < pure
    assert target.wheel_rank(wheel_tags("cp311-cp311-manylinux_2_34_x86_64")) is None
    assert target.wheel_rank(wheel_tags("cp312-cp312-manylinux_2_17_x86_64")) is None
    assert target.wheel_rank(wheel_tags("cp311-cp311-win_amd64")) is None


@pytest.mark.parametrize(
    ("platform", "marker", "expected"),
    [
        ("win_amd64", 'sys_platform == "win32" and platform_machine == "AMD64"', True),
        ("manylinux_2_28_aarch64", 'sys_platform == "linux" and platform_machine == "aarch64"', True),
        ("macosx_14_0_arm64", 'platform_system == "Darwin"', True),
        ("manylinux_2_28_x86_64", 'os_name == "nt"', False),
    ],
)
def test_marker_environment_follows_the_platform(platform: str, marker: str, expected: bool) -> None:
    assert Marker(marker).evaluate(Target("3.10", platform).marker_environment) is expected


def test_requires_python_is_checked_against_the_target_version() -> None:
    target = Target("3.9", "win_amd64")
    assert target.accepts_python(">=3.8") and not target.accepts_python(">=3.10")
    assert target.accepts_python(None) and target.accepts_python("garbage >= ~")


def test_host_platform_is_the_most_specific_host_tag() -> None:
    host_tags = list(tags.platform_tags())
    assert host_platform() in host_tags
    if any(t.startswith("manylinux_") for t in host_tags):
        assert host_platform() == next(t for t in host_tags if t.startswith("manylinux_"))


@pytest.mark.parametrize("value", ["3", "py3.11", "3.11.2"])
def test_bad_python_versions_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="not a Python version"):
        check_python(value)


@pytest.mark.parametrize("value", ["any", "Linux", "x86 64"])
def test_bad_platform_tags_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="not a platform tag"):
        check_platform(value)
