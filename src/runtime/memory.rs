//! How much memory this process may take, and allocations that fail with a message
//! instead of aborting the process.

use crate::sema::summary::human_bytes;

/// The tightest of the limits on this process's memory, with what sets it: the
/// machine's memory, its cgroup's limit, and the address space `ulimit -v` leaves.
/// `None` when none of them can be read (then only the allocation itself can fail).
pub fn allowance() -> Option<(u64, &'static str)> {
    let mut limits = vec![];
    if let Some(total) = meminfo_bytes("MemTotal:") {
        let swap = meminfo_bytes("SwapTotal:").unwrap_or(0);
        limits.push((total.saturating_add(swap), "the machine's memory and swap"));
    }
    if let Some(max) = cgroup_limit() {
        limits.push((max, "the memory limit of this process's cgroup"));
    }
    if let Some(left) = address_space_left() {
        limits.push((left, "the address space left under `ulimit -v`"));
    }
    limits.into_iter().min_by_key(|(bytes, _)| *bytes)
}

/// `len` zeros, or `None` when the allocator cannot provide them.
pub fn zeroed(len: usize) -> Option<Vec<f32>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(len).ok()?;
    // SAFETY: the layout's size is not zero.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f32>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` f32s,
    // and all-zero bytes are the float 0.0.
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// `zeroed`, or an error saying what did not fit and how to make it smaller.
/// `what` describes the memory, e.g. "one training step at batch size 32".
pub fn zeroed_or_explain(len: usize, what: &str) -> Result<Vec<f32>, String> {
    let bytes = (len as u64).saturating_mul(4);
    let shrink = "use smaller layers, pooling or strides before dense layers, or a smaller \
                  --batch-size; `nnc check FILE --batch-size N` shows what a step needs";
    if let Some((limit, source)) = allowance().filter(|(limit, _)| bytes > *limit) {
        return Err(format!(
            "{what} needs {} ({bytes} bytes), more than {source} ({}); {shrink}",
            human_bytes(u128::from(bytes)),
            human_bytes(u128::from(limit))
        ));
    }
    zeroed(len).ok_or_else(|| {
        format!(
            "{what} needs {} ({bytes} bytes), and this process could not get that much \
             memory; {shrink}",
            human_bytes(u128::from(bytes))
        )
    })
}

fn meminfo_bytes(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// cgroup v2's `memory.max` of this process's group, or v1's limit.
fn cgroup_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        // "max" (no limit) and v1's huge "no limit" value are not limits.
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(bytes) = text.trim().parse::<u64>() {
                if bytes < 1 << 60 {
                    return Some(bytes);
                }
            }
        }
    }
    None
}

/// `ulimit -v` (RLIMIT_AS) minus the address space already in use.
fn address_space_left() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let used_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(limit.rlim_cur.saturating_sub(used_kb.saturating_mul(1024)))
}
