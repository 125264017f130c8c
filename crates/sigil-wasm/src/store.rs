//! Identities kept in IndexedDB: database `sigil`, object store
//! `identities`, one record per name, `{ privateKey, publicKey }`. The
//! private key is stored as the `CryptoKey` itself, which IndexedDB keeps
//! non-extractable: a script of the page can load it and use it, never read
//! its bytes.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::{self, STORAGE_FAILED};

const DATABASE: &str = "sigil";
const STORE: &str = "identities";

#[wasm_bindgen]
extern "C" {
    /// An `IDBRequest` (or `IDBOpenDBRequest`).
    type Request;
    #[wasm_bindgen(method, getter, catch)]
    fn result(this: &Request) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn error(this: &Request) -> JsValue;
    #[wasm_bindgen(method, setter)]
    fn set_onsuccess(this: &Request, f: &Function);
    #[wasm_bindgen(method, setter)]
    fn set_onerror(this: &Request, f: &Function);
    #[wasm_bindgen(method, setter)]
    fn set_onblocked(this: &Request, f: &Function);
    #[wasm_bindgen(method, setter)]
    fn set_onupgradeneeded(this: &Request, f: &Closure<dyn FnMut()>);

    type Database;
    #[wasm_bindgen(method, catch)]
    fn transaction(this: &Database, store: &str, mode: &str) -> Result<Transaction, JsValue>;
    #[wasm_bindgen(method, catch, js_name = createObjectStore)]
    fn create_object_store(this: &Database, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method)]
    fn close(this: &Database);

    type Transaction;
    #[wasm_bindgen(method, catch, js_name = objectStore)]
    fn object_store(this: &Transaction, name: &str) -> Result<Store, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn error(this: &Transaction) -> JsValue;
    #[wasm_bindgen(method, setter)]
    fn set_oncomplete(this: &Transaction, f: &Function);
    #[wasm_bindgen(method, setter)]
    fn set_onerror(this: &Transaction, f: &Function);
    #[wasm_bindgen(method, setter)]
    fn set_onabort(this: &Transaction, f: &Function);

    type Store;
    #[wasm_bindgen(method, catch)]
    fn put(this: &Store, value: &JsValue, key: &str) -> Result<Request, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &Store, key: &str) -> Result<Request, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn delete(this: &Store, key: &str) -> Result<Request, JsValue>;

    #[wasm_bindgen(catch, js_namespace = indexedDB, js_name = open)]
    fn open(name: &str, version: u32) -> Result<Request, JsValue>;
}

/// A `storage_failed` error: `what` failed because of `e`.
fn failed(what: &str, e: &JsValue) -> JsValue {
    error::identity(
        STORAGE_FAILED,
        &format!("{what}: IndexedDB failed ({})", crate::agent::message(e)),
    )
}

/// Opens the database, creating its store the first time.
async fn open_database() -> Result<Database, JsValue> {
    let request = open(DATABASE, 1)?;
    let upgrading = request.clone().unchecked_into::<Request>();
    let upgrade = Closure::<dyn FnMut()>::new(move || {
        if let Ok(db) = upgrading.result() {
            let _ = db.unchecked_into::<Database>().create_object_store(STORE);
        }
    });
    request.set_onupgradeneeded(&upgrade);
    let opened = Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(&resolve);
        request.set_onerror(&reject);
        request.set_onblocked(&reject);
    });
    let outcome = JsFuture::from(opened).await;
    drop(upgrade);
    match outcome {
        Ok(_) => Ok(request.result()?.unchecked_into()),
        Err(_) => Err(request.error()),
    }
}

/// What to do with the store.
pub(crate) enum Op {
    /// The record under a name (`undefined` if none).
    Get(String),
    /// Stores a record under a name, replacing what was there.
    Put(String, JsValue),
    /// Deletes the record under a name (if any).
    Delete(String),
}

/// Runs `op` in a transaction and returns its request's result once the
/// transaction has committed.
pub(crate) async fn run(op: Op) -> Result<JsValue, JsValue> {
    let (what, name) = match &op {
        Op::Get(name) => ("load", name),
        Op::Put(name, _) => ("save", name),
        Op::Delete(name) => ("delete", name),
    };
    let outcome = transact(&op).await;
    outcome.map_err(|e| failed(&format!("cannot {what} the identity \"{name}\""), &e))
}

async fn transact(op: &Op) -> Result<JsValue, JsValue> {
    let db = open_database().await?;
    let outcome = async {
        let mode = if matches!(op, Op::Get(_)) {
            "readonly"
        } else {
            "readwrite"
        };
        let tx = db.transaction(STORE, mode)?;
        let store = tx.object_store(STORE)?;
        let request = match op {
            Op::Get(name) => store.get(name)?,
            Op::Put(name, record) => store.put(record, name)?,
            Op::Delete(name) => store.delete(name)?,
        };
        let committed = Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(&resolve);
            tx.set_onerror(&reject);
            tx.set_onabort(&reject);
        });
        match JsFuture::from(committed).await {
            Ok(_) => request.result(),
            Err(_) => Err(tx.error()),
        }
    }
    .await;
    db.close();
    outcome
}

/// A record's field.
pub(crate) fn field(record: &JsValue, name: &str) -> JsValue {
    Reflect::get(record, &name.into()).unwrap_or(JsValue::UNDEFINED)
}
