"""The guest: an initramfs and a read-only root with this Python and mig_mon."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from lab.common import AGENT, GUEST_IP, GUEST_MODULES, log, sh


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc)."""
    out = bytearray()

    def one(name: str, mode: int, data: bytes, ino: int) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        )
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        one(name, mode, data, ino)
    one("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def _module_order(moddir: Path, wanted: list[str]) -> list[Path]:
    index = {p.stem.replace("-", "_"): p for p in moddir.glob("kernel/**/*.ko")}
    order: list[Path] = []

    def visit(name: str) -> None:
        path = index[name]
        if path in order:
            return
        m = re.search(rb"\0depends=([^\0]*)\0", path.read_bytes())
        for dep in m.group(1).decode().split(",") if m else []:
            if dep:
                visit(dep.replace("-", "_"))
        order.append(path)

    for name in wanted:
        visit(name)
    return order


INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
for m in {modules}; do /bin/busybox insmod /lib/modules/$m; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do /bin/busybox sleep 0.1; n=$((n+1)); done
/bin/busybox mount -t ext4 -o ro /dev/vda /newroot || exec /bin/busybox sh
/bin/busybox mount --move /dev /newroot/dev
/bin/busybox umount /proc
exec /bin/busybox switch_root /newroot /init
"""

ROOT_INIT = """#!/bin/busybox sh
export PATH=/usr/local/bin:/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o size=64m run /run
mkdir -p /run/lab
{tmp_mount}
ip link set lo up
ip addr add {guest_ip}/24 dev eth0
ip link set eth0 up
echo "lab guest up: $(uname -r)"
while true; do
    {python} /lab/agent.py
    sleep 1
done
"""


def _elf_deps(paths: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    for p in paths:
        r = sh("ldd", p, capture_output=True, check=False)
        for m in re.finditer(r"(/\S+) \(0x", r.stdout):
            libs.add(Path(m.group(1)))
    return libs


STDLIB_SKIP = shutil.ignore_patterns(
    "site-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "config-3*",
    "*.a",
)


def _copy(src: Path, stage: Path) -> None:
    """Copies src into stage at the same path; a symlink stays a symlink and
    its target comes along."""
    dst = stage / str(src).lstrip("/")
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        os.symlink(target, dst)
        _copy(Path(os.path.normpath(src.parent / target)), stage)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, ignore=STDLIB_SKIP)
    else:
        shutil.copy2(src, dst)


def _python_payload(venv_python: Path) -> tuple[list[Path], Path]:
    """What the guest needs to run mig_mon as the host does: the base
    interpreter and stdlib, the venv's skeleton, migmon and its runtime
    dependencies. Returns the paths to copy and the venv's mig_mon script."""
    info = json.loads(
        sh(
            venv_python,
            "-c",
            (
                "import json, sys, sysconfig, migmon, importlib.metadata as md;"
                "print(json.dumps({'base': sys.base_prefix, 'prefix': sys.prefix,"
                " 'stdlib': sysconfig.get_paths()['stdlib'],"
                " 'purelib': sysconfig.get_paths()['purelib'],"
                " 'migmon': migmon.__path__[0],"
                " 'exe': sys.executable}))"
            ),
            capture_output=True,
        ).stdout
    )
    base, prefix = Path(info["base"]), Path(info["prefix"])
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = [
        base / "bin" / ver,
        *base.glob("lib/libpython*.so*"),
        Path(info["stdlib"]),
        prefix / "pyvenv.cfg",
        prefix / "bin" / "python",
        prefix / "bin" / "python3",
        prefix / "bin" / "mig_mon",
        Path(info["migmon"]),
    ]
    # Runtime dependencies of mig_mon, found from the venv's metadata.
    purelib = Path(info["purelib"])
    deps = sh(
        venv_python,
        "-c",
        (
            "import importlib.metadata as md, re, json\n"
            "seen, todo = set(), ['mig_mon']\n"
            "while todo:\n"
            "    n = todo.pop()\n"
            "    key = re.sub(r'[-_.]+', '-', n).lower()\n"
            "    if key in seen: continue\n"
            "    seen.add(key)\n"
            "    try: d = md.distribution(n)\n"
            "    except md.PackageNotFoundError: continue\n"
            "    for r in d.requires or []:\n"
            "        if 'extra ==' in r: continue\n"
            "        todo.append(re.split(r'[ ;<>=!~\\[(]', r, maxsplit=1)[0])\n"
            "files = []\n"
            "for n in seen:\n"
            "    try: d = md.distribution(n)\n"
            "    except md.PackageNotFoundError: continue\n"
            "    files += [str(d.locate_file(f)) for f in d.files or []]\n"
            "print(json.dumps(files))\n"
        ),
        capture_output=True,
    ).stdout
    for f in json.loads(deps):
        p = Path(f).resolve()
        if p.is_relative_to(purelib) and p.exists():
            paths.append(p)
    paths.extend(purelib.glob("*.pth"))
    return paths, prefix / "bin" / "mig_mon"


def build_guest(lab: Path, x: Path, venv_python: Path) -> tuple[Path, Path, Path]:
    """Builds the kernel, initramfs and root image; returns their paths."""
    kernel = next((x / "boot").glob("vmlinuz-*"))
    moddir = next((x / "lib/modules").iterdir())
    busybox = x / "bin/busybox"
    guest = lab / "guest"
    guest.mkdir(exist_ok=True)

    mods = _module_order(moddir, GUEST_MODULES)
    entries: list[tuple[str, int, bytes]] = [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("lib", stat.S_IFDIR | 0o755, b""),
        ("lib/modules", stat.S_IFDIR | 0o755, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
    ]
    entries += [(f"lib/modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()) for m in mods]
    init = INITRAMFS_INIT.format(modules=" ".join(m.name for m in mods))
    entries.append(("init", stat.S_IFREG | 0o755, init.encode()))
    initrd = guest / "initrd.gz"
    initrd.write_bytes(gzip.compress(_newc(entries), compresslevel=1))

    # The root image, rebuilt every run: it carries this checkout's mig_mon.
    stage = guest / "root"
    shutil.rmtree(stage, ignore_errors=True)
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc",
        "lab",
        "root",
    ):
        (stage / d).mkdir(parents=True, exist_ok=True)
    # /lib and /lib64 are links into /usr on the host (merged /usr): so in
    # the guest, made before anything is copied through them.
    for name in ("lib", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            target = os.readlink(host)
            (stage / target).mkdir(parents=True, exist_ok=True)
            os.symlink(target, stage / name)
    shutil.copy2(busybox, stage / "bin/busybox")
    applets = sh(busybox, "--list-full", capture_output=True).stdout.split()
    for a in applets:
        link = stage / a
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/bin/busybox", link)
    paths, mig_mon = _python_payload(venv_python)
    for p in paths:
        _copy(p, stage)
    elves = [
        p
        for p in stage.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and (p.suffix == ".so" or ".so." in p.name or p.name.startswith("python3."))
    ]
    host_elves = [Path("/") / p.relative_to(stage) for p in elves]
    for lib in _elf_deps([h for h in host_elves if h.exists()]):
        dst = stage / str(lib).lstrip("/")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), dst)
    shutil.copy2(AGENT, stage / "lab/agent.py")
    (stage / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    os.symlink(mig_mon, stage / "usr/local/bin/mig_mon")
    (stage / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (stage / "etc/group").write_text("root:x:0:\n")
    (stage / "etc/hosts").write_text(f"127.0.0.1 localhost\n{GUEST_IP} guest\n")
    python = Path(os.path.realpath(venv_python))
    # A scratch /tmp, unless the payload itself is under /tmp (a checkout
    # in /tmp): a tmpfs there would hide it. The agent works in /run/lab.
    under_tmp = any((stage / "tmp").iterdir())
    tmp_mount = "" if under_tmp else "mount -t tmpfs -o size=64m tmp /tmp"
    (stage / "init").write_text(
        ROOT_INIT.format(guest_ip=GUEST_IP, python=python, tmp_mount=tmp_mount)
    )
    (stage / "init").chmod(0o755)

    size = sum(p.lstat().st_size for p in stage.rglob("*"))
    mb = int(size / 2**20 * 1.2) + 64
    image = guest / "root.ext4"
    image.unlink(missing_ok=True)
    sh(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        "mmroot",
        "-d",
        stage,
        image,
        f"{mb}M",
        stdout=subprocess.DEVNULL,
    )
    log(f"guest root image: {mb} MB ({size / 2**20:.0f} MB of files)")
    return kernel, initrd, image
