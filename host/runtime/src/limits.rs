//! Every resource limit of the component host, in one place. Each default says why.
//! Operators override them globally (`[components.limits]`) or per tool
//! (`[components.tools.<name>.limits]`).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often the epoch ticker advances the engine's epoch. Deadlines are rounded up to
/// whole ticks: 5 ms keeps the rounding small without a busy thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most component instances alive at once across the host (pooling allocator slots).
/// A turn holds one provider instance while the model streams and one per running tool
/// call: 1024 slots carry a few hundred concurrent sessions. A slot only reserves
/// address space until it is used.
pub const POOL_INSTANCES: u32 = 1024;

/// Bytes of each pooled linear memory kept resident between calls. A Rust tool touches
/// its stack and a little heap on every call; measured on the trivial-call benchmark,
/// keeping these pages resident saves more page faults than the memset costs.
pub const KEEP_RESIDENT_BYTES: usize = 256 * 1024;

/// Hard ceiling on any configured memory limit: a tool that needs more than 1 GiB is
/// not a tool.
pub const MAX_MEMORY_MIB: u64 = 1024;

/// Limits applied to one call of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per instance. File tools need a few MiB (a 16 MiB vault copy is the
    /// biggest bundled case); 64 MiB stops a memory bomb long before the host notices.
    pub memory_mib: u64,
    /// Wall-clock deadline per call, enforced by epoch interruption. File operations
    /// finish in milliseconds; 10 s stops a runaway loop without cutting real work.
    pub deadline_ms: u64,
    /// Table elements per table. Rust components use a few hundred to a few thousand.
    pub table_elements: usize,
    /// Core instances a component may create (a Rust component has 3-6).
    pub instances: usize,
    /// Tables and memories per component.
    pub tables: usize,
    pub memories: usize,
    /// Largest result a call may return to the model, in bytes: model context is finite.
    pub max_output_bytes: usize,
    /// Guest stdout/stderr kept for the logs, per stream, in bytes.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            deadline_ms: 10_000,
            table_elements: 20_000,
            instances: 16,
            tables: 16,
            memories: 4,
            max_output_bytes: 1024 * 1024,
            log_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib.min(MAX_MEMORY_MIB) as usize) << 20
    }

    /// The deadline in epoch ticks, plus one: the ticker runs freely, so the first tick
    /// after a call starts comes anywhere within one tick, and a call is never stopped
    /// before its deadline (at most one tick after it).
    pub fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_millis() as u64;
        self.deadline_ms.div_ceil(tick).max(1) + 1
    }

    /// Check values an operator wrote; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "memory_mib must be between 1 and {MAX_MEMORY_MIB}, got {}",
                self.memory_mib
            ));
        }
        if self.deadline_ms == 0 {
            return Err("deadline_ms must be at least 1".into());
        }
        if self.max_output_bytes == 0 {
            return Err("max_output_bytes must be at least 1".into());
        }
        Ok(())
    }
}
