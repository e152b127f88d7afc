//! `export_tool!` / `export_step!`: the component glue, generated in the author's crate
//! from the SDK's copy of `oxydra:tool` (so the author writes no WIT).

use proc_macro2::TokenStream;
use quote::quote;

/// The WIT this SDK builds against, plus the two export-only worlds the glue uses.
const TOOL_WIT: &str = include_str!("../wit/v0.1/tool/tool.wit");

/// The `oxydra:llm` package, for `export_provider!`.
const LLM_WIT: &str = include_str!("../wit/v0.1/llm/llm.wit");

/// Glue for an LLM provider adapter. The `oxydra:llm/types` types are the SDK's own
/// (`with`), so adapters and glue share them and nothing is converted.
pub(crate) fn expand_provider(item: TokenStream) -> syn::Result<TokenStream> {
    let ty: syn::Path = syn::parse2(item)?;
    let wit = format!("{LLM_WIT}\nworld provider-export {{ export provider; }}\n");
    Ok(quote! {
        #[doc(hidden)]
        // The canonical-ABI export shims wit-bindgen generates are unsafe by nature.
        #[allow(clippy::all, dead_code, unused_imports, unsafe_code)]
        mod __oxydra_provider_glue {
            ::oxydra_sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: "oxydra:llm/provider-export",
                runtime_path: "::oxydra_sdk::__private::wit_bindgen::rt",
                with: { "oxydra:llm/types@0.1.0": ::oxydra_sdk::llm::types },
            });
            use ::oxydra_sdk::llm::types::{Event, LlmError, ProviderInfo, Request};
            use exports::oxydra::llm::provider::{CompletionStream, Guest, GuestCompletionStream};
            struct Glue;
            struct Stream(::core::cell::RefCell<::std::boxed::Box<dyn ::oxydra_sdk::llm::EventSource>>);
            impl Guest for Glue {
                type CompletionStream = Stream;
                fn describe() -> ProviderInfo {
                    <super::#ty as ::oxydra_sdk::llm::Provider>::info()
                }
                fn complete(base_url: ::std::string::String, request: Request) -> ::core::result::Result<CompletionStream, LlmError> {
                    <super::#ty as ::oxydra_sdk::llm::Provider>::complete(&base_url, request)
                        .map(|s| CompletionStream::new(Stream(::core::cell::RefCell::new(s))))
                }
            }
            impl GuestCompletionStream for Stream {
                fn next(&self) -> ::core::option::Option<::core::result::Result<Event, LlmError>> {
                    self.0.borrow_mut().next_event()
                }
            }
            export!(Glue);
        }
    })
}

/// The `oxydra:channel` package, for `export_channel!`.
const CHANNEL_WIT: &str = include_str!("../wit/v0.1/channel/channel.wit");

/// Glue for a chat channel. The `oxydra:channel/types` types are the SDK's own (`with`),
/// so the channel and the glue share them and nothing is converted.
pub(crate) fn expand_channel(item: TokenStream) -> syn::Result<TokenStream> {
    let ty: syn::Path = syn::parse2(item)?;
    let wit = format!("{CHANNEL_WIT}\nworld channel-export {{ export channel; }}\n");
    Ok(quote! {
        #[doc(hidden)]
        // The canonical-ABI export shims wit-bindgen generates are unsafe by nature.
        #[allow(clippy::all, dead_code, unused_imports, unsafe_code)]
        mod __oxydra_channel_glue {
            ::oxydra_sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: "oxydra:channel/channel-export",
                runtime_path: "::oxydra_sdk::__private::wit_bindgen::rt",
                with: { "oxydra:channel/types@0.1.0": ::oxydra_sdk::channel::types },
            });
            use ::oxydra_sdk::channel::types::{Action, ChannelError, ChannelInfo};
            struct Glue;
            impl exports::oxydra::channel::channel::Guest for Glue {
                fn describe() -> ChannelInfo {
                    <super::#ty as ::oxydra_sdk::channel::Channel>::describe()
                }
                fn poll() -> ::core::result::Result<u32, ChannelError> {
                    <super::#ty as ::oxydra_sdk::channel::Channel>::poll()
                }
                fn deliver(action: Action) -> ::core::result::Result<::std::string::String, ChannelError> {
                    <super::#ty as ::oxydra_sdk::channel::Channel>::deliver(action)
                }
                fn fetch_file(
                    file_id: ::std::string::String,
                    max_bytes: u64,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ChannelError> {
                    <super::#ty as ::oxydra_sdk::channel::Channel>::fetch_file(&file_id, max_bytes)
                }
            }
            export!(Glue);
        }
    })
}

pub(crate) enum Kind {
    Tool,
    Step,
}

pub(crate) fn expand(item: TokenStream, kind: Kind) -> syn::Result<TokenStream> {
    let ty: syn::Path = syn::parse2(item)?;
    let wit = format!(
        "{TOOL_WIT}\nworld tool-export {{ export tool; }}\nworld step-export {{ export step; }}\n"
    );
    let common = quote! {
        use oxydra::tool::types::{SafetyTier as WitTier, ToolError as WitError, ToolInfo};
        fn to_wit(e: ::oxydra_sdk::ToolError) -> WitError {
            match e {
                ::oxydra_sdk::ToolError::InvalidArguments(m) => WitError::InvalidArguments(m),
                ::oxydra_sdk::ToolError::Denied(m) => WitError::Denied(m),
                ::oxydra_sdk::ToolError::NotFound(m) => WitError::NotFound(m),
                ::oxydra_sdk::ToolError::TooLarge(m) => WitError::TooLarge(m),
                ::oxydra_sdk::ToolError::Failed(m) => WitError::Failed(m),
            }
        }
        fn info(
            name: &str,
            description: &str,
            schema: ::oxydra_sdk::__private::serde_json::Value,
            tier: ::oxydra_sdk::SafetyTier,
        ) -> ToolInfo {
            ToolInfo {
                name: name.to_string(),
                description: description.to_string(),
                parameters_schema: schema.to_string(),
                tier: match tier {
                    ::oxydra_sdk::SafetyTier::ReadOnly => WitTier::ReadOnly,
                    ::oxydra_sdk::SafetyTier::SideEffecting => WitTier::SideEffecting,
                    ::oxydra_sdk::SafetyTier::Privileged => WitTier::Privileged,
                },
            }
        }
    };
    let body = match kind {
        Kind::Tool => quote! {
            ::oxydra_sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: "oxydra:tool/tool-export",
                runtime_path: "::oxydra_sdk::__private::wit_bindgen::rt",
            });
            #common
            struct Glue;
            impl exports::oxydra::tool::tool::Guest for Glue {
                fn describe() -> ToolInfo {
                    use ::oxydra_sdk::Tool as _;
                    info(super::#ty::NAME, super::#ty::DESCRIPTION, super::#ty::schema(), super::#ty::TIER)
                }
                fn invoke(arguments: ::std::string::String) -> ::core::result::Result<::std::string::String, WitError> {
                    <super::#ty as ::oxydra_sdk::Tool>::invoke(&arguments).map_err(to_wit)
                }
            }
            export!(Glue);
        },
        Kind::Step => quote! {
            ::oxydra_sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: "oxydra:tool/step-export",
                runtime_path: "::oxydra_sdk::__private::wit_bindgen::rt",
            });
            #common
            use exports::oxydra::tool::step::StepOutput as WitOutput;
            struct Glue;
            impl exports::oxydra::tool::step::Guest for Glue {
                fn describe() -> ToolInfo {
                    use ::oxydra_sdk::Step as _;
                    info(super::#ty::NAME, super::#ty::DESCRIPTION, super::#ty::schema(), super::#ty::TIER)
                }
                fn run(
                    operation_id: ::std::string::String,
                    arguments: ::std::string::String,
                    input: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<WitOutput, WitError> {
                    <super::#ty as ::oxydra_sdk::Step>::run(&operation_id, &arguments, input)
                        .map(|o| WitOutput { data: o.data, message: o.message })
                        .map_err(to_wit)
                }
            }
            export!(Glue);
        },
    };
    Ok(quote! {
        #[doc(hidden)]
        // The canonical-ABI export shims wit-bindgen generates are unsafe by nature.
        #[allow(clippy::all, dead_code, unused_imports, unsafe_code)]
        mod __oxydra_component_glue {
            #body
        }
    })
}
