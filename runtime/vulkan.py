"""The Vulkan side of the ``litert-gpu`` backend: find the loader, list devices, SwiftShader.

LiteRT's GPU accelerator (WebGPU through Dawn) runs over Vulkan on Linux. A machine without a
GPU can still exercise that path with SwiftShader, the software Vulkan device that Debian's
``chromium`` package ships (``/usr/lib/chromium/vk_swiftshader_icd.json``). Nothing here
changes the environment unless asked: :func:`use_swiftshader` does, for this process and
its children, when the user passes ``--swiftshader``.

Devices are listed through the Vulkan loader with :mod:`ctypes`, so a benchmark can say
whether its "GPU" latency came from a real GPU or from a CPU-backed software device.

Example:
    >>> from edgesmith.runtime.vulkan import use_swiftshader, vulkan_devices
    >>> use_swiftshader()  # doctest: +SKIP
    PosixPath('/usr/lib/chromium/vk_swiftshader_icd.json')
    >>> [d.label for d in vulkan_devices()]  # doctest: +SKIP
    ['SwiftShader Device (Subzero) (cpu)']
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from edgesmith.core.errors import BackendUnavailableError

SWIFTSHADER_ICDS = (
    "/usr/lib/chromium/vk_swiftshader_icd.json",  # Debian and Ubuntu's chromium
    "/usr/lib64/chromium/vk_swiftshader_icd.json",
    "/usr/lib/chromium-browser/vk_swiftshader_icd.json",
    "/opt/google/chrome/vk_swiftshader_icd.json",
)
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
_DEVICE_TYPES = {0: "other", 1: "integrated-gpu", 2: "discrete-gpu", 3: "virtual-gpu", 4: "cpu"}
_loader: ctypes.CDLL | None = None


@dataclass(frozen=True)
class VulkanDevice:
    """One Vulkan physical device as the loader reports it."""

    name: str
    type: str  # integrated-gpu | discrete-gpu | virtual-gpu | cpu | other
    api_version: str

    @property
    def software(self) -> bool:
        """True for a device that runs on the CPU (SwiftShader, lavapipe)."""
        return self.type == "cpu"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.type})"


def swiftshader_icd() -> Path | None:
    """The SwiftShader ICD manifest that an installed Chromium ships, if any."""
    for candidate in SWIFTSHADER_ICDS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def use_swiftshader(environ: MutableMapping[str, str] | None = None) -> Path:
    """Point Vulkan at SwiftShader in ``environ`` (default: this process) and return the ICD.

    Sets ``VK_ICD_FILENAMES`` (and its newer name ``VK_DRIVER_FILES``) and, when unset,
    ``XDG_RUNTIME_DIR`` (a private folder), which the Vulkan stack expects. Call it before
    LiteRT's GPU accelerator is first used.
    """
    icd = swiftshader_icd()
    if icd is None:
        raise BackendUnavailableError(
            "litert-gpu --swiftshader: SwiftShader's Vulkan ICD was not found "
            f"(looked for {', '.join(SWIFTSHADER_ICDS[:2])})",
            expected="Debian's chromium package, which ships the software Vulkan device",
            fix="install it with: apt-get install chromium",
        )
    environ = os.environ if environ is None else environ
    environ["VK_ICD_FILENAMES"] = str(icd)
    environ["VK_DRIVER_FILES"] = str(icd)
    if not environ.get("XDG_RUNTIME_DIR") or not os.path.isdir(environ["XDG_RUNTIME_DIR"]):
        folder = tempfile.mkdtemp(prefix="edgesmith-xdg-")  # mode 0700
        # Removed when the process ends: every process that opens the GPU makes its own.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        environ["XDG_RUNTIME_DIR"] = folder
    return icd


def icd_manifests(environ: MutableMapping[str, str] | None = None) -> list[Path]:
    """The ICD manifests the Vulkan loader will read (the variables win over the folders)."""
    environ = os.environ if environ is None else environ
    listed = environ.get("VK_ICD_FILENAMES") or environ.get("VK_DRIVER_FILES")
    if listed:
        return [Path(p) for p in listed.split(os.pathsep) if p and Path(p).is_file()]
    found: list[Path] = []
    for folder in ICD_DIRS:
        if os.path.isdir(folder):
            found += sorted(Path(folder).glob("*.json"))
    return found


def load_loader() -> ctypes.CDLL | None:
    """Load the Vulkan loader (``libvulkan.so.1``) globally; None when there is none.

    Without the system loader (Debian's ``libvulkan1``), Chromium's private copy next to the
    ICD is used: loading it with RTLD_GLOBAL makes the later ``dlopen("libvulkan.so.1")``
    inside LiteRT find it by its soname.
    """
    global _loader
    if _loader is not None:
        return _loader
    candidates = ["libvulkan.so.1"]
    candidates += [str(icd.parent / "libvulkan.so.1") for icd in icd_manifests()]
    for candidate in candidates:
        if candidate != "libvulkan.so.1" and not os.path.isfile(candidate):
            continue
        try:
            _loader = ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            return _loader
        except OSError:
            continue
    return None


class _AppInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_uint32),
        ("pNext", ctypes.c_void_p),
        ("pApplicationName", ctypes.c_char_p),
        ("applicationVersion", ctypes.c_uint32),
        ("pEngineName", ctypes.c_char_p),
        ("engineVersion", ctypes.c_uint32),
        ("apiVersion", ctypes.c_uint32),
    ]


class _InstanceInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_uint32),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("pApplicationInfo", ctypes.POINTER(_AppInfo)),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
    ]


def vulkan_devices() -> list[VulkanDevice]:
    """The Vulkan physical devices this process can see ([] without a loader or a driver)."""
    loader = load_loader()
    if loader is None:
        return []
    app = _AppInfo(0, None, b"edgesmith", 1, b"edgesmith", 1, (1 << 22))  # Vulkan 1.0
    info = _InstanceInfo(1, None, 0, ctypes.pointer(app), 0, None, 0, None)
    instance = ctypes.c_void_p()
    create = loader.vkCreateInstance
    create.restype = ctypes.c_int32
    if create(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return []
    devices: list[VulkanDevice] = []
    try:
        count = ctypes.c_uint32(0)
        enumerate_devices = loader.vkEnumeratePhysicalDevices
        enumerate_devices.restype = ctypes.c_int32
        enumerate_devices.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_void_p,
        ]
        if enumerate_devices(instance, ctypes.byref(count), None) != 0 or count.value == 0:
            return []
        handles = (ctypes.c_void_p * count.value)()
        enumerate_devices(instance, ctypes.byref(count), handles)
        get_properties = loader.vkGetPhysicalDeviceProperties
        get_properties.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        for handle in handles[: count.value]:
            # VkPhysicalDeviceProperties is ~820 bytes; only its head is read: apiVersion,
            # driverVersion, vendorID, deviceID, deviceType (uint32 each), deviceName[256].
            raw = ctypes.create_string_buffer(4096)
            get_properties(handle, raw)
            api, _, _, _, kind = (
                int.from_bytes(raw.raw[i : i + 4], "little") for i in range(0, 20, 4)
            )
            name = raw.raw[20:276].split(b"\0", 1)[0].decode("utf-8", errors="replace")
            version = f"{api >> 22}.{(api >> 12) & 0x3FF}.{api & 0xFFF}"
            devices.append(VulkanDevice(name, _DEVICE_TYPES.get(kind, "other"), version))
    finally:
        destroy = loader.vkDestroyInstance
        destroy.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        destroy(instance, None)
    return devices


def preferred_device(devices: list[VulkanDevice]) -> VulkanDevice | None:
    """The device a WebGPU adapter request picks: a real GPU before a software one."""
    order = ["discrete-gpu", "integrated-gpu", "virtual-gpu", "other", "cpu"]
    return min(devices, key=lambda d: order.index(d.type), default=None)


def missing_gpu_reason() -> str | None:
    """Why ``litert-gpu`` cannot run here (no loader, no driver), or None when it can try."""
    if not icd_manifests():
        return (
            "no Vulkan driver (ICD) found: install your GPU's Vulkan driver "
            "(e.g. apt-get install mesa-vulkan-drivers libvulkan1); without a GPU, "
            "apt-get install chromium and add --swiftshader for a software device"
        )
    return None
