//! store_mongodb (being written)
