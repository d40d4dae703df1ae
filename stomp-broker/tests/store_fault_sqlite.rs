//! store_fault_sqlite (being written)
