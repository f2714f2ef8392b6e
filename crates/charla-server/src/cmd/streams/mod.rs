//! Stream commands, by concern: [`entries`] (XADD, XLEN, XRANGE, XREVRANGE, XTRIM, XDEL,
//! XSETID), [`read`] (XREAD, XREADGROUP), [`groups`] (XGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM), [`info`] (XINFO), over what they share in [`common`]. The stream type itself
//! is [`crate::stream`].
//!
//! Anything that depends on the clock or on generated ids is written to the AOF in a
//! deterministic form (explicit ids, XCLAIM ... FORCE JUSTID for deliveries), as Redis does, so
//! replay rebuilds the same pending-entries lists.

pub mod common;

pub mod entries;
pub mod groups;
pub mod info;
pub mod read;
