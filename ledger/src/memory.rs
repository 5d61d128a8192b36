//! HOT PATH: memory for the big lookup tables (the ledger's accounts and transfer index,
//! each shard's accounts and remembered requests).
//!
//! Those tables hold millions of entries and each transfer touches them at random, so
//! with 4 KiB pages nearly every lookup also misses the TLB; on a virtual machine a TLB
//! miss walks two sets of page tables. `HugePages` maps each large table on its own
//! 2 MiB-aligned region, asks the kernel for transparent huge pages there
//! (`MADV_HUGEPAGE`, honoured with THP set to `madvise` or `always`) and faults the region
//! in at once. Every other allocation of the process is left alone, and small tables go to
//! the global allocator. Where THP is off, the advice is refused and the table simply
//! lives on 4 KiB pages.

// The one module of the ledger that calls the C library: mapping memory is what it is for.
#![allow(unsafe_code)]

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};
use std::ptr::NonNull;

/// A transparent huge page on x86-64 (and the alignment the kernel needs to use one).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Tables smaller than this come from the global allocator: a huge page would be mostly
/// empty, and most tables are small.
pub const HUGE_PAGE_TABLE_BYTES_MIN: usize = 4 << 20;

/// Allocates large blocks on huge-page-advised mappings of their own; see the module
/// documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

/// A hash map whose table lives on huge pages once it is large. The hasher is FxHash, as
/// everywhere in the hot path: keys are ids, not attacker-chosen strings.
pub type BigMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher, HugePages>;

fn mapped_size(layout: Layout) -> usize {
    layout.size().div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
}

fn is_large(layout: Layout) -> bool {
    layout.size() >= HUGE_PAGE_TABLE_BYTES_MIN && layout.align() <= HUGE_PAGE_BYTES
}

// SAFETY: large blocks are fresh private anonymous mappings, valid until `deallocate`
// unmaps exactly them (their size is recomputed from the same layout); small blocks are
// the global allocator's, handed back to it. `HugePages` has no state, so copies of it
// behave as one allocator.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !is_large(layout) {
            return Global.allocate(layout);
        }
        let size = mapped_size(layout);
        // Map one huge page more than needed, then unmap the unaligned head and the tail.
        let reserved = size + HUGE_PAGE_BYTES;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE_BYTES);
        let head = start - base;
        let tail = reserved - head - size;
        // SAFETY: both ranges lie inside the mapping just made and outside the block
        // returned; the kernel accepts page-aligned ranges (all of these are).
        unsafe {
            if head > 0 {
                libc::munmap(base as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((start + size) as *mut libc::c_void, tail);
            }
            // Advice only: if THP is off, the table works on small pages.
            libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            // Fault the whole block in now (Linux 5.14+; older kernels refuse and fault
            // it lazily): a hash table touches every page of its block anyway, and this
            // way the first touch of a reserved table is paid at open, not per transfer
            // under traffic.
            libc::madvise(start as *mut libc::c_void, size, libc::MADV_POPULATE_WRITE);
        }
        let block = std::ptr::slice_from_raw_parts_mut(start as *mut u8, size);
        NonNull::new(block).ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !is_large(layout) {
            // SAFETY: small blocks came from `Global` with this layout.
            unsafe { Global.deallocate(ptr, layout) };
            return;
        }
        // SAFETY: `ptr` is the start of a mapping of `mapped_size(layout)` bytes made by
        // `allocate` for this layout, and the caller no longer uses it.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), mapped_size(layout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_tables_are_aligned_and_hold_their_entries() {
        let mut map: BigMap<u128, u64> = BigMap::default();
        let entries = 1_000_000u64;
        for i in 0..entries {
            map.insert(u128::from(i) << 64 | u128::from(i), i * 3);
        }
        assert!(map.allocation_size() >= HUGE_PAGE_TABLE_BYTES_MIN, "the table is large: {}", map.allocation_size());
        for i in (0..entries).step_by(997) {
            assert_eq!(map.get(&(u128::from(i) << 64 | u128::from(i))), Some(&(i * 3)));
        }
        map.retain(|_, v| *v % 2 == 0);
        assert_eq!(map.len() as u64, entries / 2);
        map.shrink_to_fit();
        drop(map);
    }

    #[test]
    fn blocks_are_huge_page_aligned_or_from_the_global_allocator() {
        let layout = Layout::from_size_align(HUGE_PAGE_TABLE_BYTES_MIN + 12_345, 16).unwrap();
        let block = HugePages.allocate(layout).unwrap();
        assert_eq!(block.as_ptr().cast::<u8>() as usize % HUGE_PAGE_BYTES, 0);
        assert!(block.len() >= layout.size());
        // The whole block is writable.
        // SAFETY: the block is `block.len()` bytes, just allocated, used by nothing else.
        unsafe {
            std::ptr::write_bytes(block.as_ptr().cast::<u8>(), 0xa5, block.len());
            HugePages.deallocate(block.cast(), layout);
        }
        let small = Layout::from_size_align(4096, 8).unwrap();
        let block = HugePages.allocate(small).unwrap();
        // SAFETY: as above, for the small block.
        unsafe { HugePages.deallocate(block.cast(), small) };
    }
}
