//! Work spread over a fixed set of server connections: dump workers each hold a transaction of
//! the same consistent snapshot, loaders each a prepared session, so the work must run on those
//! connections and nowhere else. Items are taken in the given order (callers put big tables
//! first); the first error stops the others from taking new items and is what the caller gets.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ::mysql::Conn;

use crate::error::{Error, Result};

/// Runs `work` on every item, one thread per connection; results in completion order.
pub fn on_connections<T: Send, R: Send>(
    conns: &mut [Conn],
    items: Vec<T>,
    work: impl Fn(&mut Conn, T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let queue = Mutex::new(VecDeque::from(items));
    let failed = AtomicBool::new(false);
    let done = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for c in conns.iter_mut() {
            let (queue, failed, done, first_error, work) =
                (&queue, &failed, &done, &first_error, &work);
            s.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(item) = next else { break };
                    match work(c, item) {
                        Ok(r) => {
                            if let Ok(mut d) = done.lock() {
                                d.push(r);
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut f) = first_error.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(done.into_inner().unwrap_or_default())
}
