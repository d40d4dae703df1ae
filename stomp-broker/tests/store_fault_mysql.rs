//! store_fault_mysql (being written)
