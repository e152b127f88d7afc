//! `#[tool]`: JSON Schema and argument parsing from a function signature.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Expr, FnArg, ItemFn, Lit, Pat, Type, meta::ParseNestedMeta};

#[derive(Default)]
struct ToolOpts {
    tier: Option<String>,
    name: Option<String>,
    step: bool,
}

#[derive(Default)]
struct ArgOpts {
    /// (JSON Schema keyword, value) pairs.
    bounds: Vec<(&'static str, Lit)>,
    default: Option<Expr>,
}

fn doc_text(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc")
            && let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
        {
            lines.push(s.value().trim().to_string());
        }
    }
    // Paragraphs stay apart; lines within a paragraph are joined.
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            if !out.ends_with("\n\n") && !out.is_empty() {
                out.push_str("\n\n");
            }
        } else {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push(' ');
            }
            out.push_str(&line);
        }
    }
    out.trim().to_string()
}

fn camel_case(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn parse_arg_attr(attr: &Attribute, opts: &mut ArgOpts) -> syn::Result<()> {
    attr.parse_nested_meta(|meta: ParseNestedMeta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .ok_or_else(|| meta.error("expected an option name"))?;
        if key == "default" {
            opts.default = Some(meta.value()?.parse()?);
            return Ok(());
        }
        let keyword = match key.as_str() {
            "minimum" => "minimum",
            "maximum" => "maximum",
            "min_length" => "minLength",
            "max_length" => "maxLength",
            "min_items" => "minItems",
            "max_items" => "maxItems",
            _ => {
                return Err(meta.error(
                    "unknown #[arg] option; expected minimum, maximum, min_length, max_length, \
                     min_items, max_items or default",
                ));
            }
        };
        let value: Expr = meta.value()?.parse()?;
        let lit = match value {
            Expr::Lit(l) => l.lit,
            // negative numbers
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match *u.expr {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(i), ..
                }) => Lit::Int(syn::LitInt::new(
                    &format!("-{}", i.base10_digits()),
                    i.span(),
                )),
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Float(f), ..
                }) => Lit::Float(syn::LitFloat::new(
                    &format!("-{}", f.base10_digits()),
                    f.span(),
                )),
                other => return Err(syn::Error::new_spanned(other, "expected a number")),
            },
            other => return Err(syn::Error::new_spanned(other, "expected a literal")),
        };
        opts.bounds.push((keyword, lit));
        Ok(())
    })
}

fn is_step_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "StepContext"))
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut opts = ToolOpts::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("tier") {
            let s: syn::LitStr = meta.value()?.parse()?;
            opts.tier = Some(s.value());
        } else if meta.path.is_ident("name") {
            let s: syn::LitStr = meta.value()?.parse()?;
            opts.name = Some(s.value());
        } else if meta.path.is_ident("step") {
            opts.step = true;
        } else {
            return Err(meta.error("unknown #[tool] option; expected tier, name or step"));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;

    let mut func: ItemFn = syn::parse2(item)?;
    let fn_ident = func.sig.ident.clone();
    let name = opts.name.clone().unwrap_or_else(|| fn_ident.to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(syn::Error::new_spanned(
            &fn_ident,
            "tool names are snake_case ASCII",
        ));
    }
    let description = doc_text(&func.attrs);
    if description.is_empty() {
        return Err(syn::Error::new_spanned(
            &fn_ident,
            "a tool needs a doc comment: it is the description the model reads",
        ));
    }
    let tier = match opts.tier.as_deref().unwrap_or("read-only") {
        "read-only" => quote!(ReadOnly),
        "side-effecting" => quote!(SideEffecting),
        "privileged" => quote!(Privileged),
        other => {
            return Err(syn::Error::new(
                Span::call_site(),
                format!("unknown tier `{other}`; expected read-only, side-effecting or privileged"),
            ));
        }
    };
    let struct_ident = format_ident!("{}", camel_case(&fn_ident.to_string()));

    let mut schema_parts = Vec::new();
    let mut fields = Vec::new();
    let mut bindings = Vec::new();
    let mut call_args = Vec::new();
    let mut inputs = func.sig.inputs.iter_mut();
    if opts.step {
        match inputs.next() {
            Some(FnArg::Typed(pt)) if is_step_context(&pt.ty) => {
                call_args.push(quote!(::oxydra_sdk::StepContext {
                    operation_id: operation_id.to_string(),
                    input,
                }));
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &func.sig,
                    "a #[tool(step)] function takes a StepContext first",
                ));
            }
        }
    }
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            return Err(syn::Error::new_spanned(input, "tools are free functions"));
        };
        let Pat::Ident(pat) = &*pt.pat else {
            return Err(syn::Error::new_spanned(
                &pt.pat,
                "use a plain parameter name",
            ));
        };
        let ident = pat.ident.clone();
        let pname = ident.to_string();
        let ty = (*pt.ty).clone();
        let doc = doc_text(&pt.attrs);
        let mut arg = ArgOpts::default();
        for a in pt.attrs.iter().filter(|a| a.path().is_ident("arg")) {
            parse_arg_attr(a, &mut arg)?;
        }
        pt.attrs
            .retain(|a| !a.path().is_ident("arg") && !a.path().is_ident("doc"));

        let doc_insert =
            (!doc.is_empty()).then(|| quote!(o.insert("description".into(), json!(#doc));));
        let bound_inserts = arg
            .bounds
            .iter()
            .map(|(k, v)| quote!(o.insert(#k.into(), json!(#v));));
        let has_default = arg.default.is_some();
        let default_insert = arg
            .default
            .as_ref()
            .map(|d| quote!(o.insert("default".into(), json!(#d));));
        schema_parts.push(quote! {
            {
                let mut s = <#ty as ::oxydra_sdk::ArgSchema>::schema();
                if let Some(o) = s.as_object_mut() {
                    #doc_insert
                    #(#bound_inserts)*
                    #default_insert
                }
                properties.insert(#pname.into(), s);
                if !<#ty as ::oxydra_sdk::ArgSchema>::OPTIONAL && !#has_default {
                    required.push(json!(#pname));
                }
            }
        });
        match &arg.default {
            Some(d) => {
                fields.push(quote!(#ident: ::core::option::Option<#ty>));
                bindings.push(quote! {
                    let #ident: #ty = match a.#ident {
                        Some(v) => v,
                        None => ::oxydra_sdk::__private::serde_json::from_value(json!(#d)).map_err(|e| {
                            ::oxydra_sdk::ToolError::Failed(format!("bad default for `{}`: {e}", #pname))
                        })?,
                    };
                });
            }
            None => {
                // Presence is checked against the schema first; serde treats a
                // missing `Option` as `None` by itself.
                fields.push(quote!(#ident: #ty));
                bindings.push(quote!(let #ident: #ty = a.#ident;));
            }
        }
        call_args.push(quote!(#ident));
    }

    let schema_fn = quote! {
        fn schema() -> ::oxydra_sdk::__private::serde_json::Value {
            use ::oxydra_sdk::__private::serde_json::{self, json};
            let mut properties = serde_json::Map::new();
            let mut required: ::std::vec::Vec<serde_json::Value> = ::std::vec::Vec::new();
            #(#schema_parts)*
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
    };
    let parse = quote! {
        use ::oxydra_sdk::__private::serde_json::json;
        #[derive(::oxydra_sdk::__private::serde::Deserialize)]
        #[serde(crate = "::oxydra_sdk::__private::serde")]
        #[allow(non_camel_case_types)]
        struct __Args { #(#fields,)* }
        let schema = <Self>::schema();
        let a: __Args = ::oxydra_sdk::parse_arguments(arguments, &schema)?;
        #(#bindings)*
    };
    let vis = &func.vis;
    let imp = if opts.step {
        quote! {
            impl ::oxydra_sdk::Step for #struct_ident {
                const NAME: &'static str = #name;
                const DESCRIPTION: &'static str = #description;
                const TIER: ::oxydra_sdk::SafetyTier = ::oxydra_sdk::SafetyTier::#tier;
                #schema_fn
                fn run(operation_id: &str, arguments: &str, input: ::std::vec::Vec<u8>)
                    -> ::core::result::Result<::oxydra_sdk::StepOutput, ::oxydra_sdk::ToolError> {
                    #parse
                    #fn_ident(#(#call_args),*)
                }
            }
        }
    } else {
        quote! {
            impl ::oxydra_sdk::Tool for #struct_ident {
                const NAME: &'static str = #name;
                const DESCRIPTION: &'static str = #description;
                const TIER: ::oxydra_sdk::SafetyTier = ::oxydra_sdk::SafetyTier::#tier;
                #schema_fn
                fn invoke(arguments: &str) -> ::core::result::Result<::std::string::String, ::oxydra_sdk::ToolError> {
                    #parse
                    #fn_ident(#(#call_args),*)
                }
            }
        }
    };
    Ok(quote! {
        #[doc = concat!("The `", #name, "` tool (generated by `#[tool]`).")]
        #vis struct #struct_ident;
        #imp
        #func
    })
}
