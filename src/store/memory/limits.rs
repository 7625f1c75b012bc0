//! What the memory store may hold ([`MemoryLimits`]) and the budget a server gives it by default.

/// What the memory store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most bytes of records (values by their in-memory size, history by its serialized
    /// size, a fixed overhead per id) before writes that grow it are refused.
    pub max_bytes: usize,
    /// Most tombstones kept; the oldest beyond it are forgotten.
    pub max_tombstones: usize,
}

impl Default for MemoryLimits {
    /// No budget: for tests and embedders that bound their own data.
    fn default() -> Self {
        MemoryLimits {
            max_bytes: usize::MAX,
            max_tombstones: usize::MAX,
        }
    }
}

/// Half of the memory this process may use: the machine's, or its cgroup's limit when lower
/// (a container). 1 GiB when neither can be read.
pub fn default_memory_budget() -> usize {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let machine = (pages > 0 && page_size > 0).then(|| pages as usize * page_size as usize);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    let total = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c).unwrap_or(2 << 30),
    };
    total / 2
}
