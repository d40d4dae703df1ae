//! store_fault_mongodb (being written)
