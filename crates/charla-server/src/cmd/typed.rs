//! A key looked up as one type, the first step of nearly every data command: missing, the
//! value, or Redis's WRONGTYPE error written; and the removal of a container a command
//! emptied (Redis never keeps an empty list, hash, set or sorted set).

use super::args::WRONGTYPE;
use super::spec::Ctx;
use crate::db::{now_ms, Db, Value};

/// The value at `key` as `T` (`as_t` picks the variant): Ok(None) when the key is missing,
/// Err(()) after writing WRONGTYPE when it holds another type.
pub(super) fn read_as<'a, T: ?Sized>(
    ctx: &mut Ctx,
    db: &'a mut Db,
    key: &[u8],
    as_t: fn(&Value) -> Option<&T>,
) -> Result<Option<&'a T>, ()> {
    match db.dbs[ctx.client.db].get(key, now_ms()).map(|e| &e.value) {
        None => Ok(None),
        Some(v) => match as_t(v) {
            Some(t) => Ok(Some(t)),
            None => {
                ctx.out.err(WRONGTYPE);
                Err(())
            }
        },
    }
}

/// [`read_as`] for changing the value in place (counts as a change of the key).
pub(super) fn write_as<'a, T: ?Sized>(
    ctx: &mut Ctx,
    db: &'a mut Db,
    key: &[u8],
    as_t: fn(&mut Value) -> Option<&mut T>,
) -> Result<Option<&'a mut T>, ()> {
    match db.dbs[ctx.client.db]
        .get_mut(key, now_ms())
        .map(|e| &mut e.value)
    {
        None => Ok(None),
        Some(v) => match as_t(v) {
            Some(t) => Ok(Some(t)),
            None => {
                ctx.out.err(WRONGTYPE);
                Err(())
            }
        },
    }
}

/// Remove `key` from database `dbi` if `empty` says its value became empty.
pub(super) fn drop_if_empty(db: &mut Db, dbi: usize, key: &[u8], empty: fn(&Value) -> bool) {
    let ks = &mut db.dbs[dbi];
    if ks.peek(key).is_some_and(|e| empty(&e.value)) {
        ks.remove(key);
    }
}
