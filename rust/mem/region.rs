//! An anonymous private mapping that is unmapped on drop, with the checks
//! that keep a user from asking for more than the machine has.

use std::fs;
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// The dirty step: hypervisors track dirty memory in 4 KiB pages, so the
/// workload touches one byte in every 4 KiB page, whatever backs it.
pub const DIRTY_STEP: u64 = 4096;

crate::text_enum! {
    /// What backs the region: the original's `-P` values (`4k`, `2m`, `1g`)
    /// and `thp`.
    pub enum PageSize: "page size" {
        /// Normal 4 KiB pages.
        Small = "4k" | "4096",
        /// 2 MiB hugetlbfs pages (MAP_HUGETLB), from the reserved pool.
        Huge2M = "2m",
        /// 1 GiB hugetlbfs pages (MAP_HUGETLB), from the reserved pool.
        Huge1G = "1g",
        /// Transparent huge pages: a 2 MiB-aligned mapping with MADV_HUGEPAGE.
        Thp = "thp",
    }
}

impl PageSize {
    /// Size of one backing page in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Small => 4096,
            PageSize::Huge2M | PageSize::Thp => 2 << 20,
            PageSize::Huge1G => 1 << 30,
        }
    }

    fn hugetlb_dir(self) -> Option<String> {
        match self {
            PageSize::Huge2M | PageSize::Huge1G => Some(format!(
                "/sys/kernel/mm/hugepages/hugepages-{}kB",
                self.bytes() / 1024
            )),
            _ => None,
        }
    }
}

/// An anonymous private memory region, unmapped when dropped.
#[derive(Debug)]
pub struct Region {
    /// Start of the usable, aligned part.
    base: NonNull<u8>,
    len: usize,
    /// What was really mapped (larger than `len` for THP alignment).
    map_base: NonNull<u8>,
    map_len: usize,
    page_size: PageSize,
}

// SAFETY: the region is plain memory owned by this value; concurrent access
// goes through raw pointers on disjoint slices (see `worker`) and volatile
// byte accesses, never through references.
unsafe impl Send for Region {}
// SAFETY: as above; &Region hands out only raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes backed by `page_size` pages, after checking that the
    /// machine can give them (unless `force`).
    pub fn map(len: u64, page_size: PageSize, force: bool) -> Result<Self> {
        if len == 0 || !len.is_multiple_of(page_size.bytes()) {
            return Err(Error::config(format!(
                "memory size {} MB is not a multiple of the {} page size",
                len >> 20,
                page_size.name()
            )));
        }
        check_available(len, page_size, force)?;
        let len_usize = usize::try_from(len).map_err(|_| Error::config("memory size too large"))?;
        let (map_len, extra_flags) = match page_size {
            PageSize::Small => (len_usize, 0),
            PageSize::Thp => (len_usize + (2 << 20), 0),
            PageSize::Huge2M => (len_usize, libc::MAP_HUGETLB | (21 << libc::MAP_HUGE_SHIFT)),
            PageSize::Huge1G => (len_usize, libc::MAP_HUGETLB | (30 << libc::MAP_HUGE_SHIFT)),
        };
        // With --force the user takes the risk of overcommitting ordinary
        // memory. Huge pages are always reserved at mmap: an unreserved
        // hugetlb page missing at first touch is a SIGBUS, not an error
        // (`-P 2m --force` with an empty pool died of it, exit 135), so a
        // short pool fails here, with the hint.
        let noreserve = match page_size {
            PageSize::Small | PageSize::Thp if force => libc::MAP_NORESERVE,
            _ => 0,
        };
        // SAFETY: an anonymous mapping at an address the kernel picks; the
        // result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags | noreserve,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(match page_size {
                PageSize::Huge2M | PageSize::Huge1G => Error::resource(format!(
                    "cannot map {} MB of {} huge pages ({e}); {}",
                    len >> 20,
                    page_size.name(),
                    reserve_hint(len, page_size)
                )),
                _ => Error::resource_io(format!("mmap of {} MB", len >> 20), e),
            });
        }
        let map_base = NonNull::new(p.cast::<u8>()).expect("mmap never returns NULL on success");
        let base = if page_size == PageSize::Thp {
            let align = 2usize << 20;
            let addr = map_base.as_ptr() as usize;
            let aligned = addr.next_multiple_of(align);
            // SAFETY: `aligned` lies within the mapping, which has 2 MiB to spare.
            let b = unsafe { map_base.as_ptr().add(aligned - addr) };
            // SAFETY: advice on our own mapping; failure only loses the hint.
            let rc = unsafe { libc::madvise(b.cast(), len_usize, libc::MADV_HUGEPAGE) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                // SAFETY: unmapping exactly what we mapped above.
                unsafe { libc::munmap(p, map_len) };
                return Err(Error::resource(format!(
                    "transparent huge pages unavailable: madvise: {e}"
                )));
            }
            NonNull::new(b).expect("aligned pointer inside a mapping is not NULL")
        } else {
            map_base
        };
        Ok(Self {
            base,
            len: len_usize,
            map_base,
            map_len,
            page_size,
        })
    }

    /// Start of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of 4 KiB dirty steps in the region.
    pub fn steps(&self) -> u64 {
        self.len as u64 / DIRTY_STEP
    }

    /// What backs the region.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `map`; no pointer
        // into it outlives the region (workers are joined first).
        unsafe {
            libc::munmap(self.map_base.as_ptr().cast(), self.map_len);
        }
    }
}

fn read_u64(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The room this process's memory cgroups leave (the tightest of its
/// group and their parents: limit less usage), in bytes, and that group's
/// path; None without a limit. cgroup v2 (`memory.max`,
/// `memory.current`) or v1 (`memory.limit_in_bytes`, `memory.usage_in_bytes`).
pub fn cgroup_room() -> Option<(u64, String)> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<(u64, String)> = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (root, limit_f, usage_f) = if controllers.split(',').any(|c| c == "memory") {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max", "memory.current")
        } else {
            continue;
        };
        let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
        loop {
            let limit = read_u64(&format!("{}/{limit_f}", dir.display()));
            let usage = read_u64(&format!("{}/{usage_f}", dir.display()));
            // v1 says "no limit" as a huge number, v2 as "max" (no number).
            if let (Some(limit), Some(usage)) = (limit, usage) {
                if limit < 1 << 60 {
                    let room = limit.saturating_sub(usage);
                    if best.as_ref().is_none_or(|(b, _)| room < *b) {
                        let shown = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                        best = Some((room, if shown.is_empty() { "/".into() } else { shown }));
                    }
                }
            }
            if dir.as_os_str().len() <= root.len() || !dir.pop() {
                break;
            }
        }
    }
    best
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How to grow the pool so that `len` bytes fit in its free pages: the new
/// total is the pool as it is plus what is missing (never a smaller pool
/// than today's, which would take pages from whoever holds them).
fn reserve_hint(len: u64, page_size: PageSize) -> String {
    let need = len / page_size.bytes();
    let Some(dir) = page_size.hugetlb_dir() else {
        return String::new();
    };
    let total = read_u64(&format!("{dir}/nr_hugepages"));
    let free = read_u64(&format!("{dir}/free_hugepages"));
    match (total, free) {
        (Some(total), Some(free)) => {
            let target = total + need.saturating_sub(free);
            format!(
                "grow the pool from {total} to {target} pages with: echo {target} > \
                 {dir}/nr_hugepages (as root; {} are in use)",
                total - free.min(total)
            )
        }
        _ => format!("reserve at least {need} with: echo {need} > {dir}/nr_hugepages (as root)"),
    }
}

fn check_available(len: u64, page_size: PageSize, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match page_size.hugetlb_dir() {
        Some(dir) => {
            let Some(free) = read_u64(&format!("{dir}/free_hugepages")) else {
                return Err(Error::resource(format!(
                    "{} huge pages are not supported on this machine (no {dir})",
                    page_size.name()
                )));
            };
            let need = len / page_size.bytes();
            if free < need {
                return Err(Error::resource(format!(
                    "need {need} free {} huge pages, {free} are free; {}",
                    page_size.name(),
                    reserve_hint(len, page_size)
                )));
            }
        }
        None => {
            if page_size == PageSize::Thp {
                let mode = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                    .unwrap_or_default();
                if mode.is_empty() || mode.contains("[never]") {
                    return Err(Error::resource(
                        "transparent huge pages are disabled; enable with: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
                    ));
                }
            }
            if let Some(avail) = mem_available() {
                if len > avail {
                    return Err(Error::resource_check(
                        format!(
                            "{} MB requested but only {} MB of memory is available",
                            len >> 20,
                            avail >> 20
                        ),
                        "force",
                    ));
                }
            }
            // A memory cgroup's limit kills the process when reached (the
            // OOM killer: no message, no summary); say so before.
            if let Some((room, group)) = cgroup_room() {
                if len > room {
                    return Err(Error::resource_check(
                        format!(
                            "{} MB requested but the memory cgroup {group} leaves room for {} MB",
                            len >> 20,
                            room >> 20
                        ),
                        "force",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_page_sizes() {
        assert_eq!(PageSize::parse("2M").unwrap(), PageSize::Huge2M);
        assert_eq!(PageSize::parse("1g").unwrap(), PageSize::Huge1G);
        assert_eq!(PageSize::parse("4K").unwrap(), PageSize::Small);
        assert_eq!(PageSize::parse("thp").unwrap(), PageSize::Thp);
        assert!(PageSize::parse("3m").is_err());
    }

    #[test]
    fn map_and_touch() {
        let r = Region::map(8 << 20, PageSize::Small, false).unwrap();
        assert_eq!(r.steps(), 2048);
        // SAFETY: inside the mapping.
        unsafe { r.as_ptr().add(r.len() - 1).write_volatile(7) };
    }

    #[test]
    fn too_large_is_refused_before_mapping() {
        let err = Region::map(1 << 50, PageSize::Small, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("available"), "{err}");
    }

    #[test]
    fn thp_region_is_aligned() {
        if let Ok(r) = Region::map(4 << 20, PageSize::Thp, false) {
            assert_eq!(r.as_ptr() as usize % (2 << 20), 0);
        }
    }
}
