//! Filling buffers that were never zeroed.
//!
//! Reads of chunked values can write into memory nobody initialised (a new Python `bytes`
//! object, say): zeroing 100 KB only to overwrite it was 8% of a 100 KB get. The readers take
//! `&mut [MaybeUninit<u8>]` and hand back the part they filled as `&mut [u8]`; these helpers
//! are the only places that turn one into the other.

use std::mem::MaybeUninit;

/// Copies `src` into the start of `dst` and returns the filled part.
///
/// # Panics
/// If `dst` is shorter than `src`.
pub(crate) fn copy_into<'a>(dst: &'a mut [MaybeUninit<u8>], src: &[u8]) -> &'a mut [u8] {
    let dst = &mut dst[..src.len()];
    // SAFETY: `dst` has exactly `src.len()` bytes and cannot overlap `src` (a shared and a
    // mutable borrow); every byte of it is written before it is viewed as initialised.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len());
        assume_filled(dst)
    }
}

/// Zeroes `dst` and returns it as bytes: for the paths that fill through an API taking
/// `&mut [u8]` (decompression), where zeroing is the price of that API.
pub(crate) fn zero(dst: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    // SAFETY: every byte is written (to zero) before the slice is viewed as initialised.
    unsafe {
        std::ptr::write_bytes(dst.as_mut_ptr(), 0, dst.len());
        assume_filled(dst)
    }
}

/// Views initialised bytes as a buffer to fill.
///
/// # Safety
/// The caller must write only initialised bytes through the result (every reader in this
/// crate does): writing `MaybeUninit::uninit()` into it would leave `bytes` holding
/// uninitialised memory.
pub(crate) unsafe fn as_unfilled(bytes: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; the caller keeps the bytes initialised.
    unsafe { &mut *(std::ptr::from_mut::<[u8]>(bytes) as *mut [MaybeUninit<u8>]) }
}

/// Views a buffer as bytes once it has been filled.
///
/// # Safety
/// Every byte of `dst` must have been initialised.
pub(crate) unsafe fn assume_filled(dst: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    // SAFETY: the caller guarantees every byte is initialised; the layouts are the same.
    unsafe { &mut *(std::ptr::from_mut::<[MaybeUninit<u8>]>(dst) as *mut [u8]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_into_fills_the_start_and_leaves_the_rest() {
        let mut buf = [MaybeUninit::<u8>::new(9); 5];
        assert_eq!(copy_into(&mut buf, b"abc"), b"abc");
        // SAFETY: every byte was initialised, to 9 or by the copy.
        assert_eq!(unsafe { assume_filled(&mut buf) }, b"abc\x09\x09");
    }

    #[test]
    fn zero_fills_every_byte() {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4];
        assert_eq!(zero(&mut buf), &[0, 0, 0, 0]);
    }
}
