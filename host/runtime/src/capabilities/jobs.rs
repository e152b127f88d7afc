//! `oxydra:scheduler/jobs`: a tool keeps the calling user's scheduled jobs. The runtime
//! keeps none; the layer above passes a [`Jobs`] scoped to the turn's user and origin for
//! each call (`ComponentHost::call_with`), and only the scheduler profile links this
//! interface.

use crate::bindings::imports::oxydra::scheduler::jobs as wit;
use crate::bindings::jobs::{Job, NewJob, OutputPage, Page, Patch, Query, Run};
use crate::scheduling::Jobs;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The per-call context of `oxydra:scheduler/jobs`: the call's jobs, if any.
#[derive(Default)]
pub struct JobsCtx {
    jobs: Option<Arc<dyn Jobs>>,
}

impl JobsCtx {
    pub fn new(jobs: Option<Arc<dyn Jobs>>) -> JobsCtx {
        JobsCtx { jobs }
    }

    fn jobs(&self) -> Result<&Arc<dyn Jobs>, String> {
        self.jobs.as_ref().ok_or_else(|| {
            "scheduling is not available here (the scheduler is disabled, or this call has no user to schedule for)".to_string()
        })
    }
}

/// Store data that carries a [`JobsCtx`].
pub trait JobsView: Send {
    fn jobs(&mut self) -> &mut JobsCtx;
}

pub struct HasJobs;

impl HasData for HasJobs {
    type Data<'a> = &'a mut JobsCtx;
}

impl wit::Host for JobsCtx {
    fn create(&mut self, job: NewJob) -> Result<Job, String> {
        self.jobs()?.create(job)
    }
    fn search(&mut self, query: Query) -> Result<Page, String> {
        self.jobs()?.search(query)
    }
    fn edit(&mut self, patch: Patch) -> Result<Job, String> {
        self.jobs()?.edit(patch)
    }
    fn delete(&mut self, id: String) -> Result<(), String> {
        self.jobs()?.delete(&id)
    }
    fn runs(&mut self, job: String, limit: u32) -> Result<Vec<Run>, String> {
        self.jobs()?.runs(&job, limit)
    }
    fn run_output(
        &mut self,
        run: String,
        offset: u32,
        max_chars: u32,
    ) -> Result<OutputPage, String> {
        self.jobs()?.run_output(&run, offset, max_chars)
    }
}

/// `oxydra:scheduler/jobs`.
pub fn add_to_linker<T: JobsView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasJobs>(l, |t| t.jobs())
}
