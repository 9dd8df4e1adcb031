"""mig_mon in a real QEMU guest across real live migrations, checked against
referees it did not make: QEMU's own figures (QMP) and a packet capture.

    scripts/qemu-lab.sh [--migrations N] [--json FILE] [--plot FILE]   # as root

What it does, in order (everything it makes lives in the lab folder, `.lab/`
beside the project by default, and what it starts is removed at the end,
whatever happens):

1. Fetches QEMU 10.0 from bookworm-backports (or 7.2 from bookworm, with
   `--qemu 7.2`), a stock Debian kernel and busybox with `apt-get download`,
   through a sources list and package lists of the lab's own (the machine's
   apt setup is not changed), and unpacks them into the lab folder
   (`dpkg -x`): Debian's qemu-system packages conflict with the qemu-utils
   preinstalled here. The shared libraries QEMU needs are installed with apt.
2. Builds the guest: an initramfs (busybox, the virtio and ext4 modules) and
   a read-only ext4 root (`mke2fs -d`) that holds this Python, the installed
   mig_mon and its dependencies at the same paths as on the host, and a small
   agent (`qemu_lab_agent.py`) the lab drives over the guest network. No 9p
   share: a mounted 9p share blocks migration.
3. Makes a network namespace with a bridge and two taps, one for each QEMU
   process; the guest has 10.77.0.2, the bridge 10.77.0.1. The migration
   stream runs over the namespace's loopback.
4. Boots the guest (KVM if it boots a stock kernel here, else TCG with one
   vCPU), then runs the checks and migrates it back and forth between two
   QEMU processes, driven over QMP with qemu.qmp.

The checks (see `checks` in the report; `tests/test_qemu_lab.py` asserts
them):

- dirty rate: `mig_mon mm_dirty` in the guest against QEMU's calc-dirty-rate
  (page sampling), sequential and random;
- downtime: `mig_mon server_rr` in the guest, `mig_mon client` on the bridge
  side, against the gap between echo replies in a tcpdump capture, and
  against QEMU's downtime and the STOP -> RESUME events;
- the guest's own view: mm_dirty's pause at switchover against STOP -> RESUME;
- integrity: mm_dirty keeps running through every migration and its final
  integrity check passes.
"""
