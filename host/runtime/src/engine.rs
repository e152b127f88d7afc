//! The one wasmtime engine: epoch interruption always on, pooling allocator, and the
//! ticker thread that drives deadlines.

use crate::limits::{EPOCH_TICK, KEEP_RESIDENT_BYTES, MAX_MEMORY_MIB, POOL_INSTANCES};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Build the engine. `max_memory_mib` is the largest memory limit any loaded component
/// may use (the pool's slot size).
pub fn build(max_memory_mib: u64) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .total_stacks(POOL_INSTANCES)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_core_instances_per_component(16)
        .max_memory_size((max_memory_mib.min(MAX_MEMORY_MIB) as usize) << 20)
        // A fresh instance per call would otherwise page-fault its stack and heap in
        // again on every call; keeping the first pages resident (zeroed with memset on
        // release) is cheaper than those faults. See limits::KEEP_RESIDENT_BYTES.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 8);
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    start_ticker(&engine);
    Ok(engine)
}

/// Advance the epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("oxydra-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        // Without the ticker deadlines would never fire: say so loudly.
        tracing::error!(error = %e, "could not start the epoch ticker; tool deadlines will not be enforced");
    }
}
