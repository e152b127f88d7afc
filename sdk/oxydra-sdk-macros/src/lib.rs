//! Proc macros behind `oxydra-sdk`: `#[tool]`, `#[derive(ToolEnum)]`, `export_tool!`,
//! `export_step!`, `export_provider!`, `export_channel!`. Component authors use them
//! through `oxydra_sdk`.

use proc_macro::TokenStream;

mod enums;
mod export;
mod tool;

/// Turn a function into a tool: derives its JSON Schema from the signature and doc
/// comments and implements `oxydra_sdk::Tool` (or `oxydra_sdk::Step` with `step`) on a
/// unit struct named after the function in CamelCase.
///
/// Options: `tier = "read-only" | "side-effecting" | "privileged"` (default read-only),
/// `name = "..."` (default: the function name), `step` (the first parameter is a
/// `StepContext`). Per parameter: `#[arg(minimum = .., maximum = .., min_length = ..,
/// max_length = .., min_items = .., max_items = .., default = <literal>)]`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    tool::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// A unit-only enum as a string argument with a fixed set of snake_case values.
#[proc_macro_derive(ToolEnum)]
pub fn tool_enum(item: TokenStream) -> TokenStream {
    enums::expand(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Export a `Tool` as this component's `oxydra:tool/tool` interface.
#[proc_macro]
pub fn export_tool(item: TokenStream) -> TokenStream {
    export::expand(item.into(), export::Kind::Tool)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Export an `oxydra_sdk::llm::Provider` as this component's `oxydra:llm/provider`.
#[proc_macro]
pub fn export_provider(item: TokenStream) -> TokenStream {
    export::expand_provider(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Export an `oxydra_sdk::channel::Channel` as this component's `oxydra:channel/channel`.
#[proc_macro]
pub fn export_channel(item: TokenStream) -> TokenStream {
    export::expand_channel(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Export a `Step` as this component's `oxydra:tool/step` interface.
#[proc_macro]
pub fn export_step(item: TokenStream) -> TokenStream {
    export::expand(item.into(), export::Kind::Step)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
