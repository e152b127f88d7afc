//! Isolation tiers. Today: the `process` tier's self-confinement ([`confine`]), which a
//! runtime applies to itself before it reads any input.

pub mod confine;
pub mod egress;
