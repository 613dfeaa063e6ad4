//! Letting go of start-up code once the agent runs.
//!
//! `weir` is one binary for the collector, the agent and the client commands, about
//! 20 MB of machine code. Starting the agent runs code it never needs again
//! (argument and config parsing, component set-up), and the kernel maps each executed
//! page with its neighbours (fault-around, 64 KiB), most of them code the agent never
//! runs at all. Measured, the binary's mapped code was about 10 MiB of the agent's
//! 19 MiB RSS at a steady 10 MiB/s. [`release_start_up_code`] asks the kernel to unmap
//! those pages (`MADV_PAGEOUT`): they stay in the page cache if memory allows, and
//! the code the agent keeps running is mapped again on its next use.

use std::path::Path;

/// `MADV_PAGEOUT` on the executable mappings of this program's own binary; how many
/// bytes it covered. Failures (an old kernel, a seccomp filter) only leave the pages
/// where they are (logged at debug level): this is an optimisation, never a reason not
/// to run.
pub fn release_start_up_code() -> usize {
    let (Ok(exe), Ok(maps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return 0;
    };
    let mut covered = 0;
    for (start, end) in code_ranges(&maps, &exe) {
        let len = end - start;
        // SAFETY: `start..end` is a whole mapping of this process (from its maps), of
        // read-only code backed by the binary's file: MADV_PAGEOUT only unmaps pages,
        // and they are read again from the file on their next use, unchanged.
        let advised =
            unsafe { rustix::mm::madvise(start as *mut _, len, rustix::mm::Advice::LinuxPageOut) };
        match advised {
            Ok(()) => covered += len,
            Err(e) => tracing::debug!(error = %e, "madvise(MADV_PAGEOUT) on the code failed"),
        }
    }
    covered
}

/// The `start..end` of each executable mapping of `exe` in a `/proc/self/maps` text.
fn code_ranges(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if !perms.contains('x') || Path::new(path) != exe {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_mappings_of_the_binary_only() {
        let maps = "\
5555000-5556000 r--p 00000000 08:01 42 /usr/bin/weir
5556000-5599000 r-xp 00001000 08:01 42 /usr/bin/weir
5599000-55a0000 rw-p 00044000 08:01 42 /usr/bin/weir
7f00000-7f10000 r-xp 00000000 08:01 7 /usr/lib/libc.so.6
7f20000-7f21000 rw-p 00000000 00:00 0
";
        assert_eq!(
            code_ranges(maps, Path::new("/usr/bin/weir")),
            vec![(0x5556000, 0x5599000)]
        );
    }

    /// Resident file-backed memory of this process, KiB.
    fn rss_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn releasing_unmaps_code_and_the_program_runs_on() {
        let before = rss_file_kib();
        assert!(release_start_up_code() > 0);
        let after = rss_file_kib();
        assert!(after < before, "RssFile {before} KiB -> {after} KiB");
        // the code still runs (mapped again on use)
        assert_eq!(code_ranges("", Path::new("/x")), vec![]);
    }
}
