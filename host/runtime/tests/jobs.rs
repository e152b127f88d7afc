//! `oxydra:scheduler/jobs` as a capability: a `scheduler`-profile tool reaches the jobs
//! service of its call and only that (none: "not available here"); the service decides
//! the origin, the tool cannot name one; no other grant may import the interface.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::{host, spec};
use oxydra_runtime::scheduling::{
    Job, JobStatus, Jobs, NewJob, OutputPage, Page, Patch, Query, Run,
};
use oxydra_runtime::{CallContext, Profile, Tier, Workspace};
use std::sync::{Arc, Mutex};

/// Records what the tool asked for; jobs get the origin it was made with.
struct Fake {
    origin: String,
    asked: Mutex<Vec<String>>,
}

fn job(n: &NewJob, origin: &str) -> Job {
    Job {
        id: "job-1".into(),
        name: n.name.clone().unwrap_or_default(),
        goal: n.goal.clone(),
        cadence_kind: n.cadence_kind,
        cadence_value: n.cadence_value.clone(),
        timezone: n.timezone.clone().unwrap_or("UTC".into()),
        notify: n
            .notify
            .unwrap_or(oxydra_runtime::scheduling::Notify::Always),
        status: JobStatus::Active,
        status_detail: String::new(),
        origin: origin.into(),
        next_run: Some("2030-01-01T00:00:00Z".into()),
        consecutive_failures: 0,
        max_turns: n.max_turns.unwrap_or(10),
        max_cost: n.max_cost,
        max_wall_secs: 600,
        created: "2029-01-01T00:00:00Z".into(),
    }
}

impl Jobs for Fake {
    fn create(&self, n: NewJob) -> Result<Job, String> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("create {}", n.cadence_value));
        if n.cadence_value == "bad" {
            return Err("cadence_value: `bad` is not a valid cron expression".into());
        }
        Ok(job(&n, &self.origin))
    }
    fn search(&self, q: Query) -> Result<Page, String> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("search {} {}", q.limit, q.offset));
        Ok(Page {
            jobs: vec![],
            total: 0,
        })
    }
    fn edit(&self, _: Patch) -> Result<Job, String> {
        Err("unused".into())
    }
    fn delete(&self, _: &str) -> Result<(), String> {
        Err("unused".into())
    }
    fn runs(&self, _: &str, _: u32) -> Result<Vec<Run>, String> {
        Err("unused".into())
    }
    fn run_output(&self, _: &str, _: u32, _: u32) -> Result<OutputPage, String> {
        Err("unused".into())
    }
}

#[test]
fn a_scheduler_tool_reaches_the_jobs_of_its_call_and_only_then() {
    let host = host();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ws = Arc::new(Workspace::open(dir.path()).unwrap());
    let create = host
        .load(&spec(
            "schedule_create",
            "oxydra-tool-schedule-create",
            Profile::Scheduler,
        ))
        .unwrap();
    assert_eq!(create.descriptor.tier, Tier::SideEffecting);
    let fake = Arc::new(Fake {
        origin: "telegram chat 42".into(),
        asked: Mutex::new(vec![]),
    });
    let ctx = CallContext {
        jobs: Some(fake.clone()),
        ..Default::default()
    };
    let args = serde_json::json!({
        "goal": "say hi", "cadence_type": "cron", "cadence_value": "0 8 * * *",
        "timezone": "Europe/Berlin"
    })
    .to_string();
    let out: serde_json::Value =
        serde_json::from_str(&host.call_with(&create, &args, &ws, &ctx).unwrap()).unwrap();
    assert_eq!(out["created"]["origin"], "telegram chat 42");
    assert_eq!(out["created"]["cadence_type"], "cron");
    assert_eq!(out["created"]["timezone"], "Europe/Berlin");
    // The service's refusal reaches the model as invalid arguments, naming the field.
    let bad = serde_json::json!({"goal": "x", "cadence_type": "cron", "cadence_value": "bad"});
    let e = host
        .call_with(&create, &bad.to_string(), &ws, &ctx)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid arguments: cadence_value:"), "{e}");
    // Without a jobs service for the call: refused, nothing asked.
    let e = host.call(&create, &args, &ws).unwrap_err().to_string();
    assert!(e.contains("scheduling is not available here"), "{e}");
    assert_eq!(fake.asked.lock().unwrap().len(), 2);

    let search = host
        .load(&spec(
            "schedule_search",
            "oxydra-tool-schedule-search",
            Profile::Scheduler,
        ))
        .unwrap();
    let out = host.call_with(&search, "{}", &ws, &ctx).unwrap();
    assert!(out.contains("\"total\":0"), "{out}");
    assert_eq!(
        fake.asked.lock().unwrap()[2],
        "search 20 0",
        "the schema's defaults"
    );
}

#[test]
fn no_other_grant_may_import_the_jobs_interface() {
    let host = host();
    for grant in [Profile::FileReadOnly, Profile::Delegation, Profile::Web] {
        let e = host
            .load(&spec(
                "schedule_create",
                "oxydra-tool-schedule-create",
                grant,
            ))
            .err()
            .unwrap_or_else(|| panic!("loaded under {grant}"))
            .to_string();
        assert!(
            e.contains("oxydra:scheduler/jobs") && e.contains(&format!("`{grant}`")),
            "{e}"
        );
    }
}
