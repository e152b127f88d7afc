//! `oxydra-host model status|prepare|stop`: the managed local model (llama.cpp's
//! llama-server serving SmolLM2-135M-Instruct on 127.0.0.1), used when no API key is set.

use crate::Failure;
use clap::Subcommand;
use oxydra_session::local;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// What is prepared (server binary, model file) and which servers run.
    Status,
    /// Download the model and build llama-server now (about 10 minutes on 2 cores, once).
    Prepare,
    /// Stop servers whose owning process is gone (`--all`: every one).
    Stop {
        #[arg(long)]
        all: bool,
    },
}

pub fn run(cmd: ModelCommand) -> Result<(), Failure> {
    match cmd {
        ModelCommand::Status => {
            let s = local::status();
            println!("local model: {}", local::MODEL_NAME);
            println!("directory:   {}", s.dir.display());
            let shown = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map_or("missing (oxydra-host model prepare)".to_string(), |p| {
                        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                        format!("{} ({:.1} MB)", p.display(), size as f64 / 1e6)
                    })
            };
            println!("server:      {}", shown(&s.server));
            println!("model:       {}", shown(&s.model));
            if s.running.is_empty() {
                println!("running:     none");
            }
            for (pid, owner, port, owner_alive) in &s.running {
                println!(
                    "running:     pid {pid} on 127.0.0.1:{port}, for pid {owner}{}",
                    if *owner_alive {
                        ""
                    } else {
                        " (gone: `oxydra-host model stop` ends it)"
                    }
                );
            }
            Ok(())
        }
        ModelCommand::Prepare => {
            let before = local::status();
            if before.ready() {
                println!("ready: {}", before.dir.display());
                return Ok(());
            }
            let started = std::time::Instant::now();
            let s = local::prepare(&mut |line| eprintln!("[local model] {line}"))?;
            println!(
                "ready in {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                s.dir.display()
            );
            Ok(())
        }
        ModelCommand::Stop { all } => {
            let n = local::stop(all);
            println!("stopped {n} server(s)");
            Ok(())
        }
    }
}
