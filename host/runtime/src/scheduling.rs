//! Scheduling as a capability: `oxydra:scheduler/jobs` lets a tool keep the calling
//! user's jobs. The runtime keeps no jobs (the session layer does, in the user's store);
//! it defines this trait, and the layer above passes an implementation scoped to the
//! turn's user and origin for each call ([`crate::CallContext::jobs`]).

pub use crate::bindings::jobs::{
    CadenceKind, Job, JobStatus, NewJob, Notify, OutputPage, Page, Patch, Query, Run, RunStatus,
};

/// The calling user's jobs. Every `Err` is a message for the model naming the field
/// and what is valid.
pub trait Jobs: Send + Sync {
    /// A new job whose origin is the calling turn's, never one the tool names.
    fn create(&self, job: NewJob) -> Result<Job, String>;
    fn search(&self, query: Query) -> Result<Page, String>;
    fn edit(&self, patch: Patch) -> Result<Job, String>;
    /// The job and its run history.
    fn delete(&self, id: &str) -> Result<(), String>;
    /// The job's latest runs, newest first.
    fn runs(&self, job: &str, limit: u32) -> Result<Vec<Run>, String>;
    /// `max_chars` characters of a run's full output from `offset` (characters).
    fn run_output(&self, run: &str, offset: u32, max_chars: u32) -> Result<OutputPage, String>;
}
