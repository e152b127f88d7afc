//! `oxydra-host`: the Oxydra host binary.

mod advice;
mod commands;
mod tui;

use oxydra_session::config;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "oxydra-host",
    version,
    about = "Oxydra: a self-hosted agent orchestrator built on WebAssembly components"
)]
struct Cli {
    /// An extra agent.toml applied above the standard layers; a file named runner.toml
    /// makes its directory the top config directory (its runner.toml and agent.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one agent.toml key, e.g. --set runtime.max_turns=20 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Log more (info); OXYDRA_LOG takes a full filter, e.g. OXYDRA_LOG=debug.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// The user a command acts for, when the command names none (e.g.
    /// `oxydra-host --user alice start`).
    #[arg(long)]
    user: Option<String>,
    /// Connect the terminal UI to the user's runtime (as `oxydra-host tui`).
    #[arg(long)]
    tui: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one turn: the agent answers the prompt, using tools (answer on stdout).
    Run(commands::run::RunArgs),
    /// An interactive line-mode session (/new, /sessions, /switch, /cancel, /status).
    Chat(commands::chat::ChatArgs),
    /// The runtime role: the session service and the WebSocket gateway, until SIGINT/SIGTERM.
    Serve(commands::serve::ServeArgs),
    /// The runner: launch the user's runtime in its tier and supervise it, in the
    /// foreground until SIGINT/SIGTERM or `stop` (`--insecure`: the process tier).
    Start(commands::runner::StartArgs),
    /// The runner's status: tier, runtime pid, health, protections and degraded reasons.
    Status(commands::runner::StatusArgs),
    /// Stop the runner and its runtime.
    Stop(commands::runner::TargetArgs),
    /// Stop the runtime and start it again; returns when it is ready.
    Restart(commands::runner::TargetArgs),
    /// The runtime's log (its output and the runner's events), through the runner.
    Logs(commands::runner::LogsArgs),
    /// The terminal UI: a client of `serve`'s gateway.
    Tui(commands::tui::TuiArgs),
    /// Tools: list them, call one.
    #[command(subcommand)]
    Tool(commands::tool::ToolCommand),
    /// MCP servers: list them and their state, the tools one lists.
    #[command(subcommand)]
    Mcp(commands::mcp::McpCommand),
    /// Bridge a stdio MCP server in its own container to a socket (the runner runs
    /// this in the container tier; not for people).
    #[command(hide = true)]
    McpBridge {
        /// The unix socket to answer on (replaced if it exists).
        #[arg(long, value_name = "PATH")]
        socket: std::path::PathBuf,
    },
    /// The micro_vm guest's init: PID 1 inside the VM the runner boots (not for people).
    #[command(hide = true)]
    VmGuest,
    /// Serve the micro_vm guest's workspace over 9P2000.L, for a VMM with no shared
    /// directories (the runner runs this for Firecracker; not for people).
    #[command(hide = true)]
    VmShare {
        /// `SOCKET=DIR`, or `SOCKET=DIR:ro` for a read-only share; repeated.
        #[arg(long = "share", value_name = "SOCKET=DIR[:ro]", required = true)]
        shares: Vec<String>,
    },
    /// Boot the micro_vm guest once to compile the components with its engine
    /// (scripts/build-vm-images.sh runs this).
    #[command(hide = true)]
    VmWarmCache(commands::runner::WarmArgs),
    /// Compile every bundled component into the component cache.
    #[command(hide = true)]
    Precompile,
    /// Start a stdio MCP server confined (the host runs this; not for people).
    #[command(hide = true)]
    McpExec {
        /// `--` then the server's program and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
    /// Components: inspect a .wasm file.
    #[command(subcommand)]
    Component(commands::component::ComponentCommand),
    /// Configuration: validate the layered config.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// LLM providers: run one completion.
    #[command(subcommand)]
    Llm(commands::llm::LlmCommand),
    /// The pinned model catalog.
    #[command(subcommand)]
    Catalog(commands::catalog::CatalogCommand),
    /// The managed local model (llama-server + SmolLM2-135M): status, prepare, stop.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
    /// Scheduled jobs: list them, their runs; pause, resume, delete one.
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Persistent memory: search it, list the notes, rebuild its indexes.
    #[command(subcommand)]
    Memory(commands::memory::MemoryCommand),
    /// The shell sidecar's daemon (the runner starts it in the sidecar container): runs
    /// `shell_exec` commands under --root directories, answering on --socket.
    ShellDaemon(ShellDaemonArgs),
}

#[derive(clap::Args)]
struct ShellDaemonArgs {
    /// The unix socket to answer on (replaced if it exists).
    #[arg(long, value_name = "PATH")]
    socket: std::path::PathBuf,
    /// A directory commands may run in, with everything below it (repeatable).
    #[arg(long = "root", value_name = "DIR", required = true)]
    roots: Vec<std::path::PathBuf>,
}

/// Exit codes: what a script can branch on.
pub mod exit {
    /// The tool ran and returned an error (a denial included).
    pub const TOOL_ERROR: u8 = 1;
    /// Bad invocation or configuration.
    pub const USAGE: u8 = 2;
    /// A component was refused at load (grant, WIT version, checksum).
    pub const REFUSED: u8 = 3;
    /// A limit stopped the call (deadline, memory) or the component crashed.
    pub const LIMIT: u8 = 4;
}

fn init_tracing(verbose: bool) {
    let filter = std::env::var("OXYDRA_LOG").unwrap_or_else(|_| {
        if verbose {
            "info".into()
        } else {
            "warn".into()
        }
    });
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let global = commands::runner::GlobalArgs {
        config: cli.config.clone(),
        sets: cli.sets.clone(),
        verbose: cli.verbose,
    };
    let sources = config::Sources::standard(cli.sets, cli.config);
    let user = cli.user;
    let command = match (cli.command, cli.tui) {
        (None, true) => Command::Tui(commands::tui::TuiArgs::for_user(None)),
        (Some(c), false) => c,
        (Some(_), true) => {
            eprintln!("error: --tui connects the terminal UI; give it no command");
            return ExitCode::from(exit::USAGE);
        }
        (None, false) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(exit::USAGE);
        }
    };
    let result = match command {
        Command::Run(mut a) => {
            a.user = a.user.or(user);
            commands::run::run(a, &sources)
        }
        Command::Chat(mut a) => {
            a.user = a.user.or(user);
            commands::chat::run(a, &sources)
        }
        Command::Serve(mut a) => {
            a.user = a.user.or(user);
            commands::serve::run(a, &sources)
        }
        Command::Tui(mut a) => {
            a.user = a.user.or(user);
            commands::tui::run(a, &sources)
        }
        Command::Start(mut a) => {
            a.user = a.user.or(user);
            commands::runner::start(a, &sources, &global)
        }
        Command::Status(mut a) => {
            a.target.user = a.target.user.or(user);
            commands::runner::status(a, &sources)
        }
        Command::Stop(mut a) => {
            a.user = a.user.or(user);
            commands::runner::stop(a, &sources)
        }
        Command::Restart(mut a) => {
            a.user = a.user.or(user);
            commands::runner::restart(a, &sources)
        }
        Command::Logs(mut a) => {
            a.target.user = a.target.user.or(user);
            commands::runner::logs(a, &sources)
        }
        Command::Tool(c) => commands::tool::run(c, &sources),
        Command::Mcp(c) => commands::mcp::run(c, &sources),
        Command::McpExec { argv } => Err(commands::mcp::exec(argv)),
        Command::McpBridge { socket } => commands::mcp::bridge(&socket),
        Command::VmGuest => oxydra_tiers::vm_guest::run(),
        Command::VmShare { shares } => shares
            .iter()
            .map(|s| oxydra_tiers::share9p::Spec::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|specs| oxydra_tiers::share9p::run(&specs))
            .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("vm-share: {e}"))),
        Command::VmWarmCache(a) => commands::runner::warm_vm_cache(a),
        Command::Precompile => commands::component::precompile(&sources),
        Command::Component(c) => commands::component::run(c, &sources),
        Command::Config(c) => commands::config::run(c, &sources),
        Command::Llm(c) => commands::llm::run(c, &sources),
        Command::Catalog(c) => commands::catalog::run(c),
        Command::Model(c) => commands::model::run(c),
        Command::Schedule(c) => commands::schedule::run(c, &sources, user),
        Command::Memory(c) => commands::memory::run(c, &sources, user),
        Command::ShellDaemon(a) => oxydra_tiers::shell::serve(&a.socket, &a.roots)
            .map_err(|e| Failure::new(exit::USAGE, format!("shell-daemon: {e}"))),
    };
    // A local model server this process started never outlives it.
    oxydra_session::local::stop_started();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::new(exit::USAGE, e.to_string())
    }
}

impl From<oxydra_session::SetupError> for Failure {
    fn from(e: oxydra_session::SetupError) -> Self {
        advice::setup(e)
    }
}

impl From<oxydra_session::ServiceError> for Failure {
    fn from(e: oxydra_session::ServiceError) -> Self {
        advice::service(e)
    }
}
