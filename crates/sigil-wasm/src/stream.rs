//! `client.stream(...)`: a stream's items as a JavaScript async iterator.
//!
//! The core's machine receives the items and keeps the credit; this file
//! keeps the items the consumer has not taken yet (at most the stream's
//! window: the machine refuses more), hands them to `next()` in order, and
//! tells the machine when the consumer takes one (`consumed`), so the
//! server may send more. `return()` (what `break` out of `for await`
//! calls), an aborted signal, and the iterator being freed cancel the
//! stream on the server.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use js_sys::{Object, Promise, Reflect, Symbol};
use sigil_core::connection::StreamOptions;
use sigil_core::rpc::MAX_STREAM_CREDIT;
use wasm_bindgen::prelude::*;

use crate::client::{Client, OnAbort, Pending, Settle, args_json, cancel, pump};
use crate::link::{Inner, Phase, now_ms};
use crate::options;

/// `next()` calls to settle, each with its outcome.
type Answers = Vec<(Settle, Result<JsValue, JsValue>)>;

/// What a stream has received and the consumer has not taken yet.
#[derive(Default)]
pub(crate) struct Buffer {
    /// Items, parsed, in order.
    items: VecDeque<JsValue>,
    /// How it ended, once it has: `Ok` (done) or the error to throw after
    /// the items (then `Ok`). `None` while the machine still has it open.
    end: Option<Result<(), JsValue>>,
    /// `next()` calls waiting for an item or the end, oldest first (rarely
    /// more than one).
    waiting: Vec<Settle>,
    /// The listener on the stream's `signal`, if it has one.
    abort: Option<OnAbort>,
}

impl Buffer {
    /// An item has come (while the stream is open).
    pub(crate) fn push(&mut self, item: JsValue) {
        if self.end.is_none() {
            self.items.push_back(item);
        }
    }

    /// Ends the stream here (once): false if it had ended already.
    pub(crate) fn finish(&mut self, end: Result<(), JsValue>) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.end = Some(end);
        self.abort = None;
        true
    }

    /// Answers the waiting `next()` calls it can: each takes an item, else
    /// the end. Returns the answers and how many items the consumer took
    /// while the stream is open (to tell the machine).
    fn take(&mut self) -> (Answers, u32) {
        let open = self.end.is_none();
        let mut ready = Vec::new();
        let mut taken = 0;
        while !self.waiting.is_empty() {
            let outcome = match (self.items.pop_front(), &self.end) {
                (Some(item), _) => {
                    taken += 1;
                    Ok(step(&item, false))
                }
                (None, None) => break,
                (None, Some(_)) => match self.end.replace(Ok(())) {
                    Some(Err(e)) => Err(e),
                    _ => Ok(step(&JsValue::UNDEFINED, true)),
                },
            };
            ready.push((self.waiting.remove(0), outcome));
        }
        (ready, if open { taken } else { 0 })
    }
}

/// An iterator result: `{ value, done }`.
fn step(value: &JsValue, done: bool) -> JsValue {
    let result = Object::new();
    // Setting a property on a fresh object cannot fail.
    let _ = Reflect::set(&result, &"value".into(), value);
    let _ = Reflect::set(&result, &"done".into(), &done.into());
    result.into()
}

/// Settles the `next()` calls of stream `id` that can be, and tells the
/// machine about the items they took.
pub(crate) fn deliver(inner: &Weak<RefCell<Inner>>, id: u64, buffer: &RefCell<Buffer>) {
    let (ready, taken) = buffer.borrow_mut().take();
    if taken > 0
        && let Some(rc) = inner.upgrade()
    {
        let open = {
            let mut s = rc.borrow_mut();
            if let Phase::Open(conn) = &mut s.phase {
                conn.consumed(now_ms(), id, taken);
                true
            } else {
                false
            }
        };
        if open {
            pump(&rc);
        }
    }
    for (settle, outcome) in ready {
        settle.settle(outcome);
    }
}

/// The items of one stream, as an async iterator (`SigilStream` in the
/// TypeScript declarations).
#[wasm_bindgen(skip_typescript)]
pub struct ItemStream {
    id: u64,
    inner: Weak<RefCell<Inner>>,
    buffer: Rc<RefCell<Buffer>>,
}

#[wasm_bindgen]
impl ItemStream {
    /// The next item as `{ value, done: false }`; `{ done: true }` after the
    /// server's end; rejects once with the stream's error.
    pub fn next(&self) -> Promise {
        let promise = Promise::new(&mut |resolve, reject| {
            self.buffer
                .borrow_mut()
                .waiting
                .push(Settle { resolve, reject });
        });
        self.deliver();
        promise
    }

    /// Cancels the stream (if it is still open) and drops what it has
    /// buffered: what `break` out of `for await` calls.
    #[wasm_bindgen(js_name = "return")]
    pub fn stop(&self) -> Promise {
        stop(&self.inner, self.id, &self.buffer, Ok(()));
        {
            let mut b = self.buffer.borrow_mut();
            b.items.clear();
            b.end = Some(Ok(()));
        }
        self.deliver();
        Promise::resolve(&step(&JsValue::UNDEFINED, true))
    }
}

impl ItemStream {
    fn deliver(&self) {
        deliver(&self.inner, self.id, &self.buffer);
    }
}

impl Drop for ItemStream {
    /// Freed before its end: cancel it on the server.
    fn drop(&mut self) {
        stop(&self.inner, self.id, &self.buffer, Ok(()));
    }
}

/// Stops stream `id` if it is still open, with `end` as its outcome: its
/// buffered items are dropped and the server is told to stop it.
fn stop(
    inner: &Weak<RefCell<Inner>>,
    id: u64,
    buffer: &Rc<RefCell<Buffer>>,
    end: Result<(), JsValue>,
) {
    let open = {
        let mut b = buffer.borrow_mut();
        let open = b.finish(end);
        if open {
            b.items.clear();
        }
        open
    };
    if open && let Some(rc) = inner.upgrade() {
        let _ = cancel(&rc, id);
    }
    deliver(inner, id, buffer);
}

#[wasm_bindgen]
impl Client {
    /// Opens a stream: `method` of `object` with `args`, its items as an
    /// async iterator (`for await`). See `SigilStream` and `StreamOptions`
    /// in the TypeScript declarations.
    #[wasm_bindgen(skip_typescript)]
    pub fn stream(&self, object: &str, method: &str, args: JsValue, options: JsValue) -> JsValue {
        let buffer = Rc::new(RefCell::new(Buffer::default()));
        let id = self
            .open_stream(object, method, &args, &options, &buffer)
            .unwrap_or_else(|e| {
                buffer.borrow_mut().finish(Err(e));
                0
            });
        let stream = JsValue::from(ItemStream {
            id,
            inner: Rc::downgrade(&self.inner),
            buffer,
        });
        // `for await` asks the iterator for its iterator: itself, which
        // `Object.prototype.valueOf` returns.
        let proto = Object::get_prototype_of(&stream);
        if let Ok(itself) = Reflect::get(&proto, &"valueOf".into()) {
            let _ = Reflect::set(&proto, &Symbol::async_iterator(), &itself);
        }
        stream
    }
}

impl Client {
    /// Sends the stream request and registers `buffer` for its items.
    fn open_stream(
        &self,
        object: &str,
        method: &str,
        args: &JsValue,
        options: &JsValue,
        buffer: &Rc<RefCell<Buffer>>,
    ) -> Result<u64, JsValue> {
        let (options, timeout_ms, signal) = crate::client::call_options(options, "stream")?;
        let window = options::number(&options, "window", MAX_STREAM_CREDIT, "a number of items")?;
        let idle = options::millis(&options, "idleTimeoutMs")?;
        let args = args_json(args)?;
        let stream_options = StreamOptions {
            timeout_ms,
            window,
            idle_timeout_ms: idle.map(u64::from),
        };
        let id =
            self.with_conn(|conn| conn.stream(now_ms(), object, method, &*args, stream_options))?;
        let weak = Rc::downgrade(buffer);
        let inner = Rc::downgrade(&self.inner);
        let mut b = buffer.borrow_mut();
        b.abort = signal.map(|signal| {
            OnAbort::new(signal, move || {
                if let Some(buffer) = weak.upgrade() {
                    stop(&inner, id, &buffer, Err(crate::client::cancelled("stream")));
                }
            })
        });
        drop(b);
        self.inner
            .borrow_mut()
            .pending
            .insert(id, Pending::Stream(buffer.clone()));
        Ok(id)
    }
}
