//! The benchmark behind `history-load`: the sustained rate at which one
//! broker stores chat messages through its batching
//! [`HistoryWriter`](stomp_broker::store::HistoryWriter) into one backend.
//!
//! # Layout
//! - `args`: the command line.
//! - `backend`: opening a store on a fresh database (SQLite file, MySQL or
//!   MariaDB database, MongoDB database) and removing it afterwards.
//! - `handler`: the broker's `/app/` handler, which stamps each message as
//!   the chat server does and appends it to the writer, waiting (not
//!   refusing) while the writer's buffer is full.
//! - `producer`: STOMP 1.2 clients over loopback TCP that send pre-encoded
//!   `SEND` frames as fast as the broker reads them.
//! - `sampler`: the writer's counters once a second, and their summary;
//!   `machine`: the CPU time of the whole machine.
//! - `verify`: after the run, every accepted message must be in the store.
//! - `run`: one run from start to report.

pub(crate) mod args;
pub(crate) mod backend;
pub(crate) mod handler;
pub(crate) mod machine;
pub(crate) mod producer;
pub(crate) mod run;
pub(crate) mod sampler;
pub(crate) mod verify;

#[path = "../load/error.rs"]
mod error;

pub(crate) use error::{Error, Result};

impl From<stomp_broker::store::StoreError> for Error {
    fn from(error: stomp_broker::store::StoreError) -> Self {
        Self::new(format!("store: {error}"))
    }
}
