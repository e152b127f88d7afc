//! `#[derive(ToolEnum)]`: a unit-only enum as a string with an `enum` schema.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

pub(crate) fn snake_case(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "ToolEnum works on enums only",
        ));
    };
    let ident = &input.ident;
    let mut idents = Vec::new();
    let mut names = Vec::new();
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                v,
                "ToolEnum variants cannot carry data",
            ));
        }
        idents.push(&v.ident);
        names.push(snake_case(&v.ident.to_string()));
    }
    let expected = names.join(", ");
    Ok(quote! {
        impl ::oxydra_sdk::ArgSchema for #ident {
            fn schema() -> ::oxydra_sdk::__private::serde_json::Value {
                ::oxydra_sdk::__private::serde_json::json!({"type": "string", "enum": [#(#names),*]})
            }
        }
        impl #ident {
            /// The value the model writes for this variant.
            pub fn as_str(&self) -> &'static str {
                match self { #(Self::#idents => #names),* }
            }
        }
        impl<'de> ::oxydra_sdk::__private::serde::Deserialize<'de> for #ident {
            fn deserialize<D: ::oxydra_sdk::__private::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                let s = <::std::string::String as ::oxydra_sdk::__private::serde::Deserialize>::deserialize(d)?;
                match s.as_str() {
                    #(#names => Ok(Self::#idents),)*
                    other => Err(<D::Error as ::oxydra_sdk::__private::serde::de::Error>::custom(
                        ::std::format!("unknown value `{other}`; expected one of: {}", #expected))),
                }
            }
        }
    })
}
