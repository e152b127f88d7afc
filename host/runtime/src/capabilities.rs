//! Host implementations of the capabilities a component may import, one file each.

pub mod fs;
pub mod http;
pub mod paths;
pub mod vault;
