//! An embeddable STOMP broker.
//!
//! Not built yet: the broker (sessions, destinations, acknowledgements,
//! transactions, transports) is the next piece of work. Today this crate
//! only re-exports the frame codec it will be built on, so that embedders
//! can depend on one crate name from the start.
#![deny(missing_docs)]

pub use stomp_codec as codec;
