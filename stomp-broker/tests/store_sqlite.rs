//! store_sqlite (being written)
