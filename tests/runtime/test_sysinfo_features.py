"""The CPU's instruction-set features in a record's environment."""

from __future__ import annotations

from edgesmith.runtime import sysinfo

X86 = """processor\t: 0
model name\t: Intel Xeon
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avxvnni amx_tile amx_int8 avx512_vnni
processor\t: 1
flags\t\t: fpu
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes asimdhp asimddp i8mm bf16 sve
"""


def test_x86_flags_in_a_stable_order():
    assert sysinfo.cpu_features(X86) == [
        "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
        "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
    ]  # fmt: skip


def test_arm_features():
    assert sysinfo.cpu_features(ARM) == ["asimd", "asimddp", "i8mm", "sve", "asimdhp", "bf16"]


def test_absent_or_unreadable_cpuinfo_gives_an_empty_list(monkeypatch):
    assert sysinfo.cpu_features("model name : something\n") == []

    def refuse(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", refuse)
    assert sysinfo.cpu_features() == []


def test_environment_lists_the_features_of_this_machine():
    env = sysinfo.environment()
    assert env["cpu_features"] == sysinfo.cpu_features()
    assert all(isinstance(f, str) for f in env["cpu_features"])
