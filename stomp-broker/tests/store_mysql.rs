//! store_mysql (being written)
