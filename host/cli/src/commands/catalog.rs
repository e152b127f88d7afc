//! `oxydra-host catalog show [provider]`.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_agent::catalog;

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// The pinned model catalog: context window, max output, tools, reasoning, prices.
    Show {
        /// openai, anthropic, google or local
        provider: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: CatalogCommand) -> Result<(), Failure> {
    let CatalogCommand::Show { provider, json } = cmd;
    let cat = catalog::pinned();
    if let Some(p) = &provider
        && !cat.providers().contains(&p.as_str())
    {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "no catalog provider `{p}`; the catalog has: {}",
                cat.providers().join(", ")
            ),
        ));
    }
    let models: Vec<_> = cat.models(provider.as_deref()).collect();
    if json {
        let text = serde_json::to_string_pretty(&models)
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<10} {:<26} {:>9} {:>8} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "PROVIDER",
        "MODEL",
        "CONTEXT",
        "MAX OUT",
        "TOOLS",
        "REASONING",
        "IN $/M",
        "OUT $/M",
        "CACHED $/M"
    );
    for m in models {
        println!(
            "{:<10} {:<26} {:>9} {:>8} {:>5} {:>9} {:>9.3} {:>9.3} {:>9.4}",
            m.provider,
            m.id,
            m.context_window,
            m.max_output,
            if m.tool_call { "yes" } else { "no" },
            if m.reasoning { "yes" } else { "no" },
            m.price.input,
            m.price.output,
            m.price.cached
        );
    }
    Ok(())
}
