//! Isolation tiers: the runner ([`runner`]) that launches the runtime in a tier,
//! supervises it and owns what crosses the tier's boundary (the egress proxy
//! [`egress`], the gateway's listener, the log, the control socket [`control`]); and the
//! `process` tier's self-confinement ([`confine`]), which a runtime applies to itself
//! before it reads any input; and the `container` tier ([`container`]), the runtime in a
//! Docker container through the Engine API, with its shell sidecar's daemon ([`shell`]).

pub mod confine;
pub mod container;
pub mod control;
pub mod egress;
pub mod runner;
pub mod share9p;
pub mod shell;
pub mod vm;
pub mod vm_guest;
pub mod vsock;
