//! Runnable examples; see the `[[example]]` entries of this crate's manifest.
