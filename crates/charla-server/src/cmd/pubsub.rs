//! Pub/sub commands: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBSUB.
//! Confirmations are push frames in RESP3 and plain arrays in RESP2, as Redis sends them.

use bytes::Bytes;

use super::args::{is, own};
use super::spec::{Ctx, Res};

pub fn publish(ctx: &mut Ctx) -> Res {
    let limit = ctx.shared.pubsub_limit();
    let n = ctx
        .shared
        .lock_pubsub()
        .publish(&ctx.args[1], &ctx.args[2], &limit);
    ctx.out.int(n);
    Res::Ok
}

fn confirm(ctx: &mut Ctx, kind: &[u8], name: Option<&[u8]>) {
    let count = ctx.client.subs.len() + ctx.client.psubs.len();
    ctx.out.push(3);
    ctx.out.bulk(kind);
    match name {
        Some(n) => ctx.out.bulk(n),
        None => ctx.out.null(),
    }
    ctx.out.int(count as i64);
}

pub fn subscribe(ctx: &mut Ctx) -> Res {
    let pattern = is(&ctx.args[0], "PSUBSCRIBE");
    let id = ctx.client.id;
    let mb = ctx.client.mailbox.clone();
    for ch in &ctx.args[1..] {
        let ch = own(ch);
        {
            let mut ps = ctx.shared.lock_pubsub();
            if pattern {
                ps.psubscribe(ch.clone(), id, &mb);
            } else {
                ps.subscribe(ch.clone(), id, &mb);
            }
        }
        if pattern {
            ctx.client.psubs.insert(ch.clone());
            confirm(ctx, b"psubscribe", Some(&ch));
        } else {
            ctx.client.subs.insert(ch.clone());
            confirm(ctx, b"subscribe", Some(&ch));
        }
    }
    Res::Ok
}

pub fn unsubscribe(ctx: &mut Ctx) -> Res {
    let pattern = is(&ctx.args[0], "PUNSUBSCRIBE");
    let id = ctx.client.id;
    let names: Vec<Bytes> = if ctx.args.len() > 1 {
        ctx.args[1..].to_vec()
    } else if pattern {
        ctx.client.psubs.iter().cloned().collect()
    } else {
        ctx.client.subs.iter().cloned().collect()
    };
    let kind: &[u8] = if pattern {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    if names.is_empty() {
        confirm(ctx, kind, None);
        return Res::Ok;
    }
    for ch in names {
        {
            let mut ps = ctx.shared.lock_pubsub();
            if pattern {
                ps.punsubscribe(&ch, id);
            } else {
                ps.unsubscribe(&ch, id);
            }
        }
        if pattern {
            ctx.client.psubs.remove(&ch);
        } else {
            ctx.client.subs.remove(&ch);
        }
        confirm(ctx, kind, Some(&ch));
    }
    Res::Ok
}

/// Drop every subscription of the client (RESET, disconnect), without replies.
pub fn unsubscribe_all(ctx: &mut Ctx) {
    let id = ctx.client.id;
    let mut ps = ctx.shared.lock_pubsub();
    for ch in ctx.client.subs.drain() {
        ps.unsubscribe(&ch, id);
    }
    for p in ctx.client.psubs.drain() {
        ps.punsubscribe(&p, id);
    }
}

pub fn pubsub(ctx: &mut Ctx) -> Res {
    let sub = ctx.args[1].clone();
    if is(&sub, "CHANNELS") && ctx.args.len() <= 3 {
        let pat = ctx.args.get(2).cloned();
        let chans = ctx.shared.lock_pubsub().channels(pat.as_deref());
        ctx.out.array(chans.len());
        for c in chans {
            ctx.out.bulk(&c);
        }
    } else if is(&sub, "NUMSUB") {
        let counts: Vec<(Bytes, usize)> = {
            let ps = ctx.shared.lock_pubsub();
            ctx.args[2..]
                .iter()
                .map(|c| (c.clone(), ps.numsub(c)))
                .collect()
        };
        // A flat array in RESP3 too, as redis-server 7.0 answers.
        ctx.out.array(counts.len() * 2);
        for (c, n) in counts {
            ctx.out.bulk(&c);
            ctx.out.int(n as i64);
        }
    } else if is(&sub, "NUMPAT") && ctx.args.len() == 2 {
        let n = ctx.shared.lock_pubsub().numpat();
        ctx.out.int(n as i64);
    } else {
        ctx.err_subcommand(&sub);
    }
    Res::Ok
}
