//! `oxydra-host tui`: the terminal UI, a client of `serve`'s gateway. It finds the
//! gateway the way `serve` publishes it (`<user workspace>/ipc/gateway-endpoint` and
//! `gateway-token`), or from `--url` and `--token`; the UI itself is in `crate::tui`.

use crate::tui::net::{Attach, NetConfig, Target, TokenSource, authority};
use crate::{Failure, exit};
use oxydra_gateway::token::{self, TOKEN_ENV};
use oxydra_session::config::Sources;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TuiArgs {
    /// The user whose gateway to use (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
    /// The user's workspace directory, where serve writes the endpoint and token files;
    /// default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// The gateway's URL, e.g. ws://127.0.0.1:4000/ws (default: the endpoint file).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The gateway token (default: OXYDRA_GATEWAY_TOKEN, else the workspace's token file).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Attach this session (its id or a unique prefix); default: the latest one.
    #[arg(long, conflicts_with = "new")]
    session: Option<String>,
    /// Start on a new session.
    #[arg(long)]
    new: bool,
}

impl TuiArgs {
    /// `oxydra-host --tui`: the user's gateway, found through the workspace.
    pub fn for_user(user: Option<String>) -> TuiArgs {
        TuiArgs {
            user,
            workspace: None,
            url: None,
            token: None,
            session: None,
            new: false,
        }
    }
}

pub fn run(args: TuiArgs, sources: &Sources) -> Result<(), Failure> {
    let env_token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let given_token = args.token.or(env_token).map(|t| t.trim().to_string());
    // The user and workspace as serve finds them; not needed with --url and a token.
    let (user, ws) = if args.url.is_some() && given_token.is_some() && args.workspace.is_none() {
        (args.user.unwrap_or_else(|| "?".into()), None)
    } else {
        let (user, default_ws) =
            oxydra_session::compose::user_and_workspace(sources, args.user.clone())?;
        (user, Some(args.workspace.clone().unwrap_or(default_ws)))
    };
    let serve_hint = match &args.workspace {
        Some(w) => format!("oxydra-host serve --workspace {}", w.display()),
        None => format!("oxydra-host serve --user {user}"),
    };
    let target = match (&args.url, &ws) {
        (Some(u), _) => {
            authority(u).map_err(|e| Failure::new(exit::USAGE, e))?;
            Target::Url(u.clone())
        }
        (None, Some(ws)) => {
            let p = token::endpoint_path(ws);
            if !p.exists() {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "no gateway running for user {user}: start `{serve_hint}` (looked for {})",
                        p.display()
                    ),
                ));
            }
            Target::EndpointFile(p)
        }
        (None, None) => return Err(Failure::new(exit::USAGE, "no gateway: pass --url")),
    };
    let token = match (given_token, &ws) {
        (Some(t), _) => TokenSource::Given(t),
        (None, Some(ws)) => {
            token::read(ws).map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!(
                        "no gateway token for user {user} ({e}): `{serve_hint}` writes it at its first start; or pass --token or set {TOKEN_ENV}"
                    ),
                )
            })?;
            TokenSource::Workspace(ws.clone())
        }
        (None, None) => {
            return Err(Failure::new(
                exit::USAGE,
                format!("no gateway token: pass --token or set {TOKEN_ENV}"),
            ));
        }
    };
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            exit::USAGE,
            "the TUI needs a terminal; `oxydra-host chat` is the line-mode client",
        ));
    }
    let attach = match (args.session, args.new) {
        (Some(s), _) => Attach::Session(s),
        (None, true) => Attach::New,
        (None, false) => Attach::Latest,
    };
    crate::tui::run(
        NetConfig {
            target,
            token,
            attach,
        },
        user,
    )
    .map_err(|e| Failure::new(exit::TOOL_ERROR, e))
}
